#include "xft/train/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

#include <torch/torch.h>

#include "xft/core/error.h"

namespace xft {
namespace {

std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream os;
  os << sizes;
  return os.str();
}

void check_lr(double lr) {
  XFT_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got ", lr);
}

// The update is done in fp32: the parameter itself when it is fp32, else an fp32 copy that
// write_back() rounds into the parameter (what HF's Adafactor does for bf16/fp16).
torch::Tensor fp32_view(const torch::Tensor& param) {
  return param.scalar_type() == torch::kFloat ? param : param.to(torch::kFloat);
}
void write_back(const torch::Tensor& param, const torch::Tensor& p32) {
  if (!p32.is_same(param)) param.copy_(p32);
}

// Product of two numbers as PyTorch forms it when one of them is an fp32 0-dim tensor and the
// other a Python float: both rounded to fp32, the product rounded to fp32.
double fp32_mul(double a, double b) {
  return static_cast<float>(static_cast<double>(static_cast<float>(a)) * static_cast<float>(b));
}

class AdamW final : public Optimizer {
 public:
  AdamW(NamedTensors params, const AdamWOptions& o) : Optimizer(std::move(params), o.lr, o.no_decay), o_(o) {
    XFT_CHECK(o.beta1 >= 0 && o.beta1 < 1, "adamw: beta1 must be in [0, 1), got ", o.beta1);
    XFT_CHECK(o.beta2 >= 0 && o.beta2 < 1, "adamw: beta2 must be in [0, 1), got ", o.beta2);
    XFT_CHECK(o.eps >= 0, "adamw: eps must be >= 0, got ", o.eps);
    XFT_CHECK(o.weight_decay >= 0, "adamw: weight_decay must be >= 0, got ", o.weight_decay);
    // Allocating the (zero) state up front is equivalent to PyTorch's lazy init and lets
    // load_state check a checkpoint against it before the first step.
    for (auto& s : states_) {
      const auto opts = s.param.options().dtype(torch::kFloat);
      s.slots.emplace_back("exp_avg", torch::zeros(s.param.sizes(), opts));
      s.slots.emplace_back("exp_avg_sq", torch::zeros(s.param.sizes(), opts));
    }
  }
  std::string name() const override { return "adamw"; }

 protected:
  // torch/optim/adam.py, _single_tensor_adam with decoupled_weight_decay=True, same op order.
  void update(ParamState& s, const torch::Tensor& grad) override {
    if (o_.fused && s.param.scalar_type() == torch::kFloat && grad.scalar_type() == torch::kFloat) {
      fused_update(s, grad);
      return;
    }
    const auto g = grad.to(torch::kFloat);
    auto p = fp32_view(s.param);
    auto& exp_avg = s.slots[0].second;
    auto& exp_avg_sq = s.slots[1].second;
    const double wd = s.decay ? o_.weight_decay : 0.0;
    if (wd != 0) p.mul_(1 - lr_ * wd);
    exp_avg.lerp_(g, 1 - o_.beta1);
    exp_avg_sq.mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
    const double t = static_cast<double>(s.step);
    const double bias_correction1 = 1 - std::pow(o_.beta1, t);
    const double bias_correction2 = 1 - std::pow(o_.beta2, t);
    const double step_size = lr_ / bias_correction1;
    // Python's bias_correction2**0.5 is libm pow, which need not round like sqrt.
    const auto denom = (exp_avg_sq.sqrt() / std::pow(bias_correction2, 0.5)).add_(o_.eps);
    p.addcdiv_(exp_avg, denom, -step_size);
    write_back(s.param, p);
  }

