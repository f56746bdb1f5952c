#!/usr/bin/env bash
# `meson install --destdir` puts every file where the installed files that name it say it is:
# the p11-kit module file names the installed module, the systemd units the installed dojangd
# and the socket the module connects to, and the module's autostart path is the installed dojangd.
# Then, for a build configured with --prefix=/usr (as Debian packages are; configured here in a
# scratch dir, nothing built), every file's destination is where Debian's udev, systemd, p11-kit
# and ssh-agent look for it.
set -euo pipefail
build=$1 source=$2 prefix=$3 bindir=$4 libdir=$5
work=$(mktemp -d /tmp/dojang-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
staging=$work/staging
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

check_at() {  # what, absolute path below the configured prefix
  checks=$((checks + 1))
  if [ -f "$staging$2" ]; then
    echo "ok: $1 at $2"
  else
    echo "FAIL: $1 is not at $2: $(find "$staging" -name "$(basename "$2")" | sed "s|^$staging||")" >&2
    failures=$((failures + 1))
  fi
}
check_at "the udev rules" "$prefix/lib/udev/rules.d/70-dojang-tokens.rules"
check_at "the user socket unit" "$prefix/lib/systemd/user/dojangd.socket"
check_at "the user service unit" "$prefix/lib/systemd/user/dojangd.service"
check_at "the p11-kit module file" "$prefix/share/p11-kit/modules/dojang.module"
check_at "the PKCS#11 module" "$libdir/pkcs11/dojang-pkcs11.so"
check_at "dojangd" "$bindir/dojangd"

check_line() {  # what, file, extended regex
  checks=$((checks + 1))
  if grep -Eq "$3" "$2"; then
    echo "ok: $1"
  else
    echo "FAIL: $1: no line of ${2#"$staging"} matches $3" >&2
    failures=$((failures + 1))
  fi
}
socket_unit=$staging$prefix/lib/systemd/user/dojangd.socket
service_unit=$staging$prefix/lib/systemd/user/dojangd.service
# %t is $XDG_RUNTIME_DIR, and the module connects to $XDG_RUNTIME_DIR + the suffix it holds.
check_line "dojangd.socket listens where the module connects" "$socket_unit" '^ListenStream=%t/dojang/pkcs11\.sock$'
checks=$((checks + 1))
if strings "$installed_module" | grep -x '/dojang/pkcs11\.sock' >/dev/null; then
  echo "ok: dojang-pkcs11.so connects to \$XDG_RUNTIME_DIR/dojang/pkcs11.sock"
else
  echo "FAIL: dojang-pkcs11.so holds no /dojang/pkcs11.sock: the socket unit and the module disagree" >&2
  failures=$((failures + 1))
fi
check_line "dojangd.socket is private to its user" "$socket_unit" '^SocketMode=0600$'
check_line "dojangd.service is started by dojangd.socket" "$service_unit" '^Requires=dojangd\.socket$'
check_line "the udev rules pull in the unit that is installed" \
  "$staging$prefix/lib/udev/rules.d/70-dojang-tokens.rules" 'SYSTEMD_USER_WANTS\}\+="dojangd\.service"'

# Debian's places: a scratch configuration with --prefix=/usr, asked where it would install.
debian_build=$work/debian-build
meson setup --prefix=/usr -Dtests=false "$debian_build" "$source" >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log" >&2; exit 1; }
meson introspect "$debian_build" --installed | tr ',{}' '\n\n\n' | sed -n 's/.*: *"\(.*\)"$/\1/p' > "$work/debian-destinations"
check_debian() {  # what, extended regex for the destination
  checks=$((checks + 1))
  if grep -Eqx "$2" "$work/debian-destinations"; then
    echo "ok: with --prefix=/usr, $1 goes to $(grep -Ex "$2" "$work/debian-destinations")"
  else
    echo "FAIL: with --prefix=/usr, $1 does not go to $2" >&2
    failures=$((failures + 1))
  fi
}
check_debian "the udev rules" '/usr/lib/udev/rules\.d/70-dojang-tokens\.rules'
check_debian "dojangd.socket" '/usr/lib/systemd/user/dojangd\.socket'
check_debian "dojangd.service" '/usr/lib/systemd/user/dojangd\.service'
check_debian "the p11-kit module file" '/usr/share/p11-kit/modules/dojang\.module'
# ssh-agent loads PKCS#11 modules only from its allow-list, /usr/lib*/* by default.
check_debian "dojang-pkcs11.so (inside ssh-agent's /usr/lib*/ allow-list)" '/usr/lib[^/]*/([^/]+/)*pkcs11/dojang-pkcs11\.so'
check_debian "dojangd" '/usr/bin/dojangd'

echo "$((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
