// defines: Optimizer, AdamWOptions / make_adamw, AdafactorOptions / make_adafactor,
//          clip_grad_norm, hf_applies_weight_decay
//
// The two optimizers the HF Trainer offers for XFT's instruction tuning (`--optim adamw_torch`
// and `--optim adafactor`), reproduced op for op so that a run here can be compared with a
// PyTorch run step by step. Whatever the parameter dtype, the optimizer state is fp32 and the
// update is computed in fp32; a bf16/fp16 parameter receives the rounded result.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "xft/core/named_tensors.h"

namespace xft {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter whose grad is defined (under NoGradGuard). As in PyTorch, a
  // parameter without a grad is untouched (no weight decay either) and its own step count,
  // which drives its bias correction / decay schedule, does not advance.
  virtual void step();
  // set_to_none semantics: grads become undefined, so a parameter that gets no grad before the
  // next step() is skipped by it.
  void zero_grad();

  void set_lr(double lr);
  double lr() const { return lr_; }
  // Number of step() calls (restored by load_state).
  int64_t step_count() const { return step_count_; }
  const NamedTensors& params() const { return params_; }

  // Everything needed to resume exactly:
  //   "<param>/<slot>"  fp32 state tensors (exp_avg, exp_avg_sq, exp_avg_sq_row, ...)
  //   "<param>/step"    0-dim int64: that parameter's own step count
  //   "__step__"        0-dim int64: step_count()
  // The slot tensors alias the live state: write them out (or clone them) before the next step().
  virtual NamedTensors state() const;
  // Checks the whole of `state` first (every expected entry present with its shape, nothing
  // else), throwing xft::Error naming the offending entry and changing nothing; then copies it
  // into the existing state, keeping its device and dtype.
  virtual void load_state(const NamedTensors& state);
  virtual std::string name() const = 0;

 protected:
  struct ParamState {
    std::string name;
    torch::Tensor param;
    NamedTensors slots;  // (slot name, fp32 tensor on the parameter's device)
    int64_t step = 0;
    bool decay = true;  // weight decay applies to this parameter
  };
  // Checks the parameters (unique names, floating dtype, requires_grad) and that every name in
  // no_decay is one of them.
  Optimizer(NamedTensors params, double lr, const std::vector<std::string>& no_decay);
  // Called by step() for each parameter with a grad, after its step count was incremented.
  virtual void update(ParamState& s, const torch::Tensor& grad) = 0;

  NamedTensors params_;
  std::vector<ParamState> states_;
  double lr_;
  int64_t step_count_ = 0;
};

struct AdamWOptions {
  double lr = 5e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  std::vector<std::string> no_decay;  // parameter names exempt from weight decay
  // torch's fused kernel (torch.optim.AdamW(fused=True)) for fp32 parameters: the same update
  // up to rounding, in one pass; false: the op sequence below, bitwise torch's default.
  bool fused = false;
};
// torch.optim.AdamW (amsgrad=False, foreach/fused off), per parameter with t its step count:
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2 v + (1-b2) g^2
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Slots: exp_avg, exp_avg_sq.
std::unique_ptr<Optimizer> make_adamw(NamedTensors params, const AdamWOptions& options);

struct AdafactorOptions {
  double lr = 5e-5, eps1 = 1e-30, eps2 = 1e-3, clip_threshold = 1.0, decay_rate = -0.8, weight_decay = 0.0;
  bool scale_parameter = false;
  std::vector<std::string> no_decay;  // parameter names exempt from weight decay
};
// transformers.optimization.Adafactor with relative_step=False, warmup_init=False, beta1=None
// (the HF Trainer's `--optim adafactor`), per parameter with t its step count:
//   lr_t = lr, times max(eps2, RMS(p)) if scale_parameter;  beta2t = 1 - t^decay_rate;  u = g^2 + eps1
//   p.dim() >= 2, factored over the last two dims (leading dims are independent matrices):
//     row = beta2t row + (1-beta2t) u.mean(-1);  col = beta2t col + (1-beta2t) u.mean(-2)
//     upd = rsqrt(row / row.mean(-1)).unsqueeze(-1) * rsqrt(col).unsqueeze(-2) * g
//   otherwise: sq = beta2t sq + (1-beta2t) u;  upd = rsqrt(sq) * g
//   upd *= lr_t / max(1, RMS(upd) / clip_threshold)
//   p -= weight_decay * lr_t * p;  p -= upd
// RMS(x) = ||x||_2 / sqrt(numel), over the whole tensor for 1-D and 2-D parameters and per
// matrix for 3+ dims (expert stacks: the reference's experts are separate nn.Linear, and the
// update must not depend on how a stack is split over ranks). Slots: exp_avg_sq_row +
// exp_avg_sq_col, or exp_avg_sq.
std::unique_ptr<Optimizer> make_adafactor(NamedTensors params, const AdafactorOptions& options);

// torch.nn.utils.clip_grad_norm_(norm_type=2): returns the L2 norm of all defined grads taken
// together (computed in fp32 whatever the grad dtype), and when max_norm > 0 scales every grad
// in place by min(1, max_norm / (norm + 1e-6)). A non-finite norm is returned, not thrown: the
// caller decides whether to skip the step.
double clip_grad_norm(const NamedTensors& params, double max_norm);
// The clipping half of clip_grad_norm, for a norm computed elsewhere (a model split over ranks).
void clip_grads_to_norm(const NamedTensors& params, const torch::Tensor& total_norm, double max_norm);

// The HF Trainer's rule (Trainer.get_decay_parameter_names) for which parameters get weight
// decay: none whose lower-cased name contains "bias", "layernorm" or "rmsnorm", has a component
// "norm", or a component ending in "_norm". Use it to fill the options' no_decay.
bool hf_applies_weight_decay(const std::string& param_name);

}  // namespace xft
