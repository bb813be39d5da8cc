// libFuzzer target: arbitrary bytes as an experiment config with --set lines
// (scripts/fuzz.sh experiment SECONDS; the body is xft::fuzz::experiment_input in fuzz_inputs.h, which the
// suite also runs on the committed corpus, tests/fuzz/corpus/experiment).
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xft::fuzz::experiment_input(data, size);
  return 0;
}
