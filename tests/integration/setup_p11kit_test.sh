#!/usr/bin/env bash
# `dojang setup p11-kit` against the real p11-kit: after `--keep dojang`, neither `p11-kit
# list-modules` nor p11tool (GnuTLS; p11-kit's debug log says which modules it loads) loads
# OpenSC's module; after `--keep both` both do again. The override goes to $XDG_CONFIG_HOME (not
# $HOME/.config), --dry-run changes nothing, a second run changes nothing, and a user's own file
# is never overwritten. p11-kit reads no user config in programs run as root, so as root the
# p11-kit programs run as nobody.
set -euo pipefail
dojang=$1
opensc_file=$(grep -lE '^module:[[:space:]]*(.*/)?opensc-pkcs11\.so[[:space:]]*$' \
  /usr/share/p11-kit/modules/*.module /etc/pkcs11/modules/*.module 2>/dev/null | head -n 1 || true)
if [ -z "$opensc_file" ]; then
  echo "skip: OpenSC's module is not registered with p11-kit here (opensc-pkcs11 not installed)"
  exit 77
fi
name=$(basename "$opensc_file")
module=${name%.module}

work=$(mktemp -d /tmp/dojang-p11kit-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mkdir -p "$work/home" "$work/xdg"
export HOME=$work/home XDG_CONFIG_HOME=$work/xdg
override=$XDG_CONFIG_HOME/pkcs11/modules/$name

as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    chmod -R a+rX "$work"
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$HOME" XDG_CONFIG_HOME="$XDG_CONFIG_HOME" "$@"
  else
    "$@"
  fi
}
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# Whether `p11-kit list-modules` and p11tool load OpenSC's module: "yes yes", "no no", ...
opensc_loaded() {
  local listed=no gnutls=no
  as_user timeout 30 p11-kit list-modules 2>/dev/null | grep "^$module:" >/dev/null && listed=yes
  as_user env P11_KIT_DEBUG=lib timeout 30 p11tool --list-tokens 2>&1 >/dev/null |
    grep "loading module $module from path" >/dev/null && gnutls=yes
  echo "$listed $gnutls"
}

[ "$(opensc_loaded)" = "yes yes" ] || fail "before setup, p11-kit programs do not load $module: $(opensc_loaded)"

out=$("$dojang" setup p11-kit --dry-run)
[ ! -e "$override" ] || fail "--dry-run wrote $override"
grep -q "^would write $override" <<<"$out" || fail "--dry-run does not say what it would write: $out"

out=$("$dojang" setup p11-kit --keep dojang)
echo "$out"
[ -f "$override" ] || fail "--keep dojang did not write $override"
[ ! -e "$HOME/.config/pkcs11" ] || fail "\$XDG_CONFIG_HOME was not honoured: $HOME/.config/pkcs11 written"
grep -q "^wrote $override" <<<"$out" || fail "--keep dojang does not say what it wrote: $out"
state=$(opensc_loaded)
[ "$state" = "no no" ] && echo "ok: after --keep dojang, p11-kit list-modules and p11tool do not load $module" ||
  fail "after --keep dojang, $module still loads (list-modules, p11tool): $state"

before=$(stat -c '%Y %i' "$override")
out=$("$dojang" setup p11-kit --keep dojang)
grep -q "^nothing to change" <<<"$out" || fail "a second --keep dojang changed something: $out"
[ "$(stat -c '%Y %i' "$override")" = "$before" ] || fail "a second --keep dojang rewrote $override"

out=$("$dojang" setup p11-kit --keep both)
echo "$out"
[ ! -e "$override" ] || fail "--keep both left $override"
grep -q "^removed $override" <<<"$out" || fail "--keep both does not say what it removed: $out"
state=$(opensc_loaded)
[ "$state" = "yes yes" ] && echo "ok: after --keep both, p11-kit list-modules and p11tool load $module again" ||
  fail "after --keep both, $module does not load (list-modules, p11tool): $state"

# A file the user wrote is theirs: refused, untouched.
mkdir -p "$(dirname "$override")"
printf 'module: %s\nx-mine: yes\n' "$module.so" > "$override"
if "$dojang" setup p11-kit --keep dojang 2>"$work/err"; then
  fail "--keep dojang replaced the user's own $override"
fi
grep -q "was not written by dojang" "$work/err" || fail "the refusal does not say why: $(cat "$work/err")"
grep -q '^x-mine: yes$' "$override" || fail "the user's own $override was changed"

[ "$failures" -eq 0 ]
