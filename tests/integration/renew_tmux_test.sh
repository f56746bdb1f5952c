#!/usr/bin/env bash
# `dojang renew` as a person sees it: the guide's four steps in a real terminal (a tmux pane),
# answered with send-keys (the certificate's number, the PIN, the fee), read back with
# capture-pane. A SoftHSM token behind a real dojangd, dojang-ca on loopback issuing 20-day
# certificates, the first certificate from `dojang enroll`. The token is in prompt mode, so the
# PIN is asked by dojangd through the real pinentry-curses, on the pane dojang runs in.
set -euo pipefail
build=$1
dojang=$build/src/cli/dojang
tmux_socket=dojang-test-$$
source "$(dirname "$0")/../../scripts/lib/sandbox.sh"
cleanup() {
  tmux -L "$tmux_socket" kill-server 2>/dev/null || true
  sandbox_cleanup
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- screen ---" >&2
  tmux -L "$tmux_socket" capture-pane -p -t renew 2>/dev/null >&2 || true
  echo "--- dojangd ---" >&2
  tail -n 20 "$sandbox_work/dojangd.log" >&2 || true
  exit 1
}

pin=735911
export SANDBOX_PIN_SETTINGS='mode = "prompt"
program = "pinentry-curses"'
sandbox_start "$build" tmux-token "$pin" --test-validity-days 20
sandbox_enrol signkey >/dev/null

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
wait_for "Pay and renew? [y/N]:"
expect "[2/4] 인증서 암호 입력 — the token PIN"
expect "dojangd asks for the PIN (pinentry)."
expect "[3/4] 수수료 결제 — the fee"
expect "SignKorea 범용 개인: 4,400 KRW per year"
tmux -L "$tmux_socket" send-keys -t renew y Enter
# dojangd's pinentry-curses on dojang's own terminal, naming dojang (from the kernel) and the token.
wait_for "wants to log in."
expect "dojang (pid "
expect "Token: tmux-token"
tmux -L "$tmux_socket" send-keys -t renew "$pin" Enter
wait_for "dojang exited " 30
screen | grep -qF "$pin" && fail "the PIN was echoed"
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
wait_for "Pay and renew? [y/N]:"
tmux -L "$tmux_socket" send-keys -t renew n Enter
wait_for "dojang exited " 30
expect "the fee of 4,400 KRW was not accepted; nothing was generated"
expect "dojang exited 1"
after=$("$dojang" renew --history --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$before" = "$after" ] || fail "declining the fee journalled a renewal ($before -> $after)"
echo "ok: the four steps on a terminal, and a declined fee"
