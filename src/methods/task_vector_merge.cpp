#include "xft/methods/task_vector_merge.h"

#include <map>

#include "xft/core/error.h"
#include "xft/model/hf_names.h"
#include "xft/model/model_io.h"

namespace xft {

namespace {

// TIES' trim: the `density` fraction of largest magnitudes of one task vector kept, the rest 0.
// k = floor(density * numel) as mergekit counts it; ties between equal magnitudes at the cut are
// all kept (a threshold, not an arbitrary order among equals).
torch::Tensor keep_largest(const torch::Tensor& tau, double density) {
  if (density >= 1.0) return tau;
  const int64_t n = tau.numel();
  const auto k = static_cast<int64_t>(density * static_cast<double>(n));
  XFT_CHECK(k > 0, "merge: density ", density, " keeps no element of a ", n, "-element task vector");
  const auto magnitude = tau.abs().reshape(-1);
  const auto threshold = std::get<0>(magnitude.kthvalue(n - k + 1));  // the k-th largest
  return tau * (tau.abs() >= threshold).to(tau.scalar_type());
}

// DARE's drop and rescale: each element kept with probability `density`, kept ones divided by it,
// so that the task vector's expectation is unchanged.
torch::Tensor drop_and_rescale(const torch::Tensor& tau, double density, torch::Generator& generator) {
  if (density >= 1.0) return tau;
  const auto keep = torch::bernoulli(torch::full_like(tau, density), generator);
  return tau * keep / density;
}

}  // namespace

torch::Tensor merge_task_vectors(const torch::Tensor& stack, const MergeConfig& config, torch::Generator& generator) {
  XFT_CHECK(stack.dim() >= 2 && stack.size(0) >= 2, "merge: an expert stack needs the shared expert and at least ",
            "one routed expert, got shape ", stack.sizes());
  const auto w = stack.to(torch::kFloat32);
  const auto base = w[0];
  const auto tau = w.narrow(0, 1, w.size(0) - 1) - base;  // [N-1, ...]: tau_i = W_i - W_0
  torch::Tensor combined;
  switch (config.method) {
    case MergeMethod::kTaskArithmetic: combined = tau.sum(0); break;
    case MergeMethod::kTies: {
      std::vector<torch::Tensor> trimmed;
      for (int64_t i = 0; i < tau.size(0); ++i) trimmed.push_back(keep_largest(tau[i], config.density));
      const auto t = torch::stack(trimmed);
      // Elect: the sign of the trimmed sum (mergekit's "sum" consensus; 0 counts as +).
      const auto elected = torch::where(t.sum(0) >= 0, 1.0, -1.0).to(t.scalar_type());
      const auto agree = (t.sign() == elected).to(t.scalar_type());  // a trimmed-away 0 never agrees
      // Disjoint mean: the agreeing values averaged over how many agree (1 where none do).
      const auto count = agree.sum(0);
      combined = (t * agree).sum(0) / torch::where(count == 0, torch::ones_like(count), count);
      break;
    }
    case MergeMethod::kDare: {
      std::vector<torch::Tensor> kept;
      for (int64_t i = 0; i < tau.size(0); ++i) kept.push_back(drop_and_rescale(tau[i], config.density, generator));
      combined = torch::stack(kept).sum(0);
      break;
    }
    case MergeMethod::kLearned:
    case MergeMethod::kInit:
      fail("merge: method '", to_string(config.method), "' mixes whole experts (methods/merge.h), not task vectors");
  }
  return base + config.scaling * combined;
}

void export_task_vector_merge(const std::string& moe_dir, const std::string& out_dir, const MergeConfig& config,
                              torch::Dtype save_dtype) {
  torch::NoGradGuard ng;
  auto model = load_model(moe_dir);
  const auto& moe = model->config().moe;
  XFT_CHECK(moe.has_value(), moe_dir, ": merge.method '", to_string(config.method),
            "' needs an MoE, and this config has no 'moe' section");
  XFT_CHECK(moe->shared_expert, moe_dir, ": merge.method '", to_string(config.method),
            "' takes the routed experts' differences from the shared expert, and this MoE has none "
            "(moe.shared_expert is false)");
  // One generator for the whole model, drawn in a fixed order (layer, then gate, up, down): the
  // same seed gives the same checkpoint.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  // One pass over the MoE's tensors: everything but the FFN passes through, the expert stacks
  // are kept by name for the merge.
  NamedTensors dense;
  std::map<std::string, torch::Tensor> stacks;
  for (const auto& [name, t] : model_tensors(*model)) {
    if (!hf::is_ffn(name))
      dense.emplace_back(name, t);
    else if (hf::is_expert_stack(name))
      stacks.emplace(name, t);
  }
  for (int64_t l = 0; l < model->config().num_hidden_layers; ++l) {
    for (const auto& proj : hf::kProjections) {
      const auto it = stacks.find(hf::expert_stack(l, proj));
      XFT_CHECK(it != stacks.end(), moe_dir, ": the MoE has no tensor '", hf::expert_stack(l, proj), "'");
      dense.emplace_back(hf::dense_ffn(l, proj), merge_task_vectors(it->second, config, generator));
    }
  }
  save_model_tensors(model->config().dense(), dense, out_dir, save_dtype);
}

}  // namespace xft
