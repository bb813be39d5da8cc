#include "xft/methods/merge.h"

#include <cmath>

#include "core/config_reader.h"
#include "xft/core/error.h"
#include "xft/distributed/sum_across_ranks.h"
#include "xft/methods/fold_experts.h"
#include "xft/model/hf_names.h"
#include "xft/model/mlp.h"
#include "xft/model/model_io.h"
#include "xft/moe/moe_layer.h"

namespace xft {

namespace {
const EnumNames<MergeMethod> kMergeMethodNames = {{"learned", MergeMethod::kLearned},
                                                  {"init", MergeMethod::kInit},
                                                  {"task_arithmetic", MergeMethod::kTaskArithmetic},
                                                  {"ties", MergeMethod::kTies},
                                                  {"dare", MergeMethod::kDare}};
}  // namespace

const char* to_string(MergeMethod method) { return enum_name(kMergeMethodNames, method); }

void MergeConfig::validate(const std::string& source) const {
  // mergekit keeps density in (0, 1]: at 0 nothing of a task vector is left (and DARE's rescale
  // divides by it).
  XFT_CHECK(density > 0.0 && density <= 1.0, source, ": merge.density must be in (0, 1], got ", density);
  XFT_CHECK(std::isfinite(scaling), source, ": merge.scaling must be a finite number, got ", scaling);
  // Table 12 sweeps lambda over 0, 0.25, 0.5, 0.75, 1: at 1 the merged model is the shared
  // expert (the routed coefficients (1 - lambda) * softmax are 0), at 0 it is ignored. The learned
  // soup only starts at lambda, through log(lambda): there it must lie strictly inside (0, 1).
  if (fixed_shared_rate) {
    XFT_CHECK(shared_rate >= 0.0 && shared_rate <= 1.0, source, ": merge.shared_rate must be in [0, 1], got ",
              shared_rate);
  } else {
    XFT_CHECK(shared_rate > 0.0 && shared_rate < 1.0, source,
              ": merge.shared_rate (the learned soup's starting point) must be in (0, 1), got ", shared_rate);
  }
}

namespace {
const ConfigReader<MergeConfig>& merge_reader() {
  static const ConfigReader<MergeConfig> r = ConfigReader<MergeConfig>("merge")
                                                 .field("method", &MergeConfig::method, kMergeMethodNames)
                                                 .field("shared_rate", &MergeConfig::shared_rate)
                                                 .field("fixed_shared_rate", &MergeConfig::fixed_shared_rate)
                                                 .field("density", &MergeConfig::density)
                                                 .field("scaling", &MergeConfig::scaling)
                                                 .field("seed", &MergeConfig::seed);
  return r;
}
}  // namespace

MergeConfig MergeConfig::from_json(const nlohmann::json& j, const std::string& source) {
  MergeConfig m = merge_reader().read(j, source);
  m.validate(source);
  return m;
}

nlohmann::json MergeConfig::to_json() const { return merge_reader().write(*this); }

MergedFeedForwardImpl::MergedFeedForwardImpl(const torch::Tensor& gate, const torch::Tensor& up,
                                             const torch::Tensor& down, const MergeConfig& c,
                                             std::shared_ptr<const MergeSharding> sharding)
    : config_(c), sharding_(std::move(sharding)) {
  const int64_t N = sharding_ ? sharding_->split.items : gate.size(0);
  XFT_CHECK(N >= 2, "merge: a layer needs at least 2 experts, got ", N);
  XFT_CHECK(!sharding_ || (gate.size(0) == sharding_->rows() && up.size(0) == sharding_->rows() &&
                           down.size(0) == sharding_->rows()),
            "merge: rank ", sharding_ ? sharding_->dist->rank() : 0, " holds ", sharding_ ? sharding_->rows() : 0,
            " of the ", N, " experts, got stacks of ", gate.size(0), ", ", up.size(0), ", ", down.size(0));
  // A copy when sharded, so that the whole stacks the rows came from can go.
  auto keep = [&](const torch::Tensor& t) { return sharding_ ? t.detach().clone() : t.detach(); };
  gate_stack = register_buffer("gate_stack", keep(gate));
  up_stack = register_buffer("up_stack", keep(up));
  down_stack = register_buffer("down_stack", keep(down));
  torch::Tensor init;
  if (c.fixed_shared_rate) {
    // Equal logits: alpha_i = (1 - lambda) / (N - 1), the paper's uniform initialisation.
    init = torch::zeros({N - 1});
  } else {
    // The learned soup starts where the fixed-rate merge starts (lambda, (1-lambda)/(N-1)),
    // as the paper's Table 5 comparison does.
    init = torch::full({N}, std::log((1.0 - c.shared_rate) / (N - 1)));
    init[0] = std::log(c.shared_rate);
  }
  logits = register_parameter("logits", init);
}

torch::Tensor MergedFeedForwardImpl::coefficients() const {
  auto l = logits.to(torch::kFloat32);
  if (!config_.fixed_shared_rate) return torch::softmax(l, 0);
  auto alpha = (1.0 - config_.shared_rate) * torch::softmax(l, 0);  // Eq. 5
  return torch::cat({torch::full({1}, config_.shared_rate, alpha.options()), alpha});
}

std::array<torch::Tensor, 3> MergedFeedForwardImpl::merged_weights() const {
  // Eq. 5: sum_i c_i W_i over the expert dim; the same c for gate, up and down.
  const auto c = coefficients();
  if (!sharding_) return {fold_stack(c, gate_stack), fold_stack(c, up_stack), fold_stack(c, down_stack)};
  // This rank's experts' share of the sum, then the other ranks' shares added: one all-reduce
  // of [gate | up | down] (see the header for why the gradients come out right).
  const auto mine = c.narrow(0, sharding_->first(), sharding_->rows());
  const std::array<torch::Tensor, 3> part = {fold_stack(mine, gate_stack), fold_stack(mine, up_stack),
                                             fold_stack(mine, down_stack)};
  auto whole = sum_across_ranks(torch::cat({part[0].reshape(-1), part[1].reshape(-1), part[2].reshape(-1)}),
                                *sharding_->dist, Distributed::Group::kWorld, "all-reduce of the merged FFN weights");
  std::array<torch::Tensor, 3> out;
  int64_t offset = 0;
  for (size_t k = 0; k < 3; ++k) {
    out[k] = whole.narrow(0, offset, part[k].numel()).view(part[k].sizes());
    offset += part[k].numel();
  }
  return out;
}

FfnOutput MergedFeedForwardImpl::forward(const torch::Tensor& x, const torch::Tensor&) {
  auto [g, u, d] = merged_weights();
  const auto t = x.scalar_type();  // bf16 weights run in bf16; under autocast linear casts anyway
  return {torch::linear(swiglu(torch::linear(x, g.to(t)), torch::linear(x, u.to(t))), d.to(t)), {}};
}

std::vector<std::pair<std::string, torch::Tensor>> attach_merge(CausalLMImpl& model, const MergeConfig& config,
                                                                std::optional<torch::Dtype> stack_dtype,
                                                                std::shared_ptr<const Distributed> shard_over) {
  XFT_CHECK(model.config().moe.has_value(), "merge: the model is not an MoE (its config has no 'moe' section)");
  XFT_CHECK(model.config().moe->shared_expert || !config.fixed_shared_rate,
            "merge: a fixed shared_rate needs a shared expert; set merge.fixed_shared_rate=false for vanilla MoEs");
  config.validate("merge");
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  const auto sharding = shard_over && shard_over->world() > 1
                            ? std::make_shared<const MergeSharding>(shard_over, model.config().moe->num_experts)
                            : nullptr;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto layer = model.layer(l);
    auto moe = std::dynamic_pointer_cast<MoeLayerImpl>(layer->mlp);
    XFT_CHECK(moe != nullptr, "merge: layer ", l, " has no MoE layer to merge");
    // Sharded, the rows are cut before the dtype changes: no whole copy in the stack dtype.
    auto store = [&](const torch::Tensor& t) {
      auto rows = sharding ? t.narrow(0, sharding->first(), sharding->rows()) : t;
      return stack_dtype ? rows.to(*stack_dtype) : rows;
    };
    auto merged = std::make_shared<MergedFeedForwardImpl>(store(moe->experts->gate_proj), store(moe->experts->up_proj),
                                                          store(moe->experts->down_proj), config, sharding);
    merged->to(moe->experts->gate_proj.device());
    layer->set_mlp(merged);
    trainable.emplace_back(hf::merge_logits(l), merged->logits);
  }
  return trainable;
}

