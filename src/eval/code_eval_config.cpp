#include "xft/eval/code_eval_config.h"

#include "core/config_reader.h"
#include "xft/core/error.h"

namespace xft {

namespace {

const ConfigReader<CodeEvalConfig>& code_eval_reader() {
  using C = CodeEvalConfig;
  static const ConfigReader<C> r = ConfigReader<C>("code_eval")
                                       .field("problems", &C::problems)
                                       .field("limit", &C::limit)
                                       .field("samples", &C::samples)
                                       .field("temperature", &C::temperature)
                                       .field("max_new_tokens", &C::max_new_tokens)
                                       .field("batch", &C::batch)
                                       .field("parallelism", &C::parallelism)
                                       .field("timeout_s", &C::timeout_s)
                                       .field("memory_mb", &C::memory_mb)
                                       .field("python", &C::python)
                                       .field("unsafe_no_isolation", &C::unsafe_no_isolation)
                                       .field("prompt", &C::prompt)
                                       .field("base_prompt", &C::base_prompt);
  return r;
}

}  // namespace

CodeEvalConfig CodeEvalConfig::from_json(const nlohmann::json& j, const std::string& source) {
  auto c = code_eval_reader().read(j, source);
  XFT_CHECK(c.limit >= 0, source, ": code_eval.limit must be >= 0 (0: every problem), got ", c.limit);
  XFT_CHECK(c.samples >= 1, source, ": code_eval.samples must be >= 1, got ", c.samples);
  XFT_CHECK(c.samples == 1 || c.temperature > 0.0, source, ": code_eval.samples = ", c.samples,
            " needs code_eval.temperature > 0 (greedy decoding gives one answer)");
  XFT_CHECK(c.temperature >= 0.0, source, ": code_eval.temperature must be >= 0, got ", c.temperature);
  XFT_CHECK(c.max_new_tokens >= 0, source, ": code_eval.max_new_tokens must be >= 0, got ", c.max_new_tokens);
  XFT_CHECK(c.batch >= 1, source, ": code_eval.batch must be >= 1, got ", c.batch);
  XFT_CHECK(c.parallelism >= 1, source, ": code_eval.parallelism must be >= 1, got ", c.parallelism);
  XFT_CHECK(c.timeout_s > 0.0, source, ": code_eval.timeout_s must be > 0, got ", c.timeout_s);
  XFT_CHECK(c.memory_mb >= 16, source, ": code_eval.memory_mb must be >= 16, got ", c.memory_mb);
  XFT_CHECK(!c.python.empty(), source, ": code_eval.python must name an interpreter");
  parse_prompt_mode(c.prompt, source + ": code_eval.prompt");
  if (!c.base_prompt.empty()) parse_prompt_mode(c.base_prompt, source + ": code_eval.base_prompt");
  return c;
}

nlohmann::json CodeEvalConfig::to_json() const { return code_eval_reader().write(*this); }

EvalOptions CodeEvalConfig::eval_options() const {
  EvalOptions o;
  o.samples = samples;
  o.ks = {1};
  if (samples > 1) o.ks.push_back(samples);
  o.limit = limit > 0 ? limit : -1;
  o.parallelism = parallelism;
  o.limits.timeout_s = timeout_s;
  o.limits.memory_bytes = memory_mb * 1024 * 1024;
  o.limits.python = python;
  o.limits.unsafe_no_isolation = unsafe_no_isolation;
  return o;
}

GenerationConfig CodeEvalConfig::generation(PromptMode mode) const {
  GenerationConfig g;
  g.max_new_tokens = max_new_tokens;
  g.temperature = temperature;
  g.stop = stop_sequences(mode);
  return g;
}

PromptMode CodeEvalConfig::prompt_mode(bool base) const {
  return parse_prompt_mode(base && !base_prompt.empty() ? base_prompt : prompt, "code_eval.prompt");
}

}  // namespace xft
