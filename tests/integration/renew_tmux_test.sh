#!/usr/bin/env bash
# `dojang renew` as a person sees it: the guide's four steps in a real terminal (a tmux pane),
# answered with send-keys (the certificate's number, the PIN, the fee), read back with
# capture-pane. A SoftHSM token behind a real dojangd, dojang-ca on loopback issuing 20-day
# certificates, the first certificate from `dojang enroll`.
set -euo pipefail
build=$1
dojang=$build/src/cli/dojang
ca=$build/src/ca/dojang-ca
work=$(mktemp -d /tmp/dojang-tmux.XXXXXX)
tmux_socket=dojang-test-$$
pids=()
cleanup() {
  tmux -L "$tmux_socket" kill-server 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- screen ---" >&2
  tmux -L "$tmux_socket" capture-pane -p -t renew 2>/dev/null >&2 || true
  exit 1
}

pin=735911
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >"$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label tmux-token --pin "$pin" --so-pin 12345678 >/dev/null
printf '[[backend]]\nname = "softhsm"\nmodule = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"\n' >"$work/dojangd.toml"
export DOJANG_SOCKET=$work/dojang.sock DOJANG_NO_AUTOSTART=1 DOJANG_MODULE=$build/pkcs11/dojang-pkcs11.so
"$build/src/daemon/dojangd" --foreground --socket "$DOJANG_SOCKET" --config "$work/dojangd.toml" 2>"$work/dojangd.log" &
pids+=($!)
for _ in $(seq 200); do [ -S "$DOJANG_SOCKET" ] && break; sleep 0.05; done

"$ca" init --dir "$work/ca" >/dev/null
"$ca" serve --dir "$work/ca" --port 0 --test-validity-days 20 >"$work/ca.out" 2>"$work/ca.log" &
pids+=($!)
for _ in $(seq 200); do grep -q listening "$work/ca.out" 2>/dev/null && break; sleep 0.05; done
ca_url=$(sed -n 's/^dojang-ca listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/ca.out" | head -n 1)
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
mkdir -p "$XDG_CONFIG_HOME/dojang"
printf '[ca.dojang-ca]\nurl = "%s"\ntrusted = "%s"\nvalidity_days = 20\n' "$ca_url" "$work/ca/ca.cert.pem" \
  >"$XDG_CONFIG_HOME/dojang/renewal.toml"
"$ca" enroll-code --dir "$work/ca" --profile signkorea-general-personal \
  --subject "cn=홍길동()0001234567890123,ou=개인" --json >"$work/code.json"
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reference"])' "$work/code.json")
code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["authorization_code"])' "$work/code.json")
echo "$pin" | "$dojang" enroll --ref "$ref" --code "$code" --label signkey --accept-fee 4400 --pin-stdin >/dev/null

# The pane is wide enough for the table; the command's exit status is printed after it.
tmux -L "$tmux_socket" -f /dev/null new-session -d -s renew -x 220 -y 60 \
  "'$dojang' renew; echo \"dojang exited \$?\"; sleep 60"
screen() { tmux -L "$tmux_socket" capture-pane -p -t renew; }
wait_for() {  # text [seconds]
  for _ in $(seq $((${2:-10} * 20))); do
    screen | grep -qF -- "$1" && return 0
    sleep 0.05
  done
  fail "the screen never showed: $1"
}
expect() { screen | grep -qF -- "$1" || fail "the screen does not show: $1"; }

wait_for "Renew which one? [1-1]:"
expect "[1/4] 인증서 선택 — choose the certificate"
expect "SignKorea 범용 개인"
expect "renew now"
tmux -L "$tmux_socket" send-keys -t renew 1 Enter
wait_for 'PIN for token "tmux-token":'
expect "[2/4] 인증서 암호 입력 — the token PIN"
tmux -L "$tmux_socket" send-keys -t renew "$pin" Enter
wait_for "Pay and renew? [y/N]:"
expect "[3/4] 수수료 결제 — the fee"
expect "SignKorea 범용 개인: 4,400 KRW per year"
screen | grep -qF "$pin" && fail "the PIN was echoed"
tmux -L "$tmux_socket" send-keys -t renew y Enter
wait_for "dojang exited " 30
expect "[4/4] 갱신 완료 — the result"
expect 'Renewed "signkey" (SignKorea 범용 개인) on token "tmux-token"'
expect "old pair: relabelled \"signkey (retired "
expect "dojang exited 0"

# `dojang certs` marks the old certificate "renewed" (it stays until its pair is deleted).
"$dojang" certs --json | python3 -c '
import json, sys
advice = sorted((c["label"], c["renewal"]) for c in json.load(sys.stdin)["certificates"])
assert [a for l, a in advice if l.startswith("signkey (retired ")] == ["renewed"], advice
assert [a for l, a in advice if l == "signkey"] == ["renew now"], advice
' || fail "dojang certs does not mark the renewed certificate"

# Declining the fee renews nothing: a second renewal (the new certificate is in its window too).
tmux -L "$tmux_socket" kill-session -t renew
before=$("$dojang" renew --history --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
tmux -L "$tmux_socket" -f /dev/null new-session -d -s renew -x 220 -y 60 \
  "'$dojang' renew signkey; echo \"dojang exited \$?\"; sleep 60"
wait_for 'PIN for token "tmux-token":'
tmux -L "$tmux_socket" send-keys -t renew "$pin" Enter
wait_for "Pay and renew? [y/N]:"
tmux -L "$tmux_socket" send-keys -t renew n Enter
wait_for "dojang exited " 30
expect "the fee of 4,400 KRW was not accepted; nothing was generated"
expect "dojang exited 1"
after=$("$dojang" renew --history --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$before" = "$after" ] || fail "declining the fee journalled a renewal ($before -> $after)"
echo "ok: the four steps on a terminal, and a declined fee"
