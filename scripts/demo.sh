#!/usr/bin/env bash
# The main job: set up, build, and run xft-demo (SFT vs XFT vs EWA on this machine's Python
# standard library, CPU only), then draw its pictures (scripts/plot_run.py: RUN_DIR/plots).
# Arguments go to xft-demo, e.g. --run-dir runs/demo2, --seeds 1,2,3 or --resume.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# Only what the demo needs (the tests compile with scripts/test.sh).
XFT_TARGETS=xft-demo bash scripts/build.sh > build.log 2>&1 || { tail -50 build.log; exit 1; }
python=${XFT_PYTHON:-$root/.venv/bin/python}
build/examples/xft-demo --python "$python" "$@"
# The pictures of the run (loss curves, expert load, merge coefficients, the study's CIs).
run_dir=runs/demo
for ((i = 1; i <= $#; ++i)); do
  [[ ${!i} == --run-dir ]] && { j=$((i + 1)); run_dir=${!j}; }
  [[ ${!i} == --run-dir=* ]] && run_dir=${!i#--run-dir=}
done
"$python" scripts/plot_run.py "$run_dir"
