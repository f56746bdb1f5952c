#!/usr/bin/env bash
# The PIV card benchmark: dojang-virtual-piv behind a private pcscd + vpcd reader, a dojangd with
# [piv] enabled, the card provisioned through dojang (EC P-256 in 9A, RSA-2048 in 9C, each with a
# certificate), then, with medians over REPS repetitions:
#   1. hotplug latency: the card connecting (or leaving) -> a blocked C_WaitForSlotEvent through
#      dojang-pkcs11.so returns, with pcscd's own share measured beside it;
#   2. a client's cold start (C_Initialize .. certificates and keys listed with their attributes)
#      through dojang with a warm daemon against opensc-pkcs11.so loaded directly, and the APDUs
#      the card received during each;
#   3. an ECDSA P-256 signature with 9A after login, dojang against OpenSC direct.
# A tool, not a test: it prints a table with the targets (reported, never asserted) and exits
# non-zero only when something broke.
#   bench/piv.sh BUILD_DIR [REPS]     (default ./build, 7)
# Needs in BUILD_DIR (a build with tests): bench/dojang-pivbench, src/daemon/dojangd,
# pkcs11/dojang-pkcs11.so, tests/virtual_piv/dojang-virtual-piv:
#   ninja -C BUILD bench/dojang-pivbench src/daemon/dojangd pkcs11/dojang-pkcs11.so \
#         tests/virtual_piv/dojang-virtual-piv
# pcscd's socket is fixed, so the run waits for /tmp/dojang-pcscd.lock like the tests do.
# PIVBENCH_KEEP=1 keeps the temp dir (logs, the card's APDU log) for a look afterwards.
set -euo pipefail

case ${1:-} in -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
build=$(realpath "${1:-build}")
reps=${2:-7}
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "piv.sh: REPS must be a positive number" >&2; exit 2; }

pivbench=$build/bench/dojang-pivbench
dojangd=$build/src/daemon/dojangd
dojang_module=$build/pkcs11/dojang-pkcs11.so
card=$build/tests/virtual_piv/dojang-virtual-piv
opensc=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
for file in "$pivbench" "$dojangd" "$dojang_module" "$card" "$opensc" /usr/lib/pcsc/drivers/serial/libifdvpcd.so; do
  [[ -e $file ]] || { echo "piv.sh: missing $file (build dir: $build; see --help)" >&2; exit 1; }
done
for tool in pcscd pkcs11-tool openssl; do
  command -v "$tool" >/dev/null || { echo "piv.sh: $tool not found" >&2; exit 1; }
done

load_at_start=$(cut -d' ' -f1 /proc/loadavg)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dojang-pivbench.XXXXXX")
mkdir -p "$tmp/home" "$tmp/run" "$tmp/work"
chmod 700 "$tmp/run"
bench_pid=

# The bench runs as its own process group (job control below), with pcscd, the card, dojangd and
# the client processes in it: ending that group by its id ends everything this run started.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [[ -n $bench_pid ]]; then
    kill -TERM -- "-$bench_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 -- "-$bench_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  if [[ -n ${PIVBENCH_KEEP:-} ]]; then
    echo "piv.sh: kept $tmp (PIVBENCH_KEEP)" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "machine: nproc=$(nproc); cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1);" \
  "kernel=$(uname -sr); date=$(date -u +%FT%TZ); load=$load_at_start; opensc=$(dpkg-query -W -f '${Version}' opensc 2>/dev/null || echo '?')"

# Everything the daemon and the clients write (OpenSC's cache directory, dojangd's state) goes
# to the temp dir; no session bus, so no desktop notices.
set -m
HOME=$tmp/home XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/home/state XDG_CONFIG_HOME=$tmp/home/config \
  XDG_DATA_HOME=$tmp/home/data XDG_CACHE_HOME=$tmp/home/cache DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/no-bus \
  DOJANG_VIRTUAL_PIV=$card \
  "$pivbench" run --work "$tmp/work" --dojangd "$dojangd" --module "$dojang_module" --opensc "$opensc" \
  --reps "$reps" >"$tmp/summary.txt" &
bench_pid=$!
set +m
status=0
wait "$bench_pid" || status=$?
bench_pid_done=$bench_pid
bench_pid=
# Anything of the group still there (it should have stopped its children) is ended now.
if kill -0 -- "-$bench_pid_done" 2>/dev/null; then
  kill -TERM -- "-$bench_pid_done" 2>/dev/null || true
  sleep 1
  kill -KILL -- "-$bench_pid_done" 2>/dev/null || true
fi

if ((status != 0)); then
  echo "piv.sh: the bench failed (exit $status); the logs:" >&2
  for log in work/dojangd/dojangd.log work/pcscd/pcscd.log work/card/card.log; do
    [[ -s $tmp/$log ]] && { echo "--- $log (tail)" >&2; tail -n 15 "$tmp/$log" >&2; }
  done
  exit 1
fi
cat "$tmp/summary.txt"
out=$build/bench/last-piv
mkdir -p "$out"
cp "$tmp/summary.txt" "$out/summary.txt"
echo
echo "summary kept in $out/summary.txt"
