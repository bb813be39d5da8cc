#include "xft/model/config_check.h"

#include <algorithm>

#include "xft/core/error.h"
#include "xft/model/hf_names.h"

namespace xft {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// a * b, or an error: a product of config sizes that overflows int64 is never a real model.
int64_t checked_mul(int64_t a, int64_t b, const char* fields, const std::string& config_file) {
  int64_t r = 0;
  XFT_CHECK(!__builtin_mul_overflow(a, b, &r), config_file, ": ", fields, " (", a, " x ", b,
            ") overflows a 64-bit size");
  return r;
}

void add_attention(const ModelConfig& c, const std::string& base, std::vector<ImpliedTensor>& out,
                   const std::string& file) {
  const int64_t D = c.hidden_size;
  const int64_t q = checked_mul(c.num_attention_heads, c.head_dim, "num_attention_heads x head_dim", file);
  const int64_t kv = checked_mul(c.num_key_value_heads, c.head_dim, "num_key_value_heads x head_dim", file);
  const std::string qf = "num_attention_heads x head_dim, hidden_size";
  const std::string kvf = "num_key_value_heads x head_dim, hidden_size";
  out.push_back({base + "q_proj.weight", {q, D}, qf});
  out.push_back({base + "k_proj.weight", {kv, D}, kvf});
  out.push_back({base + "v_proj.weight", {kv, D}, kvf});
  out.push_back({base + "o_proj.weight", {D, q}, "hidden_size, num_attention_heads x head_dim"});
  if (c.qkv_bias()) {
    out.push_back({base + "q_proj.bias", {q}, "num_attention_heads x head_dim (attention_bias / use_qkv_bias)"});
    out.push_back({base + "k_proj.bias", {kv}, "num_key_value_heads x head_dim (attention_bias / use_qkv_bias)"});
    out.push_back({base + "v_proj.bias", {kv}, "num_key_value_heads x head_dim (attention_bias / use_qkv_bias)"});
  }
  if (c.o_proj_bias()) out.push_back({base + "o_proj.bias", {D}, "hidden_size (attention_bias)"});
  // An absurd head count is caught by q_proj's shape; listing its norms one by one would not end.
  if (!c.qk_layernorm || c.num_attention_heads > (int64_t(1) << 16)) return;
  // StableLM's per-head q/k LayerNorms (weights only), one per query / key-value head.
  for (int64_t h = 0; h < c.num_attention_heads; ++h)
    out.push_back(
        {base + "q_layernorm.norms." + std::to_string(h) + ".weight", {c.head_dim}, "head_dim (qk_layernorm)"});
  for (int64_t h = 0; h < c.num_key_value_heads; ++h)
    out.push_back(
        {base + "k_layernorm.norms." + std::to_string(h) + ".weight", {c.head_dim}, "head_dim (qk_layernorm)"});
}

// A decoder norm: RMSNorm's weight, or LayerNorm's weight and bias (StableLM).
void add_norm(const ModelConfig& c, const std::string& name, std::vector<ImpliedTensor>& out) {
  out.push_back({name + ".weight", {c.hidden_size}, "hidden_size"});
  if (c.norm_kind() == NormKind::kLayerNorm)
    out.push_back({name + ".bias", {c.hidden_size}, "hidden_size (LayerNorm)"});
}

void add_dense_ffn(const ModelConfig& c, int64_t layer, std::vector<ImpliedTensor>& out) {
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  out.push_back({hf::dense_ffn(layer, "gate_proj"), {F, D}, "intermediate_size, hidden_size"});
  out.push_back({hf::dense_ffn(layer, "up_proj"), {F, D}, "intermediate_size, hidden_size"});
  out.push_back({hf::dense_ffn(layer, "down_proj"), {D, F}, "hidden_size, intermediate_size"});
  if (!c.mlp_bias) return;
  const std::string base = hf::mlp_prefix(layer);
  out.push_back({base + "gate_proj.bias", {F}, "intermediate_size (mlp_bias)"});
  out.push_back({base + "up_proj.bias", {F}, "intermediate_size (mlp_bias)"});
  out.push_back({base + "down_proj.bias", {D}, "hidden_size (mlp_bias)"});
}

// The MoE layer of moe/moe_layer.cpp: stacked experts [N, F, D] / [N, D, F] and the router.
void add_moe_ffn(const ModelConfig& c, int64_t layer, std::vector<ImpliedTensor>& out) {
  const MoeConfig& m = *c.moe;
  const int64_t D = c.hidden_size, F = c.intermediate_size, N = m.num_experts, R = m.num_routed();
  out.push_back({hf::expert_stack(layer, "gate_proj"), {N, F, D}, "moe.num_experts, intermediate_size, hidden_size"});
  out.push_back({hf::expert_stack(layer, "up_proj"), {N, F, D}, "moe.num_experts, intermediate_size, hidden_size"});
  out.push_back({hf::expert_stack(layer, "down_proj"), {N, D, F}, "moe.num_experts, hidden_size, intermediate_size"});
  const std::string routed = m.shared_expert ? "moe.num_experts - 1" : "moe.num_experts";
  if (m.router == RouterKind::kMlp) {
    out.push_back({hf::router(layer, "w1"), {R, D}, routed + ", hidden_size (moe.router mlp)"});
    out.push_back({hf::router(layer, "w2"), {R, R}, routed + ", " + routed + " (moe.router mlp)"});
  } else {
    out.push_back({hf::router(layer, "weight"), {R, D}, routed + ", hidden_size"});
  }
  if (m.router_noise)
    out.push_back({hf::router(layer, "noise_weight"), {R, D}, routed + ", hidden_size (moe.router_noise)"});
}

// 1 + the largest L among the checkpoint's model.layers.L.* tensors (0 when it has none).
int64_t layers_held(const TensorDirectory& dir) {
  static const std::string prefix = "model.layers.";
  int64_t n = 0;
  for (const auto& name : dir.names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const size_t dot = name.find('.', prefix.size());
    const std::string digits = name.substr(prefix.size(), dot - prefix.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    n = std::max<int64_t>(n, std::stoll(digits) + 1);
  }
  return n;
}

}  // namespace

std::vector<ImpliedTensor> implied_tensors(const ModelConfig& c, int64_t layer, const std::string& file) {
  std::vector<ImpliedTensor> out;
  const int64_t V = c.vocab_size, D = c.hidden_size;
  if (layer < 0) {
    out.push_back({"model.embed_tokens.weight", {V, D}, "vocab_size, hidden_size"});
    add_norm(c, "model.norm", out);
    if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, D}, "vocab_size, hidden_size (untied head)"});
    return out;
  }
  const std::string base = "model.layers." + std::to_string(layer) + ".";
  add_norm(c, base + "input_layernorm", out);
  // A parallel residual (StableLM's option) feeds the FFN from the input norm: no second norm.
  if (!c.use_parallel_residual) add_norm(c, base + "post_attention_layernorm", out);
  add_attention(c, base + "self_attn.", out, file);
  if (c.moe)
    add_moe_ffn(c, layer, out);
  else
    add_dense_ffn(c, layer, out);
  return out;
}

