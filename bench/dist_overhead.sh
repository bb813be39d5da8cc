#!/usr/bin/env bash
# Overhead of the distributed path at world size 1: the MoE stage of the xft driver run as a
# plain process, under `torchrun --nproc-per-node=1` (c10d store, groups, the trainer's
# distributed branches) and with torchrun's variables set by hand (the same path without the
# launcher's agent process), alternating, REPEATS times each (default 3). Reports the MoE
# stage's median tokens/s over its steps after the first, and the ratios; target: the torchrun
# run within 3% of the plain one.
#
#   bench/dist_overhead.sh CONFIG [--set key=value ...]
# e.g. on a GPU machine (what scripts/gpu_check.sh runs; no tokenizer or download needed):
#   python3 bench/make_bench_world.py /tmp/bw --device cuda && bench/dist_overhead.sh /tmp/bw/experiment.json
# or on the CPU, after scripts/demo.sh made runs/demo:
#   bench/dist_overhead.sh configs/tiny.json --set base_model=runs/demo/base/final --set moe_train.max_steps=80
# env: XFT_BUILD (build directory, default build/), XFT_PYTHON (python with torch, for torchrun).
# Writes bench/results/<date>-<device>-dist-overhead.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=$1; shift
py=${XFT_PYTHON:-$root/.venv/bin/python}
xft=${XFT_BUILD:-$root/build}/examples/xft
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--config "$config" --set merge_train.max_steps=1 "$@")
repeats=${REPEATS:-3}
# run NAME COMMAND...: COMMAND with run_dir $tmp/NAME, its output in $tmp/NAME.log (shown on failure).
run() {
  local name=$1; shift
  "$@" "${common[@]}" --set run_dir="$tmp/$name" > "$tmp/$name.log" 2>&1 ||
    { tail -n 30 "$tmp/$name.log" >&2; echo "dist_overhead: run $name failed" >&2; exit 1; }
}
for i in $(seq 1 "$repeats"); do
  run "plain$i" "$xft"
  run "dist$i" "$py" -m torch.distributed.run --standalone --nproc-per-node=1 --no-python "$xft"
  # The launcher's variables set by hand: the distributed path without torchrun's agent process.
  port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run "env$i" env RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" "$xft"
done
device=$("$py" - <<'PY'
import torch
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
else:
    names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    print(f"{names[0] if names else 'CPU'} ({len(names)} cores)")
PY
)
commit=$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo -dirty)
out="$root/bench/results/$(date -u +%F)-$(echo "$device" | tr ' /' '--' | tr -cd 'A-Za-z0-9_.-')-dist-overhead.md"
"$py" - "$tmp" "$device" "$commit" "$config $*" "$repeats" > "$out" <<'PY'
import json, statistics, sys, datetime
tmp, device, commit, what, repeats = sys.argv[1:6]
repeats = int(repeats)
def rates(run):
    rows = [json.loads(l) for l in open(f"{tmp}/{run}/xft/moe/metrics.jsonl")]
    return [r["tokens_per_s"] for r in rows[1:]]
plain = [x for i in range(1, repeats + 1) for x in rates(f"plain{i}")]
dist = [x for i in range(1, repeats + 1) for x in rates(f"dist{i}")]
env = [x for i in range(1, repeats + 1) for x in rates(f"env{i}")]
p, d, e = statistics.median(plain), statistics.median(dist), statistics.median(env)
print(f"# Distributed path overhead at world size 1\n")
print(f"- date (UTC): {datetime.datetime.utcnow():%Y-%m-%d %H:%M}\n- device: {device}\n- commit: {commit}")
print(f"- run: the MoE stage of `xft` ({what}), {repeats} runs each, alternating, steps after the first\n")
print("| launch | steps | median tokens/s | ratio |\n|---|---|---|---|")
print(f"| plain process | {len(plain)} | {p:.0f} | 1.000 |")
print(f"| torchrun --nproc-per-node=1 | {len(dist)} | {d:.0f} | {d / p:.3f} |")
print(f"| RANK/WORLD_SIZE/MASTER_* set by hand (no torchrun agent) | {len(env)} | {e:.0f} | {e / p:.3f} |")
print(f"\nTarget: ratio >= 0.97 ({'met' if d / p >= 0.97 else 'NOT met'}).")
PY
cat "$out"
