// libFuzzer target: arbitrary bytes as a problems file (HumanEval, MBPP, EvalPlus; plain or gzip)
// and a samples file (scripts/fuzz.sh problems SECONDS; the body is xft::fuzz::problems_input in
// fuzz_inputs.h, which the suite also runs on the committed corpus, tests/fuzz/corpus/problems).
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xft::fuzz::problems_input(data, size);
  return 0;
}
