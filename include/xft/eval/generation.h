// defines: GenerationConfig, generate (batched, KV cache, left padding, greedy or
//          temperature/top-p sampling), generate_text (strings in, strings out, stop sequences)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xft/data/tokenizer.h"
#include "xft/model/llama.h"

namespace xft {

struct GenerationConfig {
  int64_t max_new_tokens = 512;
  double temperature = 0.0;  // 0: greedy (the paper's setting)
  double top_p = 1.0;        // nucleus sampling when temperature > 0
  uint64_t seed = 0;
  std::vector<int64_t> stop_token_ids;  // default: the model's eos_token_id
  std::vector<std::string> stop;        // generate_text only: cut at the first occurrence
  int64_t pad_id = 0;                   // fills finished rows and left padding
  // Called after each new token of a row; true ends that row (generate_text uses it for `stop`).
  std::function<bool(int64_t row, const std::vector<int64_t>& generated)> should_stop;
};

// Token ids in, new token ids out (prompt excluded; stop tokens excluded). Prompts are
// left-padded into one batch; positions follow the attention mask, as transformers' generate.
std::vector<std::vector<int64_t>> generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationConfig& config);

// Text in (BOS prepended when the tokenizer has one), generated text out, cut at stop strings.
std::vector<std::string> generate_text(CausalLMImpl& model, const Tokenizer& tokenizer,
                                       const std::vector<std::string>& prompts, const GenerationConfig& config);

}  // namespace xft
