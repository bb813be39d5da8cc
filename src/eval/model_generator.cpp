#include "xft/eval/model_generator.h"

#include <algorithm>

#include "xft/core/error.h"

namespace xft {

GenerateFn model_generator(CausalLMImpl& model, const Tokenizer& tokenizer, GenerationConfig config, int64_t batch) {
  XFT_CHECK(batch >= 1, "eval: the generation batch must be >= 1, got ", batch);
  return [&model, &tokenizer, config, batch](const std::vector<std::string>& prompts, int64_t n) {
    std::vector<std::vector<std::string>> out(prompts.size());
    for (int64_t sample = 0; sample < n; ++sample) {
      GenerationConfig g = config;
      g.seed = config.seed + static_cast<uint64_t>(sample);
      for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(batch)) {
        const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch));
        std::vector<std::string> part(prompts.begin() + static_cast<std::ptrdiff_t>(start),
                                      prompts.begin() + static_cast<std::ptrdiff_t>(end));
        auto texts = generate_text(model, tokenizer, part, g);
        for (size_t i = 0; i < texts.size(); ++i) out[start + i].push_back(std::move(texts[i]));
      }
    }
    return out;
  };
}

}  // namespace xft
