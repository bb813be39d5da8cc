#include "xft/eval/generation.h"

#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>

#include "xft/core/error.h"
#include "xft/model/eval_mode.h"

namespace xft {

namespace {

// Next token per row from last-position logits [B, V].
torch::Tensor pick(const torch::Tensor& logits_BV, const GenerationConfig& c, at::Generator& gen) {
  if (c.temperature <= 0.0) return logits_BV.argmax(-1);
  auto probs = torch::softmax(logits_BV.to(torch::kFloat32) / c.temperature, -1);
  if (c.top_p < 1.0) {
    // Keep the smallest prefix of the sorted distribution whose mass reaches top_p.
    auto [sorted, idx] = probs.sort(-1, /*descending=*/true);
    auto before = sorted.cumsum(-1) - sorted;
    sorted.masked_fill_(before >= c.top_p, 0.0);
    probs = torch::zeros_like(probs).scatter(-1, idx, sorted);
  }
  return at::multinomial(probs, 1, false, gen).squeeze(-1);
}

}  // namespace

std::vector<std::vector<int64_t>> generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationConfig& c) {
  XFT_CHECK(!prompts.empty(), "generate: no prompts");
  torch::NoGradGuard ng;
  EvalMode eval_mode(model);  // restored on every exit, errors included
  const auto device = model.parameters().front().device();
  const int64_t B = static_cast<int64_t>(prompts.size());
  size_t T0 = 0;
  for (const auto& p : prompts) {
    XFT_CHECK(!p.empty(), "generate: an empty prompt (add at least a BOS token)");
    T0 = std::max(T0, p.size());
  }
  std::vector<int64_t> stops = c.stop_token_ids;
  if (stops.empty() && model.config().eos_token_id) stops.push_back(*model.config().eos_token_id);

  // Left padding, so every row's next token lands in the same column.
  auto ids = torch::full({B, static_cast<int64_t>(T0)}, c.pad_id, torch::kInt64);
  auto mask = torch::zeros({B, static_cast<int64_t>(T0)}, torch::kInt64);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[b];
    const int64_t off = static_cast<int64_t>(T0 - p.size());
    ids[b].narrow(0, off, p.size()).copy_(torch::tensor(p, torch::kInt64));
    mask[b].narrow(0, off, p.size()).fill_(1);
  }
  ids = ids.to(device);
  mask = mask.to(device);
  // Positions count real tokens only (transformers: cumsum(mask) - 1, padding set to 1).
  auto pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
  std::vector<KvCacheLayer> cache;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  std::vector<std::vector<int64_t>> out(B);
  std::vector<bool> done(B, false);
  auto logits = model.logits(model.hidden_states(ids, mask, pos, nullptr, &cache).select(1, -1));
  for (int64_t step = 0; step < c.max_new_tokens; ++step) {
    auto next = pick(logits.cpu(), c, gen);
    auto* next_ptr = next.data_ptr<int64_t>();
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        next_ptr[b] = c.pad_id;  // finished rows keep feeding padding, masked out below
        continue;
      }
      if (std::find(stops.begin(), stops.end(), next_ptr[b]) != stops.end()) {
        done[b] = true;
      } else {
        out[b].push_back(next_ptr[b]);
        if (c.should_stop && c.should_stop(b, out[b])) done[b] = true;
      }
      all_done = all_done && done[b];
    }
    if (all_done || step + 1 == c.max_new_tokens) break;
    auto step_mask = torch::ones({B, 1}, torch::kInt64);
    for (int64_t b = 0; b < B; ++b)
      if (done[b]) step_mask[b][0] = 0;
    mask = torch::cat({mask, step_mask.to(device)}, 1);
    pos = pos.select(1, -1).unsqueeze(1) + 1;
    logits = model.logits(model.hidden_states(next.unsqueeze(1).to(device), mask, pos, nullptr, &cache).select(1, -1));
  }
  return out;
}

std::vector<std::string> generate_text(CausalLMImpl& model, const Tokenizer& tok,
                                       const std::vector<std::string>& prompts, const GenerationConfig& c) {
  std::vector<std::vector<int64_t>> ids;
  for (const auto& p : prompts) {
    std::vector<int64_t> row;
    if (tok.bos_id() >= 0) row.push_back(tok.bos_id());
    auto enc = tok.encode(p);
    row.insert(row.end(), enc.begin(), enc.end());
    ids.push_back(std::move(row));
  }
  GenerationConfig cfg = c;
  // The model's own end of sequence first, as transformers' generate takes it from the model's
  // config: a converted tokenizer may name another token (SmolLM2's GGUF import: <|im_start|>
  // for the tokenizer, <|im_end|> for the model, which ends its answers with the latter).
  if (cfg.stop_token_ids.empty()) {
    const auto& eos = model.config().eos_token_id;
    if (eos && *eos >= 0) {
      cfg.stop_token_ids.push_back(*eos);
    } else if (tok.eos_id() >= 0) {
      cfg.stop_token_ids.push_back(tok.eos_id());
    }
  }
  if (!c.stop.empty()) {
    // Stop a row as soon as its text holds a stop sequence: only the tail can hold a new one.
    size_t longest = 0;
    for (const auto& s : c.stop) longest = std::max(longest, s.size());
    cfg.should_stop = [&tok, &c, longest](int64_t, const std::vector<int64_t>& g) {
      const size_t from = g.size() > longest + 8 ? g.size() - longest - 8 : 0;
      const auto tail = tok.decode(std::vector<int64_t>(g.begin() + from, g.end()));
      for (const auto& s : c.stop)
        if (!s.empty() && tail.find(s) != std::string::npos) return true;
      return false;
    };
  }
  auto generated = generate(model, ids, cfg);
  std::vector<std::string> out;
  for (const auto& g : generated) {
    auto text = tok.decode(g);
    size_t cut = text.size();
    for (const auto& s : c.stop) {
      if (s.empty()) continue;
      const auto at = text.find(s);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    out.push_back(text.substr(0, cut));
  }
  return out;
}

}  // namespace xft
