#!/usr/bin/env bash
# Configures (once) and builds dojang into ./build; arguments name ninja targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
ninja -C build "$@"
