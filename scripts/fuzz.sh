#!/usr/bin/env bash
# Fuzzes one of xft's parsers of untrusted files with libFuzzer (clang):
#   scripts/fuzz.sh safetensors|config|tokenizer|data|experiment|problems SECONDS [libFuzzer flags...]
# safetensors: arbitrary bytes as a .safetensors file (header validation, tensor ranges).
# config:      arbitrary bytes as config.json, then checked against a tiny checkpoint's headers.
# tokenizer:   arbitrary bytes as tokenizer.json, then encoding and decoding (byte-level BPE).
# data:        arbitrary bytes as an instruction-data file (JSONL, JSON array, pretokenized).
# experiment:  arbitrary bytes as an experiment config followed by --set lines.
# problems:    arbitrary bytes as a problems file (HumanEval, MBPP, EvalPlus) followed by samples.
# (The last four share their bodies with tests/test_fuzz_corpus.cpp, which replays the
# committed corpora in the normal suite: copy a crash-* input there once its bug is fixed.)
# Builds build-fuzz/fuzz_TARGET from tests/fuzz/fuzz_TARGET.cpp and the library sources it
# exercises (coverage, ASan and UBSan instrumented; the rest of the library comes uninstrumented
# from build/src/libxft.so, built first if missing; libtorch is not instrumented), then runs it for
# SECONDS on build-fuzz/corpus-TARGET, seeded from tests/fuzz/corpus/TARGET. A crash, a
# sanitizer report, an escaped exception, a >10 s input or an allocation over 2 GB fails the
# script and leaves the input in build-fuzz/ (crash-*, timeout-*, oom-*).
# Needs clang with libFuzzer (Debian: clang-14, libclang-rt-14-dev).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?usage: scripts/fuzz.sh safetensors|config|tokenizer|data|experiment|problems SECONDS [libFuzzer flags]}
seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
core="src/core/safetensors.cpp src/core/atomic_writer.cpp src/core/files.cpp"
tokenizer="src/data/tokenizer.cpp src/data/bpe_tokenizer.cpp src/data/bpe_text.cpp src/data/bpe_pipeline.cpp
           src/data/unicode_normalization.cpp"
case $target in
  safetensors) sources="$core" ;;
  config) sources="src/model/config.cpp src/model/config_check.cpp $core" ;;
  tokenizer) sources="$tokenizer src/core/files.cpp" ;;
  data) sources="src/data/instruction_data.cpp $tokenizer src/core/files.cpp" ;;
  experiment) sources="src/pipelines/experiment.cpp src/train/train_config.cpp src/model/config.cpp
                       src/methods/merge.cpp src/methods/ewa.cpp src/methods/upcycle.cpp src/data/instruction_data.cpp
                       src/eval/code_eval_config.cpp src/train/logging_config.cpp
                       src/core/files.cpp" ;;
  problems) sources="src/eval/problems.cpp src/eval/samples.cpp src/core/files.cpp" ;;
  *) echo "scripts/fuzz.sh: unknown target '$target' (safetensors, config, tokenizer, data, experiment or problems)" >&2
     exit 2 ;;
esac
[[ -f $root/build/src/libxft.so ]] || XFT_TARGETS=xft bash "$root/scripts/build.sh"
cxx=${XFT_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
if [[ -z $cxx ]] && command -v apt-get > /dev/null; then
  # Debian's clang with libFuzzer: installed here, not in setup.sh, so CI does not pay for it.
  echo "scripts/fuzz.sh: installing clang-14 and libclang-rt-14-dev" >&2
  apt-get update -q > /dev/null && apt-get install -y -q clang-14 libclang-rt-14-dev > /dev/null
  cxx=$(command -v clang++-14 || true)
fi
[[ -n $cxx ]] || { echo "scripts/fuzz.sh: no clang++ (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }
python=${XFT_PYTHON:-$root/.venv/bin/python}
torch_dir=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
out=$root/build-fuzz
mkdir -p "$out/obj-$target" "$out/corpus-$target"
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -I"$root/include" -I"$root/src" -I"$root/tests" -isystem "$torch_dir/include"
       -isystem "$torch_dir/include/torch/csrc/api/include")
objs=()
for src in tests/fuzz/fuzz_$target.cpp $sources; do
  obj=$out/obj-$target/$(basename "$src" .cpp).o
  # Rebuilt when its source or any project header is newer (torch headers make this slow).
  if [[ ! -f $obj || $root/$src -nt $obj ]] || find "$root/include" "$root/src" -name '*.h' -newer "$obj" | grep -q .; then
    echo "compiling $src"
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$root/$src" -o "$obj"
  fi
  objs+=("$obj")
done
"$cxx" "${flags[@]}" -fsanitize=fuzzer "${objs[@]}" -o "$out/fuzz_$target" \
  -L"$root/build/src" -Wl,-rpath,"$root/build/src" -lxft $(pkg-config --libs sentencepiece libpcre2-8 libutf8proc) \
  -L"$torch_dir/lib" -Wl,-rpath,"$torch_dir/lib" -ltorch -ltorch_cpu -lc10 -lz
if [[ $target == safetensors && ! -f $out/corpus-$target/seed-valid ]]; then
  # A valid two-tensor file: header length, JSON header, data buffer.
  "$python" - "$out/corpus-$target/seed-valid" <<'PY'
import json, struct, sys
h = json.dumps({"__metadata__": {"format": "pt"},
                "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}}).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(range(22)))
PY
fi
# Torch's static singletons are never freed: leak reports would be noise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
seeds=()
[[ -d $root/tests/fuzz/corpus/$target ]] && seeds+=("$root/tests/fuzz/corpus/$target")
exec "$out/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$@" "$out/corpus-$target" "${seeds[@]}"