  // torch.optim.AdamW(fused=True): the kernel takes the step count as a float tensor, as torch
  // keeps it, and applies decay, moments, bias corrections and the update in one pass.
  void fused_update(ParamState& s, const torch::Tensor& grad) {
    auto step = torch::full({}, static_cast<double>(s.step), torch::kFloat);
    at::Tensor param = s.param.detach();
    at::_fused_adamw_({param}, {grad}, {s.slots[0].second}, {s.slots[1].second}, {}, {step}, lr_, o_.beta1, o_.beta2,
                      s.decay ? o_.weight_decay : 0.0, o_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }

 private:
  AdamWOptions o_;
};

class Adafactor final : public Optimizer {
 public:
  Adafactor(NamedTensors params, const AdafactorOptions& o) : Optimizer(std::move(params), o.lr, o.no_decay), o_(o) {
    XFT_CHECK(o.eps1 >= 0 && o.eps2 >= 0, "adafactor: eps1 and eps2 must be >= 0, got ", o.eps1, ", ", o.eps2);
    XFT_CHECK(o.clip_threshold > 0, "adafactor: clip_threshold must be > 0, got ", o.clip_threshold);
    // beta2t = 1 - t^decay_rate is a decay factor in [0, 1) only for decay_rate <= 0.
    XFT_CHECK(o.decay_rate <= 0, "adafactor: decay_rate must be <= 0, got ", o.decay_rate);
    XFT_CHECK(o.weight_decay >= 0, "adafactor: weight_decay must be >= 0, got ", o.weight_decay);
    for (auto& s : states_) {
      const auto opts = s.param.options().dtype(torch::kFloat);
      const auto sizes = s.param.sizes().vec();
      if (sizes.size() >= 2) {
        std::vector<int64_t> row(sizes.begin(), sizes.end() - 1);  // shape[:-1]
        std::vector<int64_t> col(sizes.begin(), sizes.end() - 2);  // shape[:-2] + shape[-1:]
        col.push_back(sizes.back());
        s.slots.emplace_back("exp_avg_sq_row", torch::zeros(row, opts));
        s.slots.emplace_back("exp_avg_sq_col", torch::zeros(col, opts));
      } else {
        s.slots.emplace_back("exp_avg_sq", torch::zeros(sizes, opts));
      }
    }
  }
  std::string name() const override { return "adafactor"; }

 protected:
  // transformers/optimization.py, Adafactor.step with beta1=None, relative_step=False; the
  // scalar arithmetic mirrors where PyTorch rounds to fp32 so results match bit for bit on CPU.
  void update(ParamState& s, const torch::Tensor& grad) override {
    const auto g = grad.to(torch::kFloat);
    auto p = fp32_view(s.param);
    if (p.dim() >= 3) return update_stack(s, g, p);
    const double sqrt_numel = std::pow(static_cast<double>(p.numel()), 0.5);  // HF: numel ** 0.5

    double lr_t = lr_;
    bool lr_t_is_fp32 = false;  // HF's lr is an fp32 tensor when RMS(p) wins the max()
    if (o_.scale_parameter) {
      const double rms = (p.norm(2) / sqrt_numel).item<float>();
      if (rms > o_.eps2) {  // Python's max(eps2, rms) keeps eps2 unless rms is greater
        lr_t = fp32_mul(rms, lr_);
        lr_t_is_fp32 = true;
      } else {
        lr_t = o_.eps2 * lr_;
      }
    }

    const double beta2t = 1.0 - std::pow(static_cast<double>(s.step), o_.decay_rate);
    const auto u = g.pow(2) + o_.eps1;
    torch::Tensor upd;
    if (p.dim() >= 2) {
      upd = factored_update(s, g, u, beta2t);
    } else {
      auto& sq = s.slots[0].second;
      sq.mul_(beta2t).add_(u, 1.0 - beta2t);
      upd = sq.rsqrt().mul_(g);
    }
    upd.div_((upd.norm(2) / sqrt_numel / o_.clip_threshold).clamp_min_(1.0));
    upd.mul_(lr_t);

    const double wd = s.decay ? o_.weight_decay : 0.0;
    if (wd != 0) p.add_(p, lr_t_is_fp32 ? fp32_mul(-wd, lr_t) : -wd * lr_t);
    p.sub_(upd);
    write_back(s.param, p);
  }

  // g / sqrt(E[g^2]) with E[g^2] estimated per matrix (the last two dims) at rank 1:
  // row_i col_j / mean(row) (Shazeer & Stern 2018, eq. 4), after the moving row and column means
  // (slots 0 and 1) take in u = g^2 + eps1.
  static torch::Tensor factored_update(ParamState& s, const torch::Tensor& g, const torch::Tensor& u, double beta2t) {
    auto& row = s.slots[0].second;
    auto& col = s.slots[1].second;
    row.mul_(beta2t).add_(u.mean(-1), 1.0 - beta2t);
    col.mul_(beta2t).add_(u.mean(-2), 1.0 - beta2t);
    const auto r_factor = (row / row.mean(-1, /*keepdim=*/true)).rsqrt_().unsqueeze(-1);
    const auto c_factor = col.unsqueeze(-2).rsqrt();
    return torch::mul(r_factor, c_factor).mul_(g);
  }

