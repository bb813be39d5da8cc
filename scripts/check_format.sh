#!/usr/bin/env bash
# Checks that every C++ and CUDA source git tracks (*.cpp, *.h, *.cu, *.cuh) is laid out as
# .clang-format says: lists the files that are not and exits 1, or exits 0 when all are.
#   scripts/check_format.sh --fix    rewrites those files in place instead.
#   scripts/check_format.sh FILE...  checks (or with --fix rewrites) only these files.
# clang-format comes from Debian (scripts/setup.sh installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fix=0
if [[ ${1:-} == --fix ]]; then
  fix=1
  shift
fi
command -v clang-format >/dev/null || { echo "check_format: clang-format not found (bash scripts/setup.sh)" >&2; exit 2; }
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
fi
if [ "$fix" = 1 ]; then
  clang-format -i --style=file "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}"
  echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format (scripts/check_format.sh --fix rewrites them)" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
