#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, the CUDA toolkit (nvcc of torch's CUDA major)
# and a python3 with torch 2.11 (nothing is downloaded), configure and build against that
# python's LibTorch, run the CTest suite with the GPU tests, check that the CUDA MoE tests did
# not skip, then run the MoE benchmark, which writes bench/results/<date>-<gpu>.md and .json,
# and the distributed path's overhead at world size 1 (bench/dist_overhead.sh, <date>-<gpu>-dist-overhead.md).
#   scripts/gpu_check.sh [build-dir]     (default build-gpu/)
#   env: XFT_PYTHON (default: python3 on PATH), XFT_JOBS, XFT_TEST_JOBS,
#        XFT_CTEST_ARGS (e.g. "-E make_llama_fixtures" without transformers), XFT_BENCH_ARGS
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-gpu}
python=${XFT_PYTHON:-$(command -v python3)}
jobs=${XFT_JOBS:-$(nproc)}
fail() { echo "gpu_check: $*" >&2; exit 1; }

[ -n "$python" ] || fail "no python3 on PATH (set XFT_PYTHON)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$python" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' \
  || fail "$python cannot import torch or sees no GPU"
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || fail "no nvcc (put the CUDA toolkit's bin on PATH)"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DXFT_PYTHON="$python" \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DXFT_WITH_CUDA=ON -DXFT_BUILD_BENCH=ON || fail "configure failed"
cmake --build "$build" -j "$jobs" || fail "build failed"

# ctest's result is kept; the benchmark still runs so that a failure comes with numbers.
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j "${XFT_TEST_JOBS:-2}" --timeout 1500 ${XFT_CTEST_ARGS:-}
tests_rc=$?
# On a GPU machine none of the CUDA MoE tests may skip.
gpu_log=$("$build/tests/test_moe_cuda" 2>&1)
gpu_rc=$?
echo "$gpu_log" | tail -n 30
if echo "$gpu_log" | grep -q "SKIPPED"; then
  echo "gpu_check: CUDA MoE tests skipped on a GPU machine" >&2
  gpu_rc=1
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
# shellcheck disable=SC2086
XFT_COMMIT=$commit "$build/bench/xft-moe-bench" --out "$root/bench/results" ${XFT_BENCH_ARGS:-}
bench_rc=$?

# The distributed path at world size 1 (torchrun, NCCL selected, the GPU bound from LOCAL_RANK)
# against a plain process: the MoE stage on a random Llama made by transformers.
world=$build/bench-world
"$python" "$root/bench/make_bench_world.py" "$world" --device cuda &&
  XFT_BUILD=$build XFT_PYTHON=$python bash "$root/bench/dist_overhead.sh" "$world/experiment.json"
dist_rc=$?

echo "gpu_check: ctest exit $tests_rc, test_moe_cuda exit $gpu_rc, bench exit $bench_rc, dist bench exit $dist_rc"
[ "$tests_rc" -eq 0 ] && [ "$gpu_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$dist_rc" -eq 0 ]
