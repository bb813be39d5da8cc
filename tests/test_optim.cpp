// Optimizers, LR schedule and gradient clipping. Every expected value is worked out here in
// doubles from the published formulas (torch.optim.AdamW, HF Adafactor, HF schedules), never
// taken from the implementation.
#include <cmath>
#include <functional>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "xft/train/lr_schedule.h"
#include "xft/train/optimizer.h"
#include "xft/train/train_config.h"

namespace {

using Vec = std::vector<double>;
using xft::test::expect_error;

torch::Tensor param(const Vec& v, std::vector<int64_t> shape, torch::Dtype dtype = torch::kFloat) {
  return torch::tensor(v, torch::kDouble).reshape(shape).to(dtype).set_requires_grad(true);
}
void set_grad(torch::Tensor& p, const Vec& g) {
  p.mutable_grad() = torch::tensor(g, torch::kDouble).reshape(p.sizes()).to(p.scalar_type());
}
Vec values(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return Vec(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
void expect_values(const torch::Tensor& t, const Vec& want, double tol) {
  const auto got = values(t);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}
torch::Tensor state_entry(const xft::Optimizer& opt, const std::string& name) {
  for (const auto& [n, t] : opt.state())
    if (n == name) return t;
  ADD_FAILURE() << "no state entry " << name;
  return {};
}
template <typename Options>  // AdamWOptions or AdafactorOptions, other fields at their defaults
Options options(double lr, double wd = 0, std::vector<std::string> no_decay = {}) {
  Options o;
  o.lr = lr;
  o.weight_decay = wd;
  o.no_decay = std::move(no_decay);
  return o;
}
xft::AdamWOptions adamw_options(double lr, double wd = 0, std::vector<std::string> no_decay = {}) {
  return options<xft::AdamWOptions>(lr, wd, std::move(no_decay));
}
xft::AdafactorOptions adafactor_options(double lr, double wd = 0, std::vector<std::string> no_decay = {}) {
  return options<xft::AdafactorOptions>(lr, wd, std::move(no_decay));
}
// {f(0), ..., f(n-1)}
template <typename F>
Vec each(size_t n, F f) {
  Vec v;
  for (size_t i = 0; i < n; ++i) v.push_back(f(i));
  return v;
}
double rms(const Vec& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s / x.size());
}

// torch.optim.AdamW on one element over a sequence of grads (defaults b1=.9, b2=.999, eps=1e-8).
double adamw_ref(double p, const Vec& grads, double lr, double wd) {
  double m = 0, v = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const double t = i + 1, g = grads[i];
    p *= 1 - lr * wd;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    p -= lr * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
  }
  return p;
}

// HF Adafactor pieces, eps1 = 1e-30, decay_rate = -0.8.
double beta2t(int t) { return 1 - std::pow(t, -0.8); }
// Factored update of one rows x cols matrix g (row-major), before clipping and lr.
Vec factored_update(Vec& row, Vec& col, const Vec& g, size_t rows, size_t cols, int t) {
  const double b = beta2t(t);
  for (size_t i = 0; i < rows; ++i) {
    double mean = 0;
    for (size_t j = 0; j < cols; ++j) mean += (g[i * cols + j] * g[i * cols + j] + 1e-30) / cols;
    row[i] = b * row[i] + (1 - b) * mean;
  }
  for (size_t j = 0; j < cols; ++j) {
    double mean = 0;
    for (size_t i = 0; i < rows; ++i) mean += (g[i * cols + j] * g[i * cols + j] + 1e-30) / rows;
    col[j] = b * col[j] + (1 - b) * mean;
  }
  double row_mean = 0;
  for (double r : row) row_mean += r / rows;
  Vec upd(rows * cols);
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j)
      upd[i * cols + j] = g[i * cols + j] / std::sqrt(row[i] / row_mean) / std::sqrt(col[j]);
  return upd;
}
Vec unfactored_update(Vec& sq, const Vec& g, int t) {
  const double b = beta2t(t);
  Vec upd(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    sq[i] = b * sq[i] + (1 - b) * (g[i] * g[i] + 1e-30);
    upd[i] = g[i] / std::sqrt(sq[i]);
  }
  return upd;
}
// upd /= max(1, RMS(upd)/clip); upd *= lr_t; p -= wd*lr_t*p; p -= upd.
void adafactor_apply(Vec& p, const Vec& upd, double lr_t, double wd = 0, double clip = 1) {
  const double div = std::max(1.0, rms(upd) / clip);
  for (size_t i = 0; i < p.size(); ++i) p[i] = p[i] - wd * lr_t * p[i] - upd[i] / div * lr_t;
}

