// libFuzzer target: arbitrary bytes as an instruction-data file (JSONL, JSON array, pretokenized)
// (scripts/fuzz.sh data SECONDS; the body is xft::fuzz::data_input in fuzz_inputs.h, which the
// suite also runs on the committed corpus, tests/fuzz/corpus/data).
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xft::fuzz::data_input(data, size);
  return 0;
}