  // A parameter of 3+ dims is a stack of independent matrices (the MoE's experts [N, F, D]),
  // which the reference keeps as separate nn.Linear: every quantity HF's Adafactor takes over a
  // whole parameter (the RMS that scales the lr, the update clipping RMS) is taken per matrix.
  // This also makes the update independent of how the stack is split over ranks.
  void update_stack(ParamState& s, const torch::Tensor& g, torch::Tensor& p) {
    std::vector<int64_t> keep(static_cast<size_t>(p.dim()), 1);
    for (int64_t d = 0; d + 2 < p.dim(); ++d) keep[static_cast<size_t>(d)] = p.size(d);
    const std::vector<int64_t> mat_dims{-2, -1};
    const double sqrt_numel = std::pow(static_cast<double>(p.size(-1) * p.size(-2)), 0.5);
    torch::Tensor lr_t = torch::full(keep, lr_, p.options());
    if (o_.scale_parameter) {
      const auto rms = torch::linalg_vector_norm(p, 2, mat_dims, /*keepdim=*/true) / sqrt_numel;
      lr_t = torch::where(rms > o_.eps2, rms * lr_, torch::full_like(rms, o_.eps2 * lr_));
    }
    const double beta2t = 1.0 - std::pow(static_cast<double>(s.step), o_.decay_rate);
    const auto u = g.pow(2) + o_.eps1;
    auto upd = factored_update(s, g, u, beta2t);
    const auto upd_rms = torch::linalg_vector_norm(upd, 2, mat_dims, /*keepdim=*/true) / sqrt_numel;
    upd.div_((upd_rms / o_.clip_threshold).clamp_min_(1.0));
    upd.mul_(lr_t);
    const double wd = s.decay ? o_.weight_decay : 0.0;
    if (wd != 0) p.add_(p * (lr_t * -wd));
    p.sub_(upd);
    write_back(s.param, p);
  }

 private:
  AdafactorOptions o_;
};

}  // namespace

Optimizer::Optimizer(NamedTensors params, double lr, const std::vector<std::string>& no_decay)
    : params_(std::move(params)), lr_(lr) {
  check_lr(lr);
  XFT_CHECK(!params_.empty(), "optimizer: no parameters to optimize");
  std::set<std::string> seen;
  for (const auto& [name, t] : params_) {
    XFT_CHECK(name != "__step__", "optimizer: parameter name '__step__' is reserved for the step count");
    XFT_CHECK(seen.insert(name).second, "optimizer: parameter '", name, "' is listed twice");
    XFT_CHECK(t.defined(), "optimizer: parameter '", name, "' is an undefined tensor");
    const auto dt = t.scalar_type();
    XFT_CHECK(dt == torch::kFloat || dt == torch::kBFloat16 || dt == torch::kHalf, "optimizer: parameter '", name,
              "' has dtype ", dt, "; expected float32, bfloat16 or float16");
    XFT_CHECK(t.requires_grad(), "optimizer: parameter '", name, "' does not require grad (leave frozen ones out)");
  }
  for (const auto& n : no_decay)
    XFT_CHECK(seen.count(n), "optimizer: no_decay names '", n, "', which is not one of the parameters");
  const std::set<std::string> exempt(no_decay.begin(), no_decay.end());
  for (const auto& [name, t] : params_) {
    ParamState s;
    s.name = name;
    s.param = t;
    s.decay = !exempt.count(name);
    states_.push_back(std::move(s));
  }
}

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  // Check every grad before touching any parameter, so a bad one cannot leave a half-done step.
  for (const auto& s : states_) {
    const auto& grad = s.param.grad();
    if (!grad.defined()) continue;
    XFT_CHECK(grad.sizes() == s.param.sizes(), "optimizer: grad of '", s.name, "' has shape ", shape_str(grad.sizes()),
              ", parameter has ", shape_str(s.param.sizes()));
    XFT_CHECK(grad.device() == s.param.device(), "optimizer: grad of '", s.name, "' is on ", grad.device(),
              ", parameter on ", s.param.device());
    XFT_CHECK(!grad.is_sparse(), "optimizer: grad of '", s.name, "' is sparse, which is not supported");
  }
  for (auto& s : states_) {
    const auto& grad = s.param.grad();
    if (!grad.defined()) continue;
    ++s.step;
    update(s, grad);
  }
  ++step_count_;
}

void Optimizer::zero_grad() {
  for (auto& [name, t] : params_) t.mutable_grad().reset();
}

