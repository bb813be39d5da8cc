// defines: DecoderLayerImpl, LlamaModelImpl, CausalLMImpl / CausalLM, CausalLMOutput,
//          make_feed_forward
//
// One decoder for every supported architecture (config.h's Architecture): Llama, and StableLM
// as a set of ModelConfig choices (LayerNorm with bias, partial rotary, qkv bias, qk LayerNorm,
// parallel residual). Module names are the Hugging Face parameter names of both
// (model.layers.N.self_attn.q_proj.weight, ...), so loading a checkpoint is a lookup. The FFN at
// model.layers.N.mlp is any FeedForwardImpl: dense MLP, MoE layer, or merge.
#pragma once
#include <memory>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "xft/model/attention.h"
#include "xft/model/config.h"
#include "xft/model/feed_forward.h"
#include "xft/model/norm.h"
#include "xft/model/rotary.h"

namespace xft {

// The FFN the config asks for: the dense MLP, or the MoE layer when config.moe is set.
std::shared_ptr<FeedForwardImpl> make_feed_forward(const ModelConfig& config);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& config);
  // Returns the layer output; adds the FFN's auxiliary loss (if any) to *aux. token_mask [B, T]
  // (true = a real token, padding false) or undefined (all real): what the MoE's aux loss counts.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, const torch::Tensor& token_mask, torch::Tensor* aux,
                        KvCacheLayer* cache = nullptr);
  // The same with activation checkpointing (model/activation_checkpoint.h): only x is kept for
  // the backward, which runs the layer again.
  torch::Tensor forward_checkpointed(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask, const torch::Tensor& token_mask, torch::Tensor* aux);
  // Swaps the FFN (e.g. MoE -> merge); the new one is registered as `mlp`.
  void set_mlp(std::shared_ptr<FeedForwardImpl> mlp);

  Norm input_layernorm{nullptr};
  Norm post_attention_layernorm{nullptr};  // null with use_parallel_residual (StableLM has none then)
  Attention self_attn{nullptr};
  std::shared_ptr<FeedForwardImpl> mlp;
  bool parallel_residual = false;  // x + attn(n(x)) + mlp(n(x)) instead of two sequential residuals
};
TORCH_MODULE(DecoderLayer);

class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const ModelConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Norm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

struct CausalLMOutput {
  torch::Tensor logits;    // [B, T, V]
  torch::Tensor aux_loss;  // scalar sum of the MoE layers' load-balancing losses, or undefined
};

class CausalLMImpl : public torch::nn::Module {
 public:
  explicit CausalLMImpl(const ModelConfig& config);

  // input_ids [B, T] int64; attention_mask [B, T] or undefined (every token real, plain causal
  // attention: the fast path of scaled_dot_product_attention); position_ids [B, T] or undefined
  // (then 0..T-1, as transformers does without a cache). attention_mask holds 0 for padding and
  // a document number > 0 for real tokens: 1 everywhere is one document per row; packed rows
  // (data/packing.h) number their documents 1, 2, ..., and a token attends only to earlier tokens
  // of its own document (pass the packed position_ids too, which restart at each document).
  CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         const torch::Tensor& position_ids = {});
  // hidden [.., D] -> logits [.., V] (lm_head, or the embedding matrix when tied).
  torch::Tensor logits(const torch::Tensor& hidden);
  // The final-norm hidden states [B, T, D]. With a cache (one entry per layer, filled as it
  // goes), attention_mask covers the cached and the new tokens: [B, cached + T].
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                              const torch::Tensor& position_ids, torch::Tensor* aux,
                              std::vector<KvCacheLayer>* cache = nullptr);

  DecoderLayer layer(int64_t i) const { return DecoderLayer(model->layers->ptr<DecoderLayerImpl>(i)); }
  const ModelConfig& config() const { return config_; }
  // Activation checkpointing of every decoder layer while training with autograd on (never
  // with a KV cache): the backward recomputes each layer's forward.
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  bool activation_checkpointing() const { return checkpointing_; }
  ModelConfig& mutable_config() { return config_; }
  // Hugging Face's init: normal(0, std) for linear and embedding weights, zero biases, ones for
  // norm weights.
  void init_weights(double std, uint64_t seed);

  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  ModelConfig config_;
  RotaryEmbedding rotary_;
  bool checkpointing_ = false;
};
TORCH_MODULE(CausalLM);

}  // namespace xft
