#!/usr/bin/env bash
# `dojang setup-browser` against the real modutil and a real Firefox ESR: a temp HOME whose
# profiles.ini names two Firefox profiles (one relative, one absolute, neither with an NSS
# database yet) and no Chromium database. After setup-browser, `modutil -list` shows module
# "dojang" with the build's library in all three; a second run says unchanged and rewrites no
# database; --json parses; --remove takes it out of all three. Then a headless firefox-esr holds
# one profile: that profile is refused with Firefox's pid, the other and Chromium are still
# done, and the exit status is non-zero. modutil loads the module to add it, so a private
# dojangd (SoftHSM backend, no tokens) serves it.
set -euo pipefail
dojang=$1
dojangd=$2
module=$3
for tool in modutil certutil firefox-esr python3; do
  command -v "$tool" >/dev/null || { echo "skip: $tool is not installed (scripts/install-deps.sh)"; exit 77; }
done

work=$(mktemp -d /tmp/dojang-browser-XXXXXX)
daemon_pid=
firefox_pid=
cleanup() {
  [ -z "$firefox_pid" ] || { kill "$firefox_pid" 2>/dev/null || true; wait "$firefox_pid" 2>/dev/null || true; }
  [ -z "$daemon_pid" ] || { kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/home/.mozilla/firefox/abcd1234.default-esr" "$work/elsewhere/work-profile" "$work/softhsm" "$work/xdg"
export HOME=$work/home XDG_CONFIG_HOME=$work/xdg XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work
export DOJANG_SOCKET=$work/dojangd.sock DOJANG_NO_AUTOSTART=1 DOJANG_MODULE=$module
export DBUS_SESSION_BUS_ADDRESS=unix:path=$work/no-session-bus MOZ_CRASHREPORTER_DISABLE=1
relative=$HOME/.mozilla/firefox/abcd1234.default-esr
absolute=$work/elsewhere/work-profile
chromium=$HOME/.pki/nssdb
cat >"$HOME/.mozilla/firefox/profiles.ini" <<EOF
[Install3B6073811A6ABF12]
Default=abcd1234.default-esr
Locked=1

[Profile1]
Name=work
IsRelative=0
Path=$absolute

[Profile0]
Name=default-esr
IsRelative=1
Path=abcd1234.default-esr
Default=1

[General]
StartWithLastProfile=1
Version=2
EOF

softhsm_lib=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -n 1)
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$work/softhsm" >"$work/softhsm2.conf"
printf '[[backend]]\nname = "softhsm"\nmodule = "%s"\n[piv]\nenabled = false\n' "$softhsm_lib" >"$work/dojangd.toml"
SOFTHSM2_CONF=$work/softhsm2.conf "$dojangd" --foreground --config "$work/dojangd.toml" >"$work/dojangd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do [ -S "$DOJANG_SOCKET" ] && break; sleep 0.1; done
[ -S "$DOJANG_SOCKET" ] || { echo "FAIL: dojangd did not start: $(cat "$work/dojangd.log")" >&2; exit 1; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# The library modutil -list names for module "dojang" in a database; empty when not there.
registered() { modutil -dbdir "sql:$1" -list dojang 2>/dev/null | sed -n 's/^Library file: //p'; }
all_dbs=("$relative" "$absolute" "$chromium")

out=$("$dojang" setup-browser --dry-run)
echo "$out"
[ ! -e "$chromium" ] && [ ! -e "$relative/cert9.db" ] || fail "--dry-run created a database"
grep -q "would add $module" <<<"$out" || fail "--dry-run does not say what it would add: $out"

out=$("$dojang" setup-browser)
echo "$out"
for db in "${all_dbs[@]}"; do
  [ "$(registered "$db")" = "$module" ] && echo "ok: modutil -list shows dojang ($module) in $db" ||
    fail "modutil -list does not show dojang with $module in $db: '$(registered "$db")'"
done
[ "$(grep -c ": added $module (in a new database)$" <<<"$out")" -eq 3 ] || fail "not three 'added' lines: $out"
[ "$(stat -c %a "$chromium")" = 700 ] || fail "$chromium is not private: $(stat -c %a "$chromium")"

before=$(for db in "${all_dbs[@]}"; do stat -c '%Y %s %i' "$db/pkcs11.txt" "$db/cert9.db"; done)
sleep 1.1  # a rewrite within the same second would keep the mtime
out=$("$dojang" setup-browser)
echo "$out"
[ "$(grep -c ": already registered ($module)$" <<<"$out")" -eq 3 ] || fail "a second run is not 'already registered' thrice: $out"
grep -q "^nothing to change$" <<<"$out" || fail "a second run does not say nothing changed: $out"
after=$(for db in "${all_dbs[@]}"; do stat -c '%Y %s %i' "$db/pkcs11.txt" "$db/cert9.db"; done)
[ "$before" = "$after" ] && echo "ok: a second run changed no database" || fail "a second run rewrote a database"

# --json: parses, and says the same per database.
"$dojang" setup-browser --json >"$work/out.json"
python3 - "$work/out.json" "$relative" "$absolute" "$chromium" <<'EOF' || fail "--json is not what it should be: $(cat "$work/out.json")"
import json, sys
document = json.load(open(sys.argv[1]))
results = {entry["database"]: entry["result"] for entry in document["databases"]}
expected = {"sql:" + path: "unchanged" for path in sys.argv[2:]}
assert results == expected, results
assert document["changed"] is False
profiles = sorted(entry.get("profile") for entry in document["databases"] if entry["browser"] == "firefox")
assert profiles == ["default-esr", "work"], profiles
EOF

# Another library registered as "dojang" is replaced, and said so.
modutil -dbdir "sql:$absolute" -delete dojang -force >/dev/null
cp "$module" "$work/old-dojang-pkcs11.so"
modutil -dbdir "sql:$absolute" -add dojang -libfile "$work/old-dojang-pkcs11.so" -force >/dev/null
out=$("$dojang" setup-browser)
echo "$out"
grep -q "\"work\" ($absolute): updated to $module (was $work/old-dojang-pkcs11.so)$" <<<"$out" ||
  fail "a different library is not reported as updated: $out"
[ "$(registered "$absolute")" = "$module" ] || fail "the update left $(registered "$absolute") in $absolute"

out=$("$dojang" setup-browser --remove)
echo "$out"
for db in "${all_dbs[@]}"; do
  [ -z "$(registered "$db")" ] && echo "ok: --remove took dojang out of $db" || fail "dojang is still in $db after --remove"
done
out=$("$dojang" setup-browser --remove)
[ "$(grep -c ": not registered$" <<<"$out")" -eq 3 ] || fail "a second --remove is not 'not registered' thrice: $out"

# A profile in use: the real Firefox ESR, headless, on the absolute profile.
firefox-esr --headless --no-remote --profile "$absolute" about:blank >"$work/firefox.log" 2>&1 &
firefox_pid=$!
for _ in $(seq 1 300); do [ -L "$absolute/lock" ] && break; sleep 0.1; done
[ -L "$absolute/lock" ] || fail "firefox-esr did not lock $absolute: $(cat "$work/firefox.log")"
holder=$(readlink "$absolute/lock" | sed 's/.*:+//')
status=0
out=$("$dojang" setup-browser) || status=$?
echo "$out"
[ "$status" -ne 0 ] || fail "setup-browser exited 0 although a profile was refused"
grep -q "\"work\" ($absolute): refused: Firefox is running (pid $holder) with this profile" <<<"$out" ||
  fail "the profile in use is not refused with Firefox's pid $holder: $out"
[ "$(registered "$relative")" = "$module" ] || fail "the profile not in use was not done"
[ "$(registered "$chromium")" = "$module" ] || fail "Chromium was not done while a Firefox profile was refused"
status=0
"$dojang" setup-browser --json >"$work/out.json" || status=$?
[ "$status" -ne 0 ] || fail "setup-browser --json exited 0 although a profile was refused"
python3 - "$work/out.json" "$absolute" "$holder" <<'EOF' || fail "--json does not report the refusal: $(cat "$work/out.json")"
import json, sys
entry = [e for e in json.load(open(sys.argv[1]))["databases"] if e["database"] == "sql:" + sys.argv[2]][0]
assert entry["result"] == "refused" and entry["pid"] == int(sys.argv[3]), entry
EOF
kill "$firefox_pid"
wait "$firefox_pid" 2>/dev/null || true
firefox_pid=
[ "$(registered "$absolute")" = "" ] || fail "the refused profile $absolute was changed"

# The p11-kit route: a Chromium database that loads p11-kit-proxy (written into pkcs11.txt, so
# that nothing loads it here) while p11-kit loads dojang's module (a user module file) is left
# alone, and says why; --force-direct would add it. p11-kit reads no user configuration in
# programs run as root, so as root this part runs as nobody.
proxy_home=$work/proxy-home
mkdir -p "$proxy_home/.pki/nssdb" "$work/proxy-xdg/pkcs11/modules"
certutil -N --empty-password -d "sql:$proxy_home/.pki/nssdb"
printf '\nlibrary=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so\nname=p11-kit-proxy\n' >>"$proxy_home/.pki/nssdb/pkcs11.txt"
printf 'module: %s\n' "$module" >"$work/proxy-xdg/pkcs11/modules/dojang.module"
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    chmod 0755 "$work"
    chown -R nobody:nogroup "$proxy_home" "$work/proxy-xdg"
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$proxy_home" XDG_CONFIG_HOME="$work/proxy-xdg" "$@"
  else
    env HOME="$proxy_home" XDG_CONFIG_HOME="$work/proxy-xdg" "$@"
  fi
}
out=$(as_user "$dojang" setup-browser)
echo "$out"
grep -q "^Chromium (sql:$proxy_home/.pki/nssdb): skipped: this database loads p11-kit-proxy, and p11-kit loads dojang's module" <<<"$out" ||
  fail "a database with p11-kit-proxy is not left alone: $out"
grep -q 'name="dojang"' <<<"$(modutil -dbdir "sql:$proxy_home/.pki/nssdb" -rawlist)" && fail "dojang was added beside p11-kit-proxy"
out=$(as_user "$dojang" setup-browser --force-direct --dry-run)
echo "$out"
grep -q "would add $module" <<<"$out" && grep -q "note: .*each token shows twice, through p11-kit and through dojang" <<<"$out" ||
  fail "--force-direct does not add with a warning: $out"

[ "$failures" -eq 0 ]