void Optimizer::set_lr(double lr) {
  check_lr(lr);
  lr_ = lr;
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const auto& s : states_) {
    for (const auto& [slot, t] : s.slots) out.emplace_back(s.name + "/" + slot, t.detach());
    out.emplace_back(s.name + "/step", torch::scalar_tensor(s.step, torch::kLong));
  }
  out.emplace_back("__step__", torch::scalar_tensor(step_count_, torch::kLong));
  return out;
}

namespace {
// A step count saved as a 0-dim tensor (any numeric dtype, so a converted checkpoint works).
int64_t read_count(const std::string& entry, const torch::Tensor& t) {
  const double v = t.to(torch::kCPU, torch::kDouble).item<double>();
  XFT_CHECK(std::isfinite(v) && v >= 0 && v == std::floor(v), "optimizer state: entry '", entry,
            "' must hold a whole number >= 0, got ", v);
  return static_cast<int64_t>(v);
}
}  // namespace

void Optimizer::load_state(const NamedTensors& state) {
  std::map<std::string, torch::Tensor> given;
  for (const auto& [name, t] : state) {
    XFT_CHECK(t.defined(), "optimizer state: entry '", name, "' is an undefined tensor");
    XFT_CHECK(given.emplace(name, t).second, "optimizer state: entry '", name, "' appears twice");
  }
  // Validate everything before copying anything: a bad checkpoint leaves the optimizer as it was.
  const auto lookup = [&](const std::string& entry, c10::IntArrayRef sizes) -> const torch::Tensor& {
    const auto it = given.find(entry);
    XFT_CHECK(it != given.end(), "optimizer state (", name(), "): missing entry '", entry, "'");
    XFT_CHECK(it->second.sizes() == sizes, "optimizer state (", name(), "): entry '", entry, "' has shape ",
              shape_str(it->second.sizes()), ", expected ", shape_str(sizes));
    return it->second;
  };
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  std::vector<int64_t> steps;
  for (const auto& s : states_) {
    for (const auto& [slot, t] : s.slots) copies.emplace_back(t, lookup(s.name + "/" + slot, t.sizes()));
    steps.push_back(read_count(s.name + "/step", lookup(s.name + "/step", {})));
  }
  const int64_t step_count = read_count("__step__", lookup("__step__", {}));
  const size_t expected = copies.size() + steps.size() + 1;
  if (given.size() != expected) {
    for (const auto& s : states_) {
      for (const auto& [slot, t] : s.slots) given.erase(s.name + "/" + slot);
      given.erase(s.name + "/step");
    }
    given.erase("__step__");
    fail("optimizer state (", name(), "): unexpected entry '", given.begin()->first, "'");
  }

  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  for (size_t i = 0; i < states_.size(); ++i) states_[i].step = steps[i];
  step_count_ = step_count;
}

std::unique_ptr<Optimizer> make_adamw(NamedTensors params, const AdamWOptions& options) {
  return std::make_unique<AdamW>(std::move(params), options);
}

std::unique_ptr<Optimizer> make_adafactor(NamedTensors params, const AdafactorOptions& options) {
  return std::make_unique<Adafactor>(std::move(params), options);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const auto& [name, p] : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    norms.push_back(torch::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat));
  }
  if (grads.empty()) return 0.0;
  const auto device = norms.front().device();
  for (auto& n : norms) n = n.to(device);
  const auto total = torch::linalg_vector_norm(torch::stack(norms), 2);
  clip_grads_to_norm(params, total, max_norm);
  return total.item<double>();
}

void clip_grads_to_norm(const NamedTensors& params, const torch::Tensor& total, double max_norm) {
  if (max_norm <= 0) return;
  torch::NoGradGuard no_grad;
  // torch: clip_coef = max_norm / (total + 1e-6), which Python evaluates as reciprocal() * max_norm.
  const auto coef = ((total + 1e-6).reciprocal() * max_norm).clamp_max_(1.0);
  // !(c >= 1) also scales when the norm is NaN, spreading the NaN to the grads as torch does.
  if (coef.item<float>() >= 1.0f) return;
  for (const auto& [name, p] : params) {
    auto g = p.grad();
    if (g.defined()) g.mul_(coef.to(g.device()));
  }
}

bool hf_applies_weight_decay(const std::string& param_name) {
  // trainer.py: forbidden_name_patterns, searched in the lower-cased name.
  static const std::regex forbidden(R"(bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.))");
  std::string lower = param_name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return !std::regex_search(lower, forbidden);
}

}  // namespace xft