TEST(AdamW, BiasCorrectionMakesEachStepLrTimesSign) {
  // With the same grad twice, m/(1-b1^t) = g and v/(1-b2^t) = g^2 at t = 1 and 2
  // (m2 = .19 g, 1-.9^2 = .19; v2 = .001999 g^2, 1-.999^2 = .001999), so each step moves by
  // lr*g/(|g|+eps); without the correction step 1 would move by lr*.1/sqrt(.001) = 3.16 lr.
  const double lr = 0.1;
  const Vec p0 = {1, -2, 0.5}, g0 = {0.5, -3, 0.01};
  const Vec p1 = {0.2, 0.4, -0.6, 0.8}, g1 = {1, -1, 2, 0.5};
  auto a = param(p0, {3}), b = param(p1, {2, 2});
  auto opt = xft::make_adamw({{"a", a}, {"b", b}}, adamw_options(lr));
  EXPECT_EQ(opt->name(), "adamw");
  for (int s = 0; s < 2; ++s) {
    set_grad(a, g0);
    set_grad(b, g1);
    opt->step();
  }
  expect_values(a, each(3, [&](size_t i) { return p0[i] - 2 * lr * g0[i] / (std::abs(g0[i]) + 1e-8); }), 1e-6);
  expect_values(b, each(4, [&](size_t i) { return p1[i] - 2 * lr * g1[i] / (std::abs(g1[i]) + 1e-8); }), 1e-6);
  expect_values(state_entry(*opt, "b/exp_avg"), each(4, [&](size_t i) { return 0.19 * g1[i]; }), 1e-7);
  expect_values(state_entry(*opt, "b/exp_avg_sq"), each(4, [&](size_t i) { return 0.001999 * g1[i] * g1[i]; }), 1e-8);
  EXPECT_EQ(opt->step_count(), 2);
}

TEST(AdamW, TwoStepsWithAndWithoutWeightDecay) {
  const double lr = 0.05, wd = 0.5;
  const Vec p0 = {1, -2, 0.5}, p1 = {0.3, -0.7, 1.5, 2, -1, 0};
  const std::vector<Vec> ga = {{0.5, -3, 0.01}, {-1, 2, 0.2}};
  const std::vector<Vec> gb = {{1, -1, 2, 0.5, 0.25, -4}, {0.1, 0.3, -2, 1, 0.5, 1}};
  // Twice: the op sequence, then torch's fused kernel (fused_optimizer), against the same hand values.
  for (const bool fused : {false, true})
    for (const bool decay : {false, true}) {
      auto a = param(p0, {3}), b = param(p1, {2, 3}), n = param(p0, {3});
      const double w = decay ? wd : 0.0;
      // "n" gets the same grads as "a" but is exempt from decay.
      auto o = adamw_options(lr, w, {"n"});
      o.fused = fused;
      auto opt = xft::make_adamw({{"a", a}, {"b", b}, {"n", n}}, o);
      for (int s = 0; s < 2; ++s) {
        set_grad(a, ga[s]);
        set_grad(b, gb[s]);
        set_grad(n, ga[s]);
        opt->step();
      }
      expect_values(a, each(3, [&](size_t i) { return adamw_ref(p0[i], {ga[0][i], ga[1][i]}, lr, w); }), 1e-6);
      expect_values(b, each(6, [&](size_t i) { return adamw_ref(p1[i], {gb[0][i], gb[1][i]}, lr, w); }), 1e-6);
      expect_values(n, each(3, [&](size_t i) { return adamw_ref(p0[i], {ga[0][i], ga[1][i]}, lr, 0.0); }), 1e-6);
    }
}

