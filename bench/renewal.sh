#!/usr/bin/env bash
# One `dojang renew` timed end to end on SoftHSM behind dojangd against dojang-ca on loopback, for
# EC P-256 and RSA-2048 keys, with the engine's own split (keygen, CMP round trips, verification,
# token writes) from `dojang renew --json`. A tool, not a test: it prints figures and fails only
# when a renewal fails. Target: under 1 s for P-256.
#   bench/renewal.sh [BUILD_DIR] [ROUNDS]   (default ./build, 5 renewals per key type)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
rounds=${2:-5}
source scripts/lib/sandbox.sh
trap sandbox_cleanup EXIT
pin=1234
sandbox_start "$build" bench-renewal "$pin" --test-validity-days 20
dojang=$build/src/cli/dojang

echo "machine: nproc=$(nproc); $(uname -r); $(date -u +%FT%TZ); load=$(cut -d' ' -f1 /proc/loadavg)"
printf '%-9s %6s | %8s %8s %8s %8s %8s\n' "key" "rounds" "total" "keygen" "cmp" "verify" "writes"
for key in ec-p256 rsa-2048; do
  sandbox_enrol "bench-$key" --key-type "$key" >/dev/null
  totals=()
  : >"$sandbox_work/$key.json"
  for _ in $(seq "$rounds"); do
    start=$(date +%s%N)
    echo "$pin" | "$dojang" renew "bench-$key" --pin-stdin --accept-fee 4400 --delete-old --json >>"$sandbox_work/$key.json"
    totals+=($(( ($(date +%s%N) - start) / 1000000 )))
  done
  python3 - "$key" "$rounds" "$sandbox_work/$key.json" "${totals[@]}" <<'PY'
import json, statistics, sys
key, rounds, path, totals = sys.argv[1], int(sys.argv[2]), sys.argv[3], [int(t) for t in sys.argv[4:]]
decoder, text, results = json.JSONDecoder(), open(path).read(), []
while text.strip():
    value, end = decoder.raw_decode(text.lstrip())
    results.append(value)
    text = text.lstrip()[end:]
def median(name):
    values = [r.get("timings_ms", {}).get(name) for r in results]
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.1f}" if values else "-"
print(f"{key:<9} {rounds:>6} | {statistics.median(totals):>8.1f} {median('keygen'):>8} {median('cmp'):>8} "
      f"{median('verify'):>8} {median('token_writes'):>8}")
PY
done
echo "(milliseconds, medians; total is the whole dojang process: start, module load, login, the renewal)"
