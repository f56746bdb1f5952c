#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the unit, protocol, integration and CA
# suites (gcc build), the unit and protocol suites again under AddressSanitizer and UBSan
# (clang build), and the wire decoder fuzzer for 60 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

echo "== build (gcc)"
./scripts/build.sh

echo "== tests"
meson test -C build --print-errorlogs --num-processes 2

echo "== sanitizer build (clang, address+undefined, fuzzers)"
if [ ! -f build-sanitize/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-sanitize -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-sanitize
echo "== unit and protocol suites under the sanitizers; the decoder fuzzer for 60 s"
echo "   (longer fuzzing: DOJANG_FUZZ_BUILD=\$PWD/build-sanitize fuzz/run.sh SECONDS)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --print-errorlogs --num-processes 2 --suite unit --suite protocol --suite fuzz
