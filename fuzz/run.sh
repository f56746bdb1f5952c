#!/bin/sh
# Fuzzes the wire decoder and the daemon's dispatch() for SECONDS (default 60), then prints one
# line: runs, coverage, corpus size, and whether it crashed. Exits non-zero on a crash.
#
#   fuzz/run.sh            # 60 s, as the test suite runs it
#   fuzz/run.sh 3600       # a longer run; the corpus it grows is kept in the build directory
#
# Builds $DOJANG_FUZZ_BUILD (default build-fuzz at the top of the tree) when it is missing:
#   CXX=clang++ CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
#     -Db_lundef=false -Dtests=false
# Seeds come from fuzz/corpus/ (read only); new inputs go to <build>/fuzz/corpus-work/, crashes to
# <build>/fuzz/artifacts/, the fuzzer's full output to <build>/fuzz/last-run.log.
set -eu

seconds=${1:-60}
case $seconds in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
build=${DOJANG_FUZZ_BUILD:-$root/build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ CC=clang meson setup "$build" "$root" -Dfuzzing=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dtests=false >"$root/.fuzz-setup.log" 2>&1 || {
    cat "$root/.fuzz-setup.log" >&2
    rm -f "$root/.fuzz-setup.log"
    echo "fuzz: meson setup of $build failed" >&2
    exit 1
  }
  rm -f "$root/.fuzz-setup.log"
fi
ninja -C "$build" fuzz/wire_decoder_fuzz >/dev/null || {
  echo "fuzz: building wire_decoder_fuzz failed (ninja -C $build fuzz/wire_decoder_fuzz)" >&2
  exit 1
}

out="$build/fuzz"
mkdir -p "$out/corpus-work" "$out/artifacts"
log="$out/last-run.log"

# UBSan only reports by default; here undefined behaviour is a crash like any other.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}

status=0
"$out/wire_decoder_fuzz" \
  -max_total_time="$seconds" \
  -rss_limit_mb=2048 \
  -timeout=10 \
  -close_fd_mask=2 \
  -print_final_stats=1 \
  -dict="$root/fuzz/wire.dict" \
  -artifact_prefix="$out/artifacts/" \
  "$out/corpus-work" "$root/fuzz/corpus" >"$log" 2>&1 || status=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
corpus=$(ls "$out/corpus-work" | wc -l)

if [ "$status" -eq 0 ]; then
  echo "fuzz: wire_decoder_fuzz ${seconds}s: ${runs:-?} runs, cov ${cov:-?}, ft ${ft:-?}, corpus $corpus, no crash"
else
  crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  echo "fuzz: wire_decoder_fuzz ${seconds}s: CRASH (exit $status) after ${runs:-?} runs; input ${crash:-?}; log $log"
  grep -E 'ERROR: |runtime error|SUMMARY' "$log" | head -n 5 >&2 || true
fi
exit "$status"
