#!/usr/bin/env bash
# One benchmark run: the same dojang-p11bench against the same SoftHSM token along three paths,
#   (a) SoftHSM loaded directly,
#   (b) dojang-pkcs11.so -> dojangd -> SoftHSM,
#   (c) p11-kit-client.so -> p11-kit server -> SoftHSM,
# then a table with the ratios and the targets (reported, never asserted).
#
# usage: bench/run.sh [BUILD_DIR] [--quick] [--duration S] [--threads LIST] [--cases LIST]
#   BUILD_DIR defaults to $BUILD, then ./build. Nothing is built here: `ninja -C BUILD bench`
#   builds dojang-p11bench first and then runs this script.
# Exits 0 when the run completed, whatever the figures; non-zero only when something broke.
# Path (b) degrades to "dojang path unavailable: <reason>" while dojangd is not usable.
set -euo pipefail

build=${BUILD:-./build}
bench_args=()
hold_seconds=30
while (($#)); do
  case $1 in
    --quick) bench_args+=(--quick) ;;
    --duration | --threads | --cases)
      (($# >= 2)) || { echo "run.sh: $1 needs a value" >&2; exit 2; }
      bench_args+=("$1" "$2")
      shift
      ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
build=$(cd "$build" && pwd)

softhsm=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
p11kit_client=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
p11bench=$build/bench/dojang-p11bench
dojangd=$build/src/daemon/dojangd
dojang_module=$build/pkcs11/dojang-pkcs11.so
token=bench
pin=1234
# Labels as seen through dojang, in case dojangd presents the backend token under another name.
dojang_token=${DOJANG_BENCH_TOKEN:-$token}

for tool in jq softhsm2-util p11-kit; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done
for file in "$p11bench" "$softhsm" "$p11kit_client"; do
  [[ -e $file ]] || { echo "run.sh: missing $file (build dir: $build)" >&2; exit 1; }
done

# Other work on the machine skews every figure; the 1-minute load average goes on the machine line.
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dojang-bench.XXXXXX")
bg_pids=()

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid child
  for pid in "${bg_pids[@]}"; do
    # p11-kit server forks one p11-kit-remote per client; end those (by id) with it.
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill "$child" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${bg_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one background process we started and forgets it.
stop_bg() {
  local pid=$1 child keep=()
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill "$child" 2>/dev/null || true; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for child in "${bg_pids[@]}"; do [[ $child == "$pid" ]] || keep+=("$child"); done
  bg_pids=("${keep[@]}")
}

log() { printf '== %s\n' "$*" >&2; }

# Generous wall-clock bound per p11bench run, so a wedged path cannot stall the whole run.
bench_timeout=120

# ---------------------------------------------------------------------------------------------
# The token: one SoftHSM token in the temp dir, keys generated once.
mkdir -p "$tmp/tokens" "$tmp/home" "$tmp/run"
chmod 700 "$tmp/run"
cat >"$tmp/softhsm2.conf" <<EOF
directories.tokendir = $tmp/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF=$tmp/softhsm2.conf
softhsm2-util --init-token --free --label "$token" --pin "$pin" --so-pin 12345678 >/dev/null
log "token '$token' initialised in $tmp/tokens; creating keys"
"$p11bench" --module "$softhsm" --token "$token" --pin "$pin" --setup

broken=0
declare -A unavailable=()

# Runs p11bench for one path into $tmp/<path>.json; extra env via `env` before the call.
run_bench() {
  local name=$1 module=$2 label=$3
  shift 3
  # In the background and waited for, so that a signal reaches the trap at once.
  timeout --kill-after=5 "$bench_timeout" env "$@" "$p11bench" --module "$module" --token "$label" \
    --pin "$pin" --json "${bench_args[@]}" >"$tmp/$name.json" 2>"$tmp/$name.err" &
  local pid=$! status=0
  bg_pids+=("$pid")
  wait "$pid" || status=$?
  stop_bg "$pid"
  # Notes worth seeing even on success (a module that could not verify its own signatures).
  sed -n "s/^p11bench: /  ($name) /p" "$tmp/$name.err" | grep -v ' thread(s): ' >&2 || true
  return "$status"
}

# Starts 4 `--hold` clients one after the other (SoftHSM's file store misreads a token when
# several processes open it at the same instant), and while all 4 are logged in sets
# $measured_rss to the VmRSS (KiB) of process $1, plus (with $2 = tree) its children's.
# The clients are ended before returning; they are in bg_pids meanwhile, for the trap.
measured_rss=
rss_with_clients() {
  local server=$1 mode=$2 module=$3 label=$4
  shift 4
  local pids=() i pid child ready=0
  measured_rss=
  for i in 1 2 3 4; do
    timeout --kill-after=5 $((hold_seconds + 30)) env "$@" "$p11bench" --module "$module" \
      --token "$label" --pin "$pin" --hold "$hold_seconds" >"$tmp/hold$i.out" 2>"$tmp/hold$i.err" &
    pid=$!
    pids+=("$pid")
    bg_pids+=("$pid")
    for _ in $(seq 200); do
      grep -q '^ready' "$tmp/hold$i.out" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    grep -q '^ready' "$tmp/hold$i.out" || break
    ready=$((ready + 1))
  done
  if ((ready == 4)); then
    measured_rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status")
    if [[ $mode == tree ]]; then
      for child in $(ps -o pid= --ppid "$server"); do
        measured_rss=$((measured_rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$child/status" \
          2>/dev/null || echo 0)))
      done
    fi
  else
    log "hold client $((ready + 1)) did not log in: $(tr '\n' ' ' <"$tmp/hold$((ready + 1)).err")"
  fi
  for pid in "${pids[@]}"; do stop_bg "$pid"; done
}

# ---------------------------------------------------------------------------------------------
# (a) SoftHSM directly.
log "(a) SoftHSM direct: $softhsm"
if ! run_bench a "$softhsm" "$token"; then
  echo "run.sh: direct SoftHSM run failed:" >&2
  cat "$tmp/a.err" >&2
  exit 1
fi


# ---------------------------------------------------------------------------------------------
# (b) dojang: dojangd with SoftHSM as its backend, dojang-pkcs11.so in the client.
# The path functions run in this shell (background pids must reach the trap); on failure they
# set $reason and return 1.
reason=
dojang_rss=
dojang_path() {
  [[ -x $dojangd ]] || { reason="$dojangd not built"; return 1; }
  [[ -e $dojang_module ]] || { reason="$dojang_module not built"; return 1; }
  # Application mode: the workload logs in with the PIN, as it does against the module directly.
  cat >"$tmp/dojangd.toml" <<EOF
[pin]
mode = "application"
[[backend]]
name = "softhsm"
module = "$softhsm"
EOF
  local sock=$tmp/dojang.sock pid
  # The daemon's own state goes to the temp dir, never to the user's.
  HOME=$tmp/home XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/home/state \
    XDG_CONFIG_HOME=$tmp/home/config XDG_DATA_HOME=$tmp/home/data \
    "$dojangd" --foreground --socket "$sock" --config "$tmp/dojangd.toml" \
    >"$tmp/dojangd.log" 2>&1 &
  pid=$!
  bg_pids+=("$pid")
  for _ in $(seq 100); do
    [[ -S $sock ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      reason="dojangd exited before creating its socket: $(tail -n 3 "$tmp/dojangd.log" | tr '\n' ' ')"
      stop_bg "$pid"
      return 1
    fi
    sleep 0.1
  done
  if [[ ! -S $sock ]]; then
    reason="dojangd created no socket within 10 s"
    stop_bg "$pid"
    return 1
  fi
  local env=(DOJANG_SOCKET="$sock" DOJANG_NO_AUTOSTART=1)
  if ! run_bench b "$dojang_module" "$dojang_token" "${env[@]}"; then
    reason="p11bench failed: $(tail -n 3 "$tmp/b.err" | tr '\n' ' ')"
    stop_bg "$pid"
    return 1
  fi
  rss_with_clients "$pid" self "$dojang_module" "$dojang_token" "${env[@]}"
  dojang_rss=$measured_rss
  stop_bg "$pid"
}
log "(b) dojang: $dojang_module -> dojangd"
if ! dojang_path; then
  unavailable[b]=$reason
  echo "dojang path unavailable: $reason" >&2
  rm -f "$tmp/b.json"
fi

# ---------------------------------------------------------------------------------------------
# (c) p11-kit remoting: p11-kit server in the foreground (in the background), p11-kit-client.so.
p11kit_rss=
p11kit_path() {
  XDG_RUNTIME_DIR=$tmp/run p11-kit server --foreground --provider "$softhsm" \
    "pkcs11:token=$token" >"$tmp/p11kit.out" 2>"$tmp/p11kit.err" &
  local pid=$! address=
  bg_pids+=("$pid")
  for _ in $(seq 100); do
    address=$(sed -n 's/^P11_KIT_SERVER_ADDRESS=\([^;]*\);.*/\1/p' "$tmp/p11kit.out")
    [[ -n $address ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $address ]]; then
    reason="p11-kit server printed no address: $(tr '\n' ' ' <"$tmp/p11kit.err")"
    stop_bg "$pid"
    return 1
  fi
  local env=(P11_KIT_SERVER_ADDRESS="$address")
  if ! run_bench c "$p11kit_client" "$token" "${env[@]}"; then
    reason="p11bench failed: $(tail -n 3 "$tmp/c.err" | tr '\n' ' ')"
    stop_bg "$pid"
    return 1
  fi
  # The server forks one p11-kit-remote per client: count the whole tree.
  rss_with_clients "$pid" tree "$p11kit_client" "$token" "${env[@]}"
  p11kit_rss=$measured_rss
  stop_bg "$pid"
}
log "(c) p11-kit remoting: $p11kit_client -> p11-kit server"
if ! p11kit_path; then
  unavailable[c]=$reason
  echo "p11-kit path unavailable: $reason" >&2
  rm -f "$tmp/c.json"
  broken=1
fi

# ---------------------------------------------------------------------------------------------
# Report.

# "case threads ops_per_s p50_us p99_us" lines for one path, empty when the path did not run.
figures() {
  [[ -s $tmp/$1.json ]] || return 0
  jq -r '.results[] | "\(.case) \(.threads) \(.ops_per_s) \(.p50_us) \(.p99_us)"' "$tmp/$1.json"
}
declare -A ops=() p50=() p99=()
keys=()
for path in a b c; do
  while read -r name threads rate l50 l99; do
    key="$name/$threads"
    [[ $path == a ]] && keys+=("$key")
    ops[$path,$key]=$rate
    p50[$path,$key]=$l50
    p99[$path,$key]=$l99
  done < <(figures "$path")
done

ratio() {  # ratio NUMERATOR DENOMINATOR -> "0.87" or "-"
  if [[ -z ${1:-} || -z ${2:-} ]]; then echo -; return; fi
  awk -v n="$1" -v d="$2" 'BEGIN { if (d > 0) printf "%.2f", n / d; else print "-" }'
}
cell() {  # cell PATH KEY -> "12345 83/150" or "-"
  local k="$1,$2"
  if [[ -z ${ops[$k]:-} ]]; then echo -; return; fi
  printf '%.0f %.0f/%.0f' "${ops[$k]}" "${p50[$k]}" "${p99[$k]}"
}

machine="nproc=$(nproc); cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
machine+="; kernel=$(uname -sr); date=$(date -u +%Y-%m-%dT%H:%M:%SZ); load=$load_at_start"
duration=$(jq -r 'if .ops_per_thread > 0 then "\(.ops_per_thread) ops/thread"
                  else "\(.duration_s) s/case" end' "$tmp/a.json")

report() {
  echo
  echo "machine: $machine"
  echo "paths:   a = SoftHSM direct; b = dojang-pkcs11.so -> dojangd; c = p11-kit-client.so -> p11-kit server"
  echo "run:     $duration; cells are ops/s then p50/p99 latency in microseconds"
  local path
  for path in b c; do
    [[ -n ${unavailable[$path]:-} ]] && echo "note:    path $path unavailable: ${unavailable[$path]}"
  done
  echo
  printf '%-13s %3s | %-22s | %-22s | %-22s | %5s %5s\n' case thr "a direct" "b dojang" \
    "c p11-kit" b/a b/c
  printf '%s\n' "$(printf '%.0s-' {1..106})"
  local key name threads
  for key in "${keys[@]}"; do
    name=${key%/*}
    threads=${key#*/}
    printf '%-13s %3s | %-22s | %-22s | %-22s | %5s %5s\n' "$name" "$threads" \
      "$(cell a "$key")" "$(cell b "$key")" "$(cell c "$key")" \
      "$(ratio "${ops[b,$key]:-}" "${ops[a,$key]:-}")" \
      "$(ratio "${ops[b,$key]:-}" "${ops[c,$key]:-}")"
  done
  echo
  local mib_d=- mib_c=-
  [[ -n $dojang_rss ]] && mib_d=$(awk -v k="$dojang_rss" 'BEGIN { printf "%.1f", k / 1024 }')
  [[ -n $p11kit_rss ]] && mib_c=$(awk -v k="$p11kit_rss" 'BEGIN { printf "%.1f", k / 1024 }')
  echo "RSS with 4 clients logged in: dojangd $mib_d MiB; p11-kit server + its per-client children $mib_c MiB"
  echo
  echo "targets (reported, not asserted):"
  target "ECDSA P-256, 1 thread: dojang >= 0.65x direct" \
    "$(ratio "${ops[b,ecdsa-p256/1]:-}" "${ops[a,ecdsa-p256/1]:-}")" ">=" 0.65
  target "ECDSA P-256, 1 thread: dojang >= 1.5x p11-kit" \
    "$(ratio "${ops[b,ecdsa-p256/1]:-}" "${ops[c,ecdsa-p256/1]:-}")" ">=" 1.5
  target "C_GetAttributeValue, 1 thread: dojang >= 1.5x p11-kit" \
    "$(ratio "${ops[b,getattr/1]:-}" "${ops[c,getattr/1]:-}")" ">=" 1.5
  if [[ $mib_d == - ]]; then
    target "dojangd RSS with 4 clients < 15 MiB" - "<" 15
  else
    target "dojangd RSS with 4 clients < 15 MiB" "$mib_d" "<" 15
  fi
}

target() {  # target TEXT VALUE OP LIMIT
  local text=$1 got=$2 op=$3 limit=$4 verdict
  if [[ $got == - ]]; then
    verdict="N/A (no figure for path b)"
  elif awk -v g="$got" -v l="$limit" -v op="$op" \
      'BEGIN { exit !((op == ">=" && g >= l) || (op == "<" && g < l)) }'; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  printf '  %-55s %8s  %s\n' "$text" "$got" "$verdict"
}

report | tee "$tmp/summary.txt"

# Keep the raw figures next to the build for later comparison.
out=$build/bench/last-run
mkdir -p "$out"
rm -f "$out"/*.json "$out"/summary.txt
cp "$tmp/summary.txt" "$out/"
for path in a b c; do
  [[ -s $tmp/$path.json ]] && cp "$tmp/$path.json" "$out/$path.json"
done
echo
echo "raw results: $out"
exit "$broken"
