#!/usr/bin/env bash
# Configures and builds into build/ (Release, Ninja). Extra arguments go to cmake's configure step,
# e.g. scripts/build.sh -DXFT_WITH_CUDA=OFF or -DXFT_PYTHON=/usr/bin/python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${XFT_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
# XFT_TARGETS: build only these targets (scripts/demo.sh builds just the demo).
cmake --build build -j "$jobs" ${XFT_TARGETS:+--target $XFT_TARGETS}
