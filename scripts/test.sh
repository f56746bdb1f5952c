#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the unit, protocol, integration and CA
# suites (gcc build), the unit and protocol suites again under AddressSanitizer and UBSan
# (clang build), and the wire decoder fuzzer for 60 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

echo "== build (gcc)"
./scripts/build.sh

echo "== sanitizer build (clang, address+undefined, fuzzers): in the background, at low priority,"
echo "   while the tests run (they mostly wait on daemons, cards and clients; the compiler takes the"
echo "   idle CPU). No optimisation: compiling is most of its cost, and its suites run in seconds."
if [ ! -f build-sanitize/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-sanitize -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug >/dev/null
fi
# Only what these suites run is built here (the integration suite needs the plain build: a
# sanitized module cannot be loaded by unsanitized programs such as pkcs11-tool).
sanitized_suites=(unit protocol fuzz)
# Regenerate first if meson files changed since the last configure, so the list below is current.
ninja -C build-sanitize build.ninja >/dev/null
mapfile -t sanitized_targets < <(meson introspect build-sanitize --tests | python3 -c '
import json, os, sys
wanted = {"dojang:" + name for name in sys.argv[1:]}
for test in json.load(sys.stdin):
    program = os.path.relpath(test["cmd"][0], "build-sanitize")
    if wanted & set(test["suite"]) and not program.startswith(".."):
        print(program)
' "${sanitized_suites[@]}")
nice -n 19 ninja -C build-sanitize "${sanitized_targets[@]}" fuzz/wire_decoder_fuzz \
  >build-sanitize/background-build.log 2>&1 &
sanitize_build=$!
trap 'kill "$sanitize_build" 2>/dev/null || true' EXIT

echo "== tests"
meson test -C build --print-errorlogs --num-processes 2

echo "== the sanitizer build finishing"
if ! wait "$sanitize_build"; then
  tail -n 60 build-sanitize/background-build.log
  echo "the sanitizer build failed (build-sanitize/background-build.log)" >&2
  exit 1
fi
trap - EXIT
echo "== unit and protocol suites under the sanitizers; the decoder fuzzer for 60 s"
echo "   (longer fuzzing: DOJANG_FUZZ_BUILD=\$PWD/build-sanitize fuzz/run.sh SECONDS)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --no-rebuild --print-errorlogs --num-processes 2 \
  "${sanitized_suites[@]/#/--suite=}"
