#!/usr/bin/env bash
# The installed dojangd.socket and dojangd.service pass `systemd-analyze verify --user --man=no`
# with nothing to say (no unknown keys, no missing units, no missing programs).
# systemd 252's verify has no --root for user units ("Failed to initialize unit search paths"),
# so the staged units are copied aside with ExecStart's installed path rewritten into the staging
# dir, where the installed dojangd really is. Only that prefix changes; install_test.sh checks that
# the unrewritten path is where dojangd is installed.
set -euo pipefail
build=$1
work=$(mktemp -d /tmp/dojang-units-XXXXXX)
trap 'rm -rf "$work"' EXIT
staging=$work/staging
meson install -C "$build" --destdir "$staging" --no-rebuild --quiet >/dev/null

service=$(find "$staging" -path '*/systemd/user/dojangd.service')
socket=$(find "$staging" -path '*/systemd/user/dojangd.socket')
[ -n "$service" ] && [ -n "$socket" ] || { echo "FAIL: dojangd.service or dojangd.socket not installed" >&2; exit 1; }
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$service")
[ -x "$staging$exec_path" ] || { echo "FAIL: ExecStart names $exec_path, not installed" >&2; exit 1; }

units=$work/units
mkdir "$units"
cp "$socket" "$units/"
sed "s|^ExecStart=$exec_path|ExecStart=$staging$exec_path|" "$service" > "$units/dojangd.service"
grep -q "^ExecStart=$staging$exec_path " "$units/dojangd.service"

# A user manager needs a runtime directory (%t); a private one, so nothing of the user's is read.
runtime=$work/runtime
mkdir -m 0700 "$runtime"
failures=0
for unit in dojangd.socket dojangd.service; do
  # Each on its own: dojangd.service must find dojangd.socket (Requires=) beside it by itself.
  if output=$(cd "$units" && XDG_RUNTIME_DIR=$runtime systemd-analyze verify --user --man=no "./$unit" 2>&1) &&
     [ -z "$output" ]; then
    echo "ok: systemd-analyze verify --user $unit"
  else
    echo "FAIL: systemd-analyze verify --user $unit:" >&2
    echo "$output" >&2
    failures=$((failures + 1))
  fi
done

# The checker is not blind: a misspelt key and a missing program are reported.
sed 's/^SocketMode=/SocketMod=/' "$socket" > "$units/broken.socket"
if output=$(cd "$units" && XDG_RUNTIME_DIR=$runtime systemd-analyze verify --user --man=no ./broken.socket 2>&1) &&
   [ -z "$output" ]; then
  echo "FAIL: systemd-analyze verify found nothing wrong with a misspelt key" >&2
  failures=$((failures + 1))
fi
rm "$units/broken.socket"
sed "s|^ExecStart=[^ ]*|ExecStart=$work/missing/dojangd|" "$units/dojangd.service" > "$units/broken.service"
if (cd "$units" && XDG_RUNTIME_DIR=$runtime systemd-analyze verify --user --man=no ./broken.service >/dev/null 2>&1); then
  echo "FAIL: systemd-analyze verify accepted an ExecStart that does not exist" >&2
  failures=$((failures + 1))
fi

[ "$failures" -eq 0 ]