TEST(AdamW, ParameterWithoutGradIsUntouchedAndKeepsItsOwnStep) {
  const double lr = 0.1, wd = 0.1;
  auto a = param({1, 2}, {2}), b = param({3, -4}, {2});
  const auto b0 = b.detach().clone();
  auto opt = xft::make_adamw({{"a", a}, {"b", b}}, adamw_options(lr, wd));
  for (int s = 0; s < 2; ++s) {
    set_grad(a, {1, 1});
    opt->step();
    opt->zero_grad();
    EXPECT_FALSE(a.grad().defined());
  }
  EXPECT_TRUE(torch::equal(b, b0));  // not even weight decay
  EXPECT_EQ(state_entry(*opt, "a/step").item<int64_t>(), 2);
  EXPECT_EQ(state_entry(*opt, "b/step").item<int64_t>(), 0);
  // b's first update is its own t = 1: p(1 - lr wd) - lr g/(|g|+eps).
  set_grad(b, {2, -0.5});
  opt->step();
  expect_values(b, {3 * (1 - lr * wd) - lr * 2 / (2 + 1e-8), -4 * (1 - lr * wd) + lr * 0.5 / (0.5 + 1e-8)}, 1e-6);
  EXPECT_EQ(opt->step_count(), 3);
}

TEST(AdamW, Bf16ParameterStaysBf16WithFp32State) {
  const double lr = 0.125;
  const Vec p0 = {1, -2, 0.5}, g = {0.5, 0.25, -1};  // all exact in bf16
  auto p = param(p0, {3}, torch::kBFloat16);
  auto opt = xft::make_adamw({{"p", p}}, adamw_options(lr));
  for (int s = 1; s <= 2; ++s) {
    set_grad(p, g);
    opt->step();
    // Same grad each step: p_s = p0 - s lr g/(|g|+eps), computed in fp32, rounded to bf16.
    const Vec want = each(3, [&](size_t i) { return p0[i] - s * lr * g[i] / (std::abs(g[i]) + 1e-8); });
    EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(p, torch::tensor(want, torch::kDouble).to(torch::kBFloat16))) << p;
  }
  EXPECT_EQ(state_entry(*opt, "p/exp_avg").scalar_type(), torch::kFloat);
  EXPECT_EQ(state_entry(*opt, "p/exp_avg_sq").scalar_type(), torch::kFloat);
  expect_values(state_entry(*opt, "p/exp_avg"), {0.19 * 0.5, 0.19 * 0.25, -0.19}, 1e-7);
}

TEST(Adafactor, Factored2x3TwoStepsWithClippingAndWeightDecay) {
  const double lr = 0.01;
  const Vec p0 = {0.5, -0.5, 1, 2, 0, -1};
  const std::vector<Vec> g = {{1, -1, 0, 0.5, 2, -4}, {0.5, 1, -2, 1, -1, 3}};
  for (const double wd : {0.0, 0.5}) {
    auto p = param(p0, {2, 3});
    auto opt = xft::make_adafactor({{"w", p}}, adafactor_options(lr, wd));
    EXPECT_EQ(opt->name(), "adafactor");
    Vec want = p0, row(2, 0), col(3, 0);
    for (int t = 1; t <= 2; ++t) {
      set_grad(p, g[t - 1]);
      const auto before = values(p);
      opt->step();
      const Vec upd = factored_update(row, col, g[t - 1], 2, 3, t);
      if (t == 1 && wd == 0) {
        EXPECT_GT(rms(upd), 1.2);  // clipping kicks in: the applied update has RMS exactly lr
        const auto after = values(p);
        EXPECT_NEAR(rms(each(6, [&](size_t i) { return before[i] - after[i]; })), lr, 5e-7);
      }
      adafactor_apply(want, upd, lr, wd);
      expect_values(p, want, 1e-6);
      expect_values(state_entry(*opt, "w/exp_avg_sq_row"), row, 1e-5);
      expect_values(state_entry(*opt, "w/exp_avg_sq_col"), col, 1e-5);
    }
  }
}

