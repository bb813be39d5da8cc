// libFuzzer target: arbitrary bytes as tokenizer.json, then BPE encoding and decoding
// (scripts/fuzz.sh tokenizer SECONDS; the body is xft::fuzz::tokenizer_input in fuzz_inputs.h, which the
// suite also runs on the committed corpus, tests/fuzz/corpus/tokenizer).
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xft::fuzz::tokenizer_input(data, size);
  return 0;
}
