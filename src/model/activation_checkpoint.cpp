#include "xft/model/activation_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/autograd.h>

#include <mutex>

namespace xft {

namespace {

thread_local int recompute_depth = 0;

struct GeneratorState {
  at::Generator generator;
  torch::Tensor state;
};

// The generators a forward on x's device may draw from (randn_like on the device of the logits).
std::vector<GeneratorState> capture_generators(const torch::Tensor& x) {
  std::vector<at::Generator> gens{at::detail::getDefaultCPUGenerator()};
  if (!x.is_cpu()) gens.push_back(at::globalContext().defaultGenerator(x.device()));
  std::vector<GeneratorState> out;
  for (auto& g : gens) {
    std::lock_guard<std::mutex> lock(g.mutex());
    out.push_back({g, g.get_state()});
  }
  return out;
}

void restore_generators(const std::vector<GeneratorState>& states) {
  for (const auto& s : states) {
    auto g = s.generator;
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(s.state);
  }
}

// Everything the backward needs to run the forward again.
struct Recompute : torch::CustomClassHolder {
  CheckpointedFn fn;
  std::vector<torch::Tensor> params;
  std::vector<GeneratorState> generators;
  at::DeviceType device_type = at::kCPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kBFloat16;
  bool has_aux = false;
};

// The second forward: the first one's generator and autocast states, put back afterwards.
class RecomputeScope {
 public:
  explicit RecomputeScope(const Recompute& r)
      : r_(r),
        now_(capture_generators_like(r)),
        autocast_(at::autocast::is_autocast_enabled(r.device_type)),
        autocast_dtype_(at::autocast::get_autocast_dtype(r.device_type)) {
    restore_generators(r.generators);
    at::autocast::set_autocast_enabled(r.device_type, r.autocast);
    at::autocast::set_autocast_dtype(r.device_type, r.autocast_dtype);
    if (r.autocast) at::autocast::increment_nesting();
    ++recompute_depth;
  }
  ~RecomputeScope() {
    --recompute_depth;
    if (r_.autocast && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(r_.device_type, autocast_);
    at::autocast::set_autocast_dtype(r_.device_type, autocast_dtype_);
    restore_generators(now_);
  }
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  static std::vector<GeneratorState> capture_generators_like(const Recompute& r) {
    std::vector<GeneratorState> out;
    for (const auto& s : r.generators) {
      auto g = s.generator;
      std::lock_guard<std::mutex> lock(g.mutex());
      out.push_back({g, g.get_state()});
    }
    return out;
  }
  const Recompute& r_;
  std::vector<GeneratorState> now_;
  bool autocast_;
  at::ScalarType autocast_dtype_;
};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // Inputs: x, then the parameters (each an autograd input), then the recompute closure.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList params,
                               const c10::intrusive_ptr<Recompute>& r) {
    r->generators = capture_generators(x);
    r->device_type = x.device().type();
    r->autocast = at::autocast::is_autocast_enabled(r->device_type);
    r->autocast_dtype = at::autocast::get_autocast_dtype(r->device_type);
    auto out = r->fn(x);  // autograd is off inside a Function's forward: nothing is kept
    r->has_aux = out.aux.defined();
    ctx->save_for_backward({x});
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(r);
    (void)params;
    auto aux = r->has_aux ? out.aux : torch::zeros({}, out.y.options().dtype(torch::kFloat32));
    return {out.y, aux};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto r = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    const auto x = ctx->get_saved_variables()[0];
    const size_t P = r->params.size();
    const bool x_grad = ctx->needs_input_grad(0);
    auto xd = x.detach().requires_grad_(x_grad);
    CheckpointOutput out;
    {
      at::AutoGradMode grad_on(true);
      RecomputeScope scope(*r);
      out = r->fn(xd);
    }
    variable_list outputs, output_grads, wrt;
    if (grads[0].defined()) {
      outputs.push_back(out.y);
      output_grads.push_back(grads[0]);
    }
    if (r->has_aux && grads[1].defined() && out.aux.requires_grad()) {
      outputs.push_back(out.aux);
      output_grads.push_back(grads[1].to(out.aux.scalar_type()));
    }
    if (x_grad) wrt.push_back(xd);
    std::vector<size_t> slot;  // the position in the result of each tensor in wrt
    if (x_grad) slot.push_back(0);
    for (size_t i = 0; i < P; ++i) {
      if (!ctx->needs_input_grad(i + 1)) continue;
      wrt.push_back(r->params[i]);
      slot.push_back(i + 1);
    }
    variable_list result(P + 2);  // x, the parameters, the closure
    if (outputs.empty() || wrt.empty()) return result;
    auto g = torch::autograd::grad(outputs, wrt, output_grads, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    for (size_t i = 0; i < g.size(); ++i) result[slot[i]] = g[i];
    return result;
  }
};

}  // namespace

bool recomputing() { return recompute_depth > 0; }

CheckpointOutput checkpointed(const CheckpointedFn& fn, const torch::Tensor& x,
                              const std::vector<torch::Tensor>& params) {
  auto r = c10::make_intrusive<Recompute>();
  r->fn = fn;
  r->params = params;
  auto out = CheckpointFunction::apply(x, at::TensorList(params), r);
  return {out[0], r->has_aux ? out[1] : torch::Tensor()};
}

}  // namespace xft