TEST(Adafactor, Unfactored1DTwoStepsWithWeightDecay) {
  const double lr = 0.01;
  const Vec p0 = {1, -2, 3, 0.5};
  const std::vector<Vec> g = {{0.1, -2, 0, 4}, {1, 1, 1, 1}};
  for (const double wd : {0.0, 0.5}) {
    auto p = param(p0, {4}), n = param(p0, {4});  // n: same grads, exempt from decay
    auto opt = xft::make_adafactor({{"v", p}, {"n", n}}, adafactor_options(lr, wd, {"n"}));
    set_grad(p, g[0]);
    set_grad(n, g[0]);
    opt->step();
    // t = 1: beta2t = 0, sq = g^2 + eps1, upd = sign(g) (0 where g = 0): RMS sqrt(3/4) < 1, no clip.
    expect_values(n, {1 - lr, -2 + lr, 3, 0.5 - lr}, 2e-7);
    Vec want = p0, want_n = p0, sq(4, 0), sq_n(4, 0);
    adafactor_apply(want, unfactored_update(sq, g[0], 1), lr, wd);
    adafactor_apply(want_n, unfactored_update(sq_n, g[0], 1), lr);
    set_grad(p, g[1]);
    set_grad(n, g[1]);
    opt->step();
    adafactor_apply(want, unfactored_update(sq, g[1], 2), lr, wd);
    adafactor_apply(want_n, unfactored_update(sq_n, g[1], 2), lr);
    expect_values(p, want, 1e-6);
    expect_values(n, want_n, 1e-6);
    expect_values(state_entry(*opt, "v/exp_avg_sq"), sq, 1e-6);
  }
}

TEST(Adafactor, ScaleParameterUsesRmsOfParamFloorEps2) {
  const double lr = 0.01;
  const Vec pw = {3, 4, 0, 0}, gw1 = {1, 2, -1, 0.5}, gw2 = {-1, 1, 2, 1};
  auto w = param(pw, {2, 2}), z = param({0, 0}, {2});
  auto o = adafactor_options(lr);
  o.scale_parameter = true;
  auto opt = xft::make_adafactor({{"w", w}, {"z", z}}, o);
  Vec want_w = pw, row(2, 0), col(2, 0);
  for (int t = 1; t <= 2; ++t) {
    set_grad(w, t == 1 ? gw1 : gw2);
    set_grad(z, {1, -2});
    const double lr_t = lr * std::max(1e-3, rms(want_w));  // RMS(p) before this step: 2.5 at t = 1
    opt->step();
    adafactor_apply(want_w, factored_update(row, col, t == 1 ? gw1 : gw2, 2, 2, t), lr_t);
  }
  expect_values(w, want_w, 1e-6);
  // RMS(z) stays below eps2, so lr_t = 1e-3 lr; each step the update is lr_t * sign(g)
  // (at t = 2 sq = g^2 again since the grad repeats).
  expect_values(z, {-2e-3 * lr, 2e-3 * lr}, 1e-10);
}