void check_config_against_tensors(const ModelConfig& c, const TensorDirectory& dir, const std::string& file) {
  // Layers first: a config with 10^8 layers is refused without listing 10^9 tensor names.
  const int64_t held = layers_held(dir);
  XFT_CHECK(c.num_hidden_layers <= held, file, ": num_hidden_layers is ", c.num_hidden_layers, " but ", dir.dir(),
            " holds the tensors of ", held, " decoder layer", held == 1 ? "" : "s",
            held > 0 ? " (model.layers.0 to model.layers." + std::to_string(held - 1) + ")" : std::string());
  std::vector<std::string> missing;
  for (int64_t layer = -1; layer < c.num_hidden_layers; ++layer) {
    for (const auto& t : implied_tensors(c, layer, file)) {
      if (!dir.contains(t.name)) {
        missing.push_back(t.name);
        continue;
      }
      const auto& got = dir.entry(t.name).shape;
      XFT_CHECK(got == t.shape, file, ": ", t.fields, " imply tensor '", t.name, "' of shape ", shape_str(t.shape),
                " but ", dir.file_of(t.name), " holds it with shape ", shape_str(got));
    }
  }
  if (missing.empty()) return;
  std::string list;
  for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
  if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
  fail(dir.dir(), ": checkpoint is missing tensors that ", file, " implies: ", list);
}

}  // namespace xft