namespace {
MergedFeedForwardImpl& merged_layer(CausalLMImpl& model, int64_t l) {
  auto m = std::dynamic_pointer_cast<MergedFeedForwardImpl>(model.layer(l)->mlp);
  XFT_CHECK(m != nullptr, "merge: layer ", l, " is not merged (call attach_merge first)");
  return *m;
}
}  // namespace

nlohmann::json merge_coefficients_json(CausalLMImpl& model, const MergeConfig& config) {
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto c = merged_layer(model, l).coefficients().detach().cpu().to(torch::kFloat64);
    layers.push_back(std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel()));
  }
  auto j = config.to_json();
  j["layers"] = layers;
  return j;
}

int64_t merge_stack_bytes(CausalLMImpl& model) {
  int64_t bytes = 0;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    const auto& m = merged_layer(model, l);
    for (const auto* t : {&m.gate_stack, &m.up_stack, &m.down_stack}) bytes += t->numel() * t->element_size();
  }
  return bytes;
}

void export_merged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype) {
  torch::NoGradGuard ng;
  const bool sharded = merged_layer(model, 0).sharding() != nullptr;
  if (!sharded) {
    NamedTensors moe;
    for (const auto& [name, t] : model_tensors(model))
      if (!hf::is_ffn(name)) moe.emplace_back(name, t);
    std::vector<torch::Tensor> coefficients;
    for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
      const auto& m = merged_layer(model, l);
      moe.emplace_back(hf::expert_stack(l, "gate_proj"), m.gate_stack);
      moe.emplace_back(hf::expert_stack(l, "up_proj"), m.up_stack);
      moe.emplace_back(hf::expert_stack(l, "down_proj"), m.down_stack);
      coefficients.push_back(m.coefficients());
    }
    save_model_tensors(model.config().dense(), fold_experts(moe, torch::stack(coefficients)), dir, save_dtype);
    return;
  }
  // No rank holds a whole stack: each layer's W is the all-reduced sum of the ranks' parts, the
  // same W the forward uses; in fold_experts' order (everything else, then the layers' FFNs).
  NamedTensors dense;
  for (const auto& [name, t] : model_tensors(model))
    if (!hf::is_ffn(name)) dense.emplace_back(name, t);
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    const auto w = merged_layer(model, l).merged_weights();
    for (size_t k = 0; k < 3; ++k) dense.emplace_back(hf::dense_ffn(l, hf::kProjections[k]), w[k]);
  }
  if (merged_layer(model, 0).sharding()->dist->is_lead())
    save_model_tensors(model.config().dense(), dense, dir, save_dtype);
}

}  // namespace xft
