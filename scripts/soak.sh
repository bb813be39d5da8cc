#!/usr/bin/env bash
# Soak test of crash recovery: the xft pipeline on a tiny model is killed with SIGKILL at random
# moments ROUNDS times, rerun with --resume after each kill, and its final models must equal an
# uninterrupted run's byte for byte (tests/test_failures.cpp, Soak.*; CTest runs 3 rounds).
#   scripts/soak.sh [ROUNDS=50] [SEED=random]
# Needs a build (scripts/build.sh) with its test fixtures made (ctest -R make_ once).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-50}
seed=${2:-$RANDOM}
build=${XFT_BUILD_DIR:-$root/build}
echo "soak: $rounds rounds, seed $seed (rerun with: scripts/soak.sh $rounds $seed)"
XFT_SOAK_ROUNDS=$rounds XFT_SOAK_SEED=$seed "$build/tests/test_failures" --gtest_filter='Soak.*'
