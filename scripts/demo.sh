#!/usr/bin/env bash
# The main job: set up, build, and run xft-demo (SFT vs XFT vs EWA on this machine's Python
# standard library, CPU only). Arguments go to xft-demo, e.g. --run-dir runs/demo2 or --resume.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# Only what the demo needs (the tests compile with scripts/test.sh).
XFT_TARGETS=xft-demo bash scripts/build.sh > build.log 2>&1 || { tail -50 build.log; exit 1; }
python=${XFT_PYTHON:-$root/.venv/bin/python}
exec build/examples/xft-demo --python "$python" "$@"