TEST(Adafactor, ThreeDimParamIsFactoredPerLeadingIndex) {
  // [E=2, F=2, D=3]: each [F, D] slice is its own matrix (the experts the reference keeps as
  // separate nn.Linear): own row/col statistics and own update clipping.
  const double lr = 0.01;
  const Vec p0 = {0.5, -0.5, 1, 2, 0, -1, 1, 1, 1, -1, -1, -1};
  const std::vector<Vec> g = {{1, -1, 0, 0.5, 2, -4, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6},
                              {0.5, 1, -2, 1, -1, 3, 3, -1, 0.5, 0.5, 1, -2}};
  auto p = param(p0, {2, 2, 3});
  auto opt = xft::make_adafactor({{"e", p}}, adafactor_options(lr));
  EXPECT_EQ(state_entry(*opt, "e/exp_avg_sq_row").sizes().vec(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(state_entry(*opt, "e/exp_avg_sq_col").sizes().vec(), (std::vector<int64_t>{2, 3}));
  Vec want = p0;
  std::vector<Vec> row(2, Vec(2, 0)), col(2, Vec(3, 0));
  for (int t = 1; t <= 2; ++t) {
    set_grad(p, g[t - 1]);
    opt->step();
    Vec all;
    for (int e = 0; e < 2; ++e) {
      const Vec slice(g[t - 1].begin() + 6 * e, g[t - 1].begin() + 6 * (e + 1));
      const Vec u = factored_update(row[e], col[e], slice, 2, 3, t);
      all.insert(all.end(), u.begin(), u.end());
      Vec w(want.begin() + 6 * e, want.begin() + 6 * (e + 1));
      adafactor_apply(w, u, lr);  // clipped by this slice's RMS alone
      std::copy(w.begin(), w.end(), want.begin() + 6 * e);
      if (t == 1 && e == 1) {
        EXPECT_LT(rms(u), 1.0);  // not clipped, though the whole update's RMS is
      }
    }
    if (t == 1) {
      EXPECT_GT(rms(all), 1.1);
    }
    expect_values(p, want, 1e-6);
  }
  expect_values(state_entry(*opt, "e/exp_avg_sq_col"), each(6, [&](size_t i) { return col[i / 3][i % 3]; }), 1e-5);
}

TEST(Adafactor, StackedParamEqualsSeparateMatrices) {
  // With scale_parameter and weight decay too: a [3, 4, 5] stack moves exactly as three [4, 5]
  // parameters would, so splitting experts over ranks cannot change the update.
  torch::manual_seed(3);
  auto stack = torch::randn({3, 4, 5}).requires_grad_();
  std::vector<torch::Tensor> parts;
  xft::NamedTensors separate;
  for (int e = 0; e < 3; ++e) {
    parts.push_back(stack.detach()[e].clone().requires_grad_());
    separate.emplace_back("m" + std::to_string(e), parts.back());
  }
  auto o = adafactor_options(0.05, 0.1);
  o.scale_parameter = true;
  auto a = xft::make_adafactor({{"s", stack}}, o);
  auto b = xft::make_adafactor(separate, o);
  for (int t = 0; t < 3; ++t) {
    auto g = torch::randn({3, 4, 5}) * (t + 1);
    stack.mutable_grad() = g.clone();
    for (int e = 0; e < 3; ++e) parts[e].mutable_grad() = g[e].clone();
    a->step();
    b->step();
  }
  for (int e = 0; e < 3; ++e) EXPECT_LE(xft::test::max_abs_diff(stack.detach()[e], parts[e].detach()), 1e-6) << e;
}

// Three steps, save, resume on copies, two more steps on both: bitwise equal.
void check_resume(const std::function<std::unique_ptr<xft::Optimizer>(xft::NamedTensors)>& make) {
  torch::manual_seed(0);
  xft::NamedTensors pa = {{"w", torch::randn({3, 4}).requires_grad_()},
                          {"b", torch::randn({4}).requires_grad_()},
                          {"e", torch::randn({2, 3, 2}).requires_grad_()},
                          {"h", torch::randn({2, 3}).to(torch::kBFloat16).requires_grad_()}};
  const auto grads = [](xft::NamedTensors& ps, int step) {
    for (size_t i = 0; i < ps.size(); ++i) {
      auto& p = ps[i].second;
      if (ps[i].first == "b" && step == 1) continue;  // per-parameter step counts differ
      const auto x = torch::arange(p.numel()).reshape(p.sizes()) * (0.37 * (step + 1)) + static_cast<double>(i);
      p.mutable_grad() = (x.sin() * (1 + step)).to(p.scalar_type());
    }
  };
  const xft::LrSchedule sched{xft::ScheduleKind::kLinear, 2, 5, 1e-2};
  auto a = make(pa);
  for (int s = 0; s < 3; ++s) {
    grads(pa, s);
    a->set_lr(sched.at(s));
    a->step();
    a->zero_grad();
  }
  xft::NamedTensors saved;
  for (const auto& [n, t] : a->state()) saved.emplace_back(n, t.clone());
  xft::NamedTensors pb;
  for (const auto& [n, t] : pa) pb.emplace_back(n, t.detach().clone().requires_grad_());
  auto b = make(pb);
  b->load_state(saved);
  EXPECT_EQ(b->step_count(), 3);
  for (int s = 3; s < 5; ++s) {
    for (auto* ps : {&pa, &pb}) grads(*ps, s);
    for (auto* o : {a.get(), b.get()}) {
      o->set_lr(sched.at(s));
      o->step();
    }
  }
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
  const auto sa = a->state(), sb = b->state();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(OptimizerState, ResumeIsBitwiseExact) {
  check_resume([](xft::NamedTensors p) { return xft::make_adamw(std::move(p), adamw_options(1e-2, 0.1)); });
  check_resume([](xft::NamedTensors p) {
    auto o = adafactor_options(1e-2, 0.1);
    o.scale_parameter = true;
    return xft::make_adafactor(std::move(p), o);
  });
}

TEST(OptimizerState, LoadRejectsMissingMisshapenAndUnexpectedEntries) {
  auto w = param({1, 2, 3, 4, 5, 6}, {2, 3}), v = param({1, 2}, {2});
  auto opt = xft::make_adamw({{"w", w}, {"v", v}}, {});
  set_grad(w, {1, 1, 1, 1, 1, 1});
  opt->step();
  const auto good = opt->state();
  const auto edited = [&](const std::string& name, const torch::Tensor& t) {
    xft::NamedTensors s;
    for (const auto& [n, x] : good)
      if (n != name) s.emplace_back(n, x.clone());
    if (t.defined()) s.emplace_back(name, t);
    return s;
  };
  const auto before = state_entry(*opt, "w/exp_avg").clone();
  expect_error([&] { opt->load_state(edited("w/exp_avg_sq", {})); }, {"missing", "'w/exp_avg_sq'"});
  expect_error(
      [&] {
        opt->load_state(edited("w/exp_avg", torch::zeros({3, 2})));
      },
      {"'w/exp_avg'", "shape [3, 2]", "[2, 3]"});
  expect_error([&] { opt->load_state(edited("v/step", torch::zeros({1}, torch::kLong))); }, {"'v/step'", "shape"});
  expect_error([&] { opt->load_state(edited("x/exp_avg", torch::zeros({2}))); }, {"unexpected", "'x/exp_avg'"});
  expect_error([&] { opt->load_state(edited("__step__", {})); }, {"missing", "'__step__'"});
  // A rejected load changes nothing.
  EXPECT_TRUE(torch::equal(state_entry(*opt, "w/exp_avg"), before));
  EXPECT_EQ(opt->step_count(), 1);
  // Another optimizer's state does not fit.
  auto ada = xft::make_adafactor({{"w", param({1, 2, 3, 4, 5, 6}, {2, 3})}, {"v", param({1, 2}, {2})}}, {});
  expect_error([&] { ada->load_state(good); }, {"missing", "'w/exp_avg_sq_row'"});
}

TEST(Optimizer, RejectsBadParameters) {
  expect_error([] { xft::make_adamw({{"w", torch::zeros({2})}}, {}); }, {"'w'", "require grad"});
  expect_error([] { xft::make_adamw({{"w", param({1}, {1})}, {"w", param({1}, {1})}}, {}); }, {"'w'", "twice"});
  expect_error([] { xft::make_adamw({{"w", param({1}, {1}, torch::kDouble)}}, {}); }, {"'w'", "dtype"});
  expect_error(
      [] {
        xft::make_adafactor({{"w", param({1}, {1})}}, adafactor_options(1, 0, {"norm.weight"}));
      },
      {"'norm.weight'"});
  auto a = param({1, 2}, {2}), w = param({1, 2}, {2});
  auto opt = xft::make_adamw({{"a", a}, {"w", w}}, {});
  set_grad(a, {1, 1});
  w.mutable_grad() = torch::ones({3});
  expect_error([&] { opt->step(); }, {"'w'", "shape"});
  expect_values(a, {1, 2}, 0);  // checked before anything moved
  EXPECT_EQ(opt->step_count(), 0);
}

TEST(LrSchedule, ValuesLikeTransformers) {
  const xft::LrSchedule s{xft::ScheduleKind::kLinear, 10, 110, 1e-3};
  EXPECT_EQ(s.at(0), 0.0);                   // the first optimizer step runs at lr 0
  EXPECT_DOUBLE_EQ(s.at(5), 1e-3 * 5 / 10);  // mid-warmup
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);          // end of warmup: (110-10)/100 = 1
  EXPECT_DOUBLE_EQ(s.at(60), 1e-3 * 50 / 100);
  EXPECT_EQ(s.at(110), 0.0);
  EXPECT_EQ(s.at(500), 0.0);  // clamped, not negative
  const xft::LrSchedule no_warmup{xft::ScheduleKind::kLinear, 0, 4, 1.0};
  EXPECT_DOUBLE_EQ(no_warmup.at(0), 1.0);
  EXPECT_DOUBLE_EQ(no_warmup.at(3), 0.25);
  const xft::LrSchedule c{xft::ScheduleKind::kConstant, 10, 100, 2e-5};
  EXPECT_EQ(c.at(0), 2e-5);
  EXPECT_EQ(c.at(1000), 2e-5);
  const xft::LrSchedule cw{xft::ScheduleKind::kConstantWithWarmup, 4, 100, 2e-5};
  EXPECT_EQ(cw.at(0), 0.0);
  EXPECT_DOUBLE_EQ(cw.at(1), 2e-5 * 0.25);
  EXPECT_EQ(cw.at(4), 2e-5);
  EXPECT_EQ(cw.at(1000), 2e-5);
}

TEST(LrSchedule, ValidateRejectsBadSettings) {
  expect_error(
      [] {
        xft::TrainConfig::from_json({{"schedule", "cosine"}}, "t.json", "sft_train");
      },
      {"t.json", "sft_train.schedule", "'cosine'", "linear, constant, constant_with_warmup"});
  expect_error([] { xft::LrSchedule{xft::ScheduleKind::kLinear, -1, 10, 1e-5}.validate(); }, {"warmup", "-1"});
  expect_error([] { xft::LrSchedule{xft::ScheduleKind::kLinear, 0, 0, 1e-5}.validate(); }, {"total", "0"});
  expect_error([] { xft::LrSchedule{xft::ScheduleKind::kLinear, 0, 10, -1.0}.validate(); }, {"peak"});
  expect_error([] { xft::LrSchedule{xft::ScheduleKind::kLinear, 0, 10, 1e-5}.at(-1); }, {"step"});
  EXPECT_NO_THROW((xft::LrSchedule{xft::ScheduleKind::kConstant, 0, 1, 0.0}.validate()));
}

TEST(ClipGradNorm, ScalesByMaxNormOverNormPlusEps) {
  auto a = param({0, 0}, {2}), b = param({0, 0}, {1, 2}), c = param({7}, {1});
  const auto reset = [&] {
    set_grad(a, {3, 4});
    set_grad(b, {12, 0});  // total norm sqrt(9 + 16 + 144) = 13; c has no grad
  };
  const xft::NamedTensors ps = {{"a", a}, {"b", b}, {"c", c}};
  reset();
  EXPECT_NEAR(xft::clip_grad_norm(ps, 6.5), 13.0, 1e-6);
  const double k = 6.5 / (13 + 1e-6);
  expect_values(a.grad(), {3 * k, 4 * k}, 1e-6);
  expect_values(b.grad(), {12 * k, 0}, 1e-6);
  EXPECT_FALSE(c.grad().defined());
  for (double max_norm : {100.0, 0.0}) {  // below the norm, or clipping off: grads unchanged
    reset();
    EXPECT_NEAR(xft::clip_grad_norm(ps, max_norm), 13.0, 1e-6);
    expect_values(a.grad(), {3, 4}, 0);
    expect_values(b.grad(), {12, 0}, 0);
  }
  auto h = param({0, 0}, {2}, torch::kBFloat16);
  set_grad(h, {0.75, 1});  // norm 1.25, in fp32 whatever the grad dtype
  EXPECT_NEAR(xft::clip_grad_norm({{"h", h}}, 0.0), 1.25, 1e-7);
  EXPECT_EQ(xft::clip_grad_norm({{"c", c}}, 1.0), 0.0);
}

TEST(WeightDecay, HfTrainerExclusions) {
  for (const char* n : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.experts.3.gate_proj.weight",
                        "model.layers.0.mlp.gate.weight", "model.normalizer.weight"})
    EXPECT_TRUE(xft::hf_applies_weight_decay(n)) << n;
  for (const char* n :
       {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight", "model.norm.weight",
        "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.o_proj.bias", "Model.RMSNorm.weight"})
    EXPECT_FALSE(xft::hf_applies_weight_decay(n)) << n;
}

}  // namespace
