#!/usr/bin/env bash
# Installs the built xft into a scratch prefix, then configures, builds and runs a consumer
# project against it: what a user linking xft from their own C++ code does.
# usage: run.sh BUILD_DIR PYTHON CUDA_ARCHS [CXX_FLAGS [LINKER_FLAGS]]
# The flags are the build's own: a consumer of a sanitizer build (scripts/test.sh --sanitize)
# must load the sanitizer runtime first, so it is built with the same -fsanitize options.
set -euo pipefail
build=$1 python=$2 archs=$3 cxx_flags=${4:-} link_flags=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_CUDA_ARCH_LIST="${archs:0:1}.${archs:1}" cmake -S "$here" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" -DCMAKE_CUDA_ARCHITECTURES="$archs" \
  -DCMAKE_CXX_FLAGS="$cxx_flags" -DCMAKE_EXE_LINKER_FLAGS="$link_flags" > "$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
site=$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
flags=""
for d in "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib; do [ -d "$d" ] && flags="$flags -Wl,-rpath-link,$d"; done
cmake --build "$work/build" -j 2 -- > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
LD_LIBRARY_PATH="$work/prefix/lib:$site/torch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/build/consumer" "$work/model"
