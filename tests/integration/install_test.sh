#!/usr/bin/env bash
# `meson install --destdir` puts every file where the installed files that name it say it is:
# the p11-kit module file names the installed module, the systemd unit the installed dojangd,
# and the module's autostart path is the installed dojangd too.
set -euo pipefail
build=$1
staging=$(mktemp -d /tmp/dojang-install-XXXXXX)
trap 'rm -rf "$staging"' EXIT
meson install -C "$build" --destdir "$staging" --no-rebuild --quiet >/dev/null

failures=0
checks=0
check_installed() {  # what, absolute path
  checks=$((checks + 1))
  if [ -e "$staging$2" ]; then
    echo "ok: $1 -> $2"
  else
    echo "FAIL: $1 names $2, which meson install did not install" >&2
    failures=$((failures + 1))
  fi
}

module_files=$(find "$staging" -name dojang.module)
[ -n "$module_files" ] || { echo "FAIL: no dojang.module installed" >&2; exit 1; }
for file in $module_files; do
  module_path=$(sed -n 's/^module:[[:space:]]*//p' "$file")
  case "$module_path" in
    /*) check_installed "${file#"$staging"}" "$module_path" ;;
    *) echo "FAIL: ${file#"$staging"} names a relative module path: '$module_path'" >&2
       checks=$((checks + 1)); failures=$((failures + 1)) ;;
  esac
done

unit=$(find "$staging" -name dojangd.service)
[ -n "$unit" ] || { echo "FAIL: no dojangd.service installed" >&2; exit 1; }
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
check_installed "${unit#"$staging"}" "$exec_start"

installed_module=$(find "$staging" -name dojang-pkcs11.so)
[ -n "$installed_module" ] || { echo "FAIL: no dojang-pkcs11.so installed" >&2; exit 1; }
# The build-tree fallback ("/../src/daemon/dojangd") is relative to the module; the other is absolute.
autostart=$(strings "$installed_module" | grep -E '^/.*/dojangd$' | grep -v '/\.\./' | head -n 1)
check_installed "autostart path in dojang-pkcs11.so" "$autostart"

echo "$((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
