#include "xft/model/llama.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/init.h>

#include "xft/core/error.h"
#include "xft/model/activation_checkpoint.h"

namespace xft {

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) : parallel_residual(c.use_parallel_residual) {
  input_layernorm = register_module("input_layernorm", make_norm(c));
  self_attn = register_module("self_attn", Attention(c));
  if (!parallel_residual) post_attention_layernorm = register_module("post_attention_layernorm", make_norm(c));
  mlp = register_module("mlp", make_feed_forward(c));
}

void DecoderLayerImpl::set_mlp(std::shared_ptr<FeedForwardImpl> m) { mlp = replace_module("mlp", std::move(m)); }

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& mask, const torch::Tensor& token_mask, torch::Tensor* aux,
                                        KvCacheLayer* cache) {
  const auto normed = input_layernorm->forward(x);
  auto h = x + self_attn->forward(normed, cos, sin, mask, cache);
  // Parallel residual (StableLM): the FFN reads the same normed input as the attention, so the
  // block is x + attn(n(x)) + ffn(n(x)).
  auto ffn = mlp->forward(parallel_residual ? normed : post_attention_layernorm->forward(h), token_mask);
  if (ffn.aux_loss.defined() && aux) *aux = aux->defined() ? *aux + ffn.aux_loss : ffn.aux_loss;
  return h + ffn.y;
}

torch::Tensor DecoderLayerImpl::forward_checkpointed(const torch::Tensor& x, const torch::Tensor& cos,
                                                     const torch::Tensor& sin, const torch::Tensor& mask,
                                                     const torch::Tensor& token_mask, torch::Tensor* aux) {
  std::vector<torch::Tensor> params;
  for (const auto& p : parameters())
    if (p.requires_grad()) params.push_back(p);
  // The closure holds the layer, so a backward after the caller let go of it still finds it.
  auto self = std::dynamic_pointer_cast<DecoderLayerImpl>(shared_from_this());
  auto out = checkpointed(
      [self, cos, sin, mask, token_mask](const torch::Tensor& in) {
        torch::Tensor a;
        auto y = self->forward(in, cos, sin, mask, token_mask, &a);
        return CheckpointOutput{y, a};
      },
      x, params);
  if (out.aux.defined() && aux) *aux = aux->defined() ? *aux + out.aux : out.aux;
  return out.y;
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", make_norm(c));
}

CausalLMImpl::CausalLMImpl(const ModelConfig& c) : config_(c), rotary_(c) {
  model = register_module("model", LlamaModel(c));
  // Tied: the embedding matrix is the head too, named once (model.embed_tokens.weight).
  if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head",
                              torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  }
}

torch::Tensor CausalLMImpl::hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                          const torch::Tensor& position_ids, torch::Tensor* aux,
                                          std::vector<KvCacheLayer>* cache) {
  XFT_CHECK(input_ids.dim() == 2, "input_ids: expected [batch, tokens], got ", input_ids.sizes());
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  auto h = model->embed_tokens->forward(input_ids);
  torch::Tensor pos = position_ids;
  if (!pos.defined()) pos = torch::arange(T, input_ids.options().dtype(torch::kInt64)).unsqueeze(0).expand({B, T});
  auto [cos, sin] = rotary_.cos_sin(pos, h.scalar_type());
  if (cache && cache->empty()) cache->resize(model->layers->size());
  const int64_t cached = cache && (*cache)[0].k.defined() ? (*cache)[0].k.size(2) : 0;
  torch::Tensor mask, token_mask;
  if (attention_mask.defined()) {
    XFT_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == cached + T,
              "attention_mask: expected shape [", B, ", ", cached + T, "], got ", attention_mask.sizes());
    mask = attention_mask_4d(attention_mask, T);
    token_mask = attention_mask.narrow(1, cached, T).gt(0);
  } else if (cached > 0 && T > 1) {
    // sdpa's is_causal aligns queries to the first keys, not the last: spell the mask out.
    mask = attention_mask_4d(torch::ones({B, cached + T}, input_ids.options()), T);
  }
  const bool recompute = checkpointing_ && is_training() && torch::GradMode::is_enabled() && !cache;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers->ptr<DecoderLayerImpl>(i);
    h = recompute ? layer->forward_checkpointed(h, cos, sin, mask, token_mask, aux)
                  : layer->forward(h, cos, sin, mask, token_mask, aux, cache ? &(*cache)[i] : nullptr);
  }
  return model->norm->forward(h);
}

CausalLMOutput CausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                     const torch::Tensor& position_ids) {
  CausalLMOutput out;
  auto h = hidden_states(input_ids, attention_mask, position_ids, &out.aux_loss);
  out.logits = logits(h);
  return out;
}

torch::Tensor CausalLMImpl::logits(const torch::Tensor& hidden) {
  return lm_head ? lm_head->forward(hidden) : torch::linear(hidden, model->embed_tokens->weight);
}

void CausalLMImpl::init_weights(double std, uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    // Biases first: a LayerNorm's bias is zero like any other (its weight is one).
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      t.zero_();
    } else if (name.find("norm") != std::string::npos) {
      t.fill_(1.0);
    } else {
      auto v = at::normal(0.0, std, t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32));
      t.copy_(v);
    }
  }
}

}  // namespace xft
