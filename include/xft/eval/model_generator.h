// defines: model_generator (a GenerateFn for evaluate_problems that decodes with a loaded model)
#pragma once
#include <cstdint>

#include "xft/data/tokenizer.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/generation.h"
#include "xft/model/llama.h"

namespace xft {

// Prompts in batches of `batch`; sample s of n decodes with seed config.seed + s. The answer
// ends at config.stop (stop_sequences(mode) of the prompt mode, prompt.h). The model and the
// tokenizer must outlive the returned function.
GenerateFn model_generator(CausalLMImpl& model, const Tokenizer& tokenizer, GenerationConfig config, int64_t batch);

}  // namespace xft
