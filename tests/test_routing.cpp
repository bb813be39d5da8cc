// The routing op (paper Eq. 1 and 2): hand-computed weights for every mode, ties, the custom
// backward against autograd of the composed ops and against finite differences (fp64), and
// the load-balancing losses against hand computation.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "moe_reference.h"
#include "test_util.h"
#include "xft/moe/load_balancing.h"
#include "xft/moe/moe_layer.h"
#include "xft/moe/routing.h"

using namespace xft;
using xft::test::expect_error;
using xft::test::max_abs_diff;

namespace {

using xft::test::config;

// Logits whose softmax is exactly {0.5, 0.3, 0.2}.
torch::Tensor logits_532() { return torch::log(torch::tensor({{0.5, 0.3, 0.2}}, torch::kFloat64)); }

}  // namespace

TEST(Routing, XftWeightsByHand) {
  // N = 4 (shared + 3 routed), K = 3: the shared expert and the top 2 routed.
  auto r = route(logits_532(), config("xft", 4, 3));
  const double p0 = std::exp(0.5) / (std::exp(0.5) + std::exp(0.3));  // softmax over the chosen {0.5, 0.3}
  auto w = r.weights_TS[0];
  EXPECT_NEAR(w[0].item<double>(), 1 - 0.5, 1e-12);   // shared: 1 - s_max
  EXPECT_NEAR(w[1].item<double>(), p0 * 0.5, 1e-12);  // softmax * s_max
  EXPECT_NEAR(w[2].item<double>(), (1 - p0) * 0.5, 1e-12);
  EXPECT_NEAR(w.sum().item<double>(), 1.0, 1e-12);  // Eq. 2: all K weights sum to 1
  EXPECT_TRUE(torch::equal(r.experts_TS[0], torch::tensor({0, 1, 2}, torch::kInt64)));
}

TEST(Routing, SharedNoNormWeightsByHand) {
  auto r = route(logits_532(), config("shared_no_norm", 4, 3));
  auto w = r.weights_TS[0];
  EXPECT_NEAR(w[0].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(w[1].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(w[2].item<double>(), 0.3, 1e-12);
  EXPECT_NEAR(w.sum().item<double>(), 1.3, 1e-12);  // the scale mismatch the paper names
}

TEST(Routing, VanillaWeightsByHand) {
  auto raw = route(logits_532(), config("vanilla", 3, 2));
  EXPECT_NEAR(raw.weights_TS[0][0].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(raw.weights_TS[0][1].item<double>(), 0.3, 1e-12);
  EXPECT_TRUE(torch::equal(raw.experts_TS[0], torch::tensor({0, 1}, torch::kInt64)));
  auto renorm = route(logits_532(), config("vanilla", 3, 2, true));
  EXPECT_NEAR(renorm.weights_TS[0][0].item<double>(), 0.625, 1e-12);
  EXPECT_NEAR(renorm.weights_TS[0][1].item<double>(), 0.375, 1e-12);
}

TEST(Routing, TiesGoToTheLowerIndex) {
  auto z = torch::tensor({{0.0, 1.0, 0.0, 1.0, 0.0}, {2.0, 2.0, 2.0, 2.0, 2.0}});
  auto r = route(z, config("xft", 6, 4));
  EXPECT_TRUE(torch::equal(r.experts_TS[0], torch::tensor({0, 2, 4, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(r.experts_TS[1], torch::tensor({0, 1, 2, 3}, torch::kInt64)));
  auto v = route(z, config("vanilla", 5, 3));
  EXPECT_TRUE(torch::equal(v.experts_TS[0], torch::tensor({1, 3, 0}, torch::kInt64)));
}

TEST(Routing, Bf16LogitsRouteInFp32) {
  auto z = torch::randn({5, 7}).to(torch::kBFloat16);
  auto r = route(z, config("xft", 8, 6));
  EXPECT_EQ(r.weights_TS.scalar_type(), torch::kFloat32);
  EXPECT_LE(max_abs_diff(r.weights_TS.sum(-1), torch::ones({5})), 1e-6);
}

TEST(Routing, RejectsLogitsOfTheWrongWidth) {
  expect_error([] { route(torch::randn({4, 5}), config("xft", 8, 6)); }, {"route", "7 routed"});
}

// A mode outside RoutingMode's values (a new rule half added, a corrupted cast) fails instead of
// routing as another rule; a misspelt name fails as it would in a config file.
TEST(Routing, AnUnknownModeIsRefusedNotRunAsAnother) {
  auto c = config("xft", 8, 6);
  c.routing = static_cast<RoutingMode>(7);
  expect_error([&] { route(torch::randn({4, 7}), c); }, {"route", "routing mode 7"});
  expect_error([] { xft::test::routing_mode("xtf"); }, {"xft, shared_no_norm, vanilla", "'xtf'"});
  expect_error([] { xft::test::router_kind("mpl"); }, {"linear, mlp", "'mpl'"});
}

// routing.h's rule for non-finite logits: clamp to the finite range, NaN to the lowest value.
// R = 7 routed (xft N = 8, K = 6: five chosen). Row 0 all NaN, row 1 all -inf: uniform scores
// 1/7, ids 1..5 (ties to the lower index). Row 2: only logits 0, 1, 0 at experts 1, 3, 5
// usable, the NaN / -inf ones score exactly 0 and fill the top 5 from the lowest index. Row 3:
// two +inf share the probability.
TEST(Routing, NonFiniteLogitsFollowTheDocumentedRule) {
  const double nan = std::nan(""), inf = INFINITY;
  const auto z64 = torch::tensor({{nan, nan, nan, nan, nan, nan, nan},
                                  {-inf, -inf, -inf, -inf, -inf, -inf, -inf},
                                  {nan, 0.0, -inf, 1.0, nan, 0.0, -inf},
                                  {inf, 0.0, inf, nan, -inf, 2.0, 0.0}},
                                 torch::kFloat64);
  const double e = std::exp(1.0);
  const auto probs_want = torch::tensor({{1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7.},
                                         {1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7., 1 / 7.},
                                         {0.0, 1 / (2 + e), 0.0, e / (2 + e), 0.0, 1 / (2 + e), 0.0},
                                         {0.5, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0}},
                                        torch::kFloat64);
  const auto ids_want =
      torch::tensor({{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}, {0, 4, 2, 6, 1, 3}, {0, 1, 3, 2, 4, 5}}, torch::kInt64);
  for (auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto z = z64.to(dtype).clone().requires_grad_(true);
    for (const auto* mode : {"xft", "shared_no_norm"}) {
      auto r = route(z, config(mode, 8, 6));
      EXPECT_TRUE(torch::equal(r.experts_TS, ids_want)) << mode << "\n" << r.experts_TS;
      EXPECT_LE(max_abs_diff(r.probs_TR, probs_want), 1e-6) << mode;
      EXPECT_TRUE(torch::isfinite(r.weights_TS).all().item<bool>()) << mode << "\n" << r.weights_TS;
      auto dz = torch::autograd::grad({(r.weights_TS * r.weights_TS).sum() + r.probs_TR.square().sum()}, {z})[0];
      EXPECT_TRUE(torch::isfinite(dz).all().item<bool>()) << mode;
    }
    // Eq. 2 on the uniform row by hand: shared 1 - 1/7, each of the five routed (1/5) * (1/7).
    auto x = route(z, config("xft", 8, 6)).weights_TS[0];
    EXPECT_LE(max_abs_diff(x, torch::tensor({6 / 7., 1 / 35., 1 / 35., 1 / 35., 1 / 35., 1 / 35.})), 1e-6);
    // Vanilla over all 7 experts, renormalised: the uniform rows give 1/3 each to experts 0, 1, 2.
    auto v = route(z, config("vanilla", 7, 3, true));
    EXPECT_TRUE(torch::equal(v.experts_TS[1], torch::tensor({0, 1, 2}, torch::kInt64)));
    EXPECT_TRUE(torch::equal(v.experts_TS[3], torch::tensor({0, 2, 1}, torch::kInt64)));
    EXPECT_LE(max_abs_diff(v.weights_TS[0], torch::full({3}, 1 / 3.)), 1e-6);
    EXPECT_TRUE(torch::isfinite(v.weights_TS).all().item<bool>());
    // The composed reference applies the same forward rule.
    auto ref = test::route_reference(z.detach(), config("xft", 8, 6));
    EXPECT_TRUE(torch::equal(ref.experts_TS, ids_want));
  }
}

struct Mode {
  std::string name;
  int64_t N, K;
  bool renorm;
};

void PrintTo(const Mode& m, std::ostream* os) { *os << m.name << " N" << m.N << " K" << m.K; }
class RoutingBackward : public ::testing::TestWithParam<Mode> {};

TEST_P(RoutingBackward, MatchesAutogradOfComposedOps) {
  const auto m = GetParam();
  const auto c = config(m.name, m.N, m.K, m.renorm);
  torch::manual_seed(3);
  auto z = torch::randn({33, c.num_routed()}, torch::kFloat64);
  auto gw = torch::randn({33, m.K}, torch::kFloat64);
  auto gp = torch::randn({33, c.num_routed()}, torch::kFloat64);
  auto za = z.clone().requires_grad_(true);
  auto zb = z.clone().requires_grad_(true);
  auto a = route(za, c);
  auto b = test::route_reference(zb, c);
  ASSERT_TRUE(torch::equal(a.experts_TS, b.experts_TS));
  ASSERT_LE(max_abs_diff(a.weights_TS, b.weights_TS), 1e-14);
  ((a.weights_TS * gw).sum() + (a.probs_TR * gp).sum()).backward();
  ((b.weights_TS * gw).sum() + (b.probs_TR * gp).sum()).backward();
  EXPECT_LE(max_abs_diff(za.grad(), zb.grad()), 1e-12);
  // Only the weights used (probs unused), as in the MoE layer without a switch loss.
  auto zc = z.clone().requires_grad_(true);
  auto zd = z.clone().requires_grad_(true);
  (route(zc, c).weights_TS * gw).sum().backward();
  (test::route_reference(zd, c).weights_TS * gw).sum().backward();
  EXPECT_LE(max_abs_diff(zc.grad(), zd.grad()), 1e-12);
}

TEST_P(RoutingBackward, MatchesFiniteDifferencesInDouble) {
  const auto m = GetParam();
  const auto c = config(m.name, m.N, m.K, m.renorm);
  torch::manual_seed(11);
  auto z = torch::randn({4, c.num_routed()}, torch::kFloat64);
  auto gw = torch::randn({4, m.K}, torch::kFloat64);
  auto gp = torch::randn({4, c.num_routed()}, torch::kFloat64);
  auto loss = [&](const torch::Tensor& zz) {
    auto r = route(zz, c);
    return ((r.weights_TS * gw).sum() + (r.probs_TR * gp).sum());
  };
  auto zg = z.clone().requires_grad_(true);
  loss(zg).backward();
  auto numeric = torch::zeros_like(z);
  const double eps = 1e-6;
  for (int64_t i = 0; i < z.numel(); ++i) {
    auto zp = z.clone(), zm = z.clone();
    zp.view(-1)[i] += eps;
    zm.view(-1)[i] -= eps;
    torch::NoGradGuard ng;
    numeric.view(-1)[i] = (loss(zp) - loss(zm)).item<double>() / (2 * eps);
  }
  EXPECT_LE(max_abs_diff(zg.grad(), numeric), 1e-7);
}

INSTANTIATE_TEST_SUITE_P(Modes, RoutingBackward,
                         ::testing::Values(Mode{"xft", 8, 6, false}, Mode{"xft", 4, 2, false},
                                           Mode{"shared_no_norm", 8, 6, false}, Mode{"vanilla", 8, 2, false},
                                           Mode{"vanilla", 8, 3, true}),
                         [](const auto& info) {
                           return info.param.name + "_N" + std::to_string(info.param.N) + "_K" +
                                  std::to_string(info.param.K) + (info.param.renorm ? "_renorm" : "");
                         });

namespace {
// Without noise: router logits carry no noise scale, the load is the hard count.
xft::RouterLogits clean_logits(const torch::Tensor& z) { return {z, z, {}}; }
}  // namespace

TEST(LoadBalancing, Cv2ByHandWithImportanceFromTheRawScores) {
  // Two tokens, R = 3 routed, one routed slot each (N = 4, K = 2), shared expert in slot 0.
  Routing r;
  r.weights_TS = torch::tensor({{0.4, 0.6}, {0.2, 0.8}}, torch::kFloat64);
  r.experts_TS = torch::tensor({{0, 1}, {0, 1}}, torch::kInt64);
  r.probs_TR = torch::tensor({{0.5, 0.3, 0.2}, {0.7, 0.2, 0.1}}, torch::kFloat64);
  auto c = config("xft", 4, 2);
  c.aux_loss = xft::AuxLossKind::kCv2;
  c.aux_loss_coef = 0.5;
  // importance = the raw s of the chosen expert (0.5 + 0.7), not the Eq. 2 weights (0.6 + 0.8):
  // [1.2, 0, 0], mean 0.4, unbiased var = (2 * 0.4^2 + 0.8^2) / 2
  const double mi = 1.2 / 3, vi = (2 * mi * mi + (1.2 - mi) * (1.2 - mi)) / 2;
  // load = [2, 0, 0]: same shape of numbers
  const double ml = 2.0 / 3, vl = (2 * ml * ml + (2 - ml) * (2 - ml)) / 2;
  const double want = 0.5 * (vi / (mi * mi + 1e-10) + vl / (ml * ml + 1e-10));
  EXPECT_NEAR(load_balancing_loss(r, clean_logits(r.probs_TR.log()), c).item<double>(), want, 1e-9);
}

namespace {
// The reference's noisy load, transcribed loop by loop in double precision.
torch::Tensor load_by_hand(const torch::Tensor& clean, const torch::Tensor& noisy, const torch::Tensor& scale,
                           int64_t k, bool compare_noise) {
  const int64_t T = clean.size(0), R = clean.size(1);
  auto load = torch::zeros({R}, torch::kFloat64);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> row;
    for (int64_t i = 0; i < R; ++i) row.push_back(noisy[t][i].item<double>());
    std::sort(row.begin(), row.end(), std::greater<double>());
    const double thr_in = row[k], thr_out = row[k - 1];
    for (int64_t i = 0; i < R; ++i) {
      const double c = clean[t][i].item<double>(), n = noisy[t][i].item<double>(), s = scale[t][i].item<double>();
      const bool in = (compare_noise ? n - c : n) > thr_in;
      const double z = (c - (in ? thr_in : thr_out)) / s;
      load[i] += 0.5 * std::erfc(-z / std::sqrt(2.0));
    }
  }
  return load;
}
}  // namespace

TEST(LoadBalancing, NoisyLoadEqualsTheFormulaAndItsGradientTheFiniteDifferences) {
  torch::manual_seed(11);
  const int64_t T = 9, R = 7, k = 3;
  auto clean = torch::randn({T, R}, torch::kFloat64);
  auto scale = torch::rand({T, R}, torch::kFloat64) + 0.2;
  auto noisy = clean + torch::randn({T, R}, torch::kFloat64) * scale;
  for (auto rule : {xft::LoadEstimate::kShazeer, xft::LoadEstimate::kReference}) {
    const bool ref = rule == xft::LoadEstimate::kReference;
    EXPECT_LE(
        max_abs_diff(xft::noisy_topk_load(clean, noisy, scale, k, rule), load_by_hand(clean, noisy, scale, k, ref)),
        1e-12);
    // d(sum_i w_i load_i) / d(clean, scale) by autograd against central differences (the
    // noisy logits, hence the thresholds and the in/out choice, held fixed).
    auto w = torch::randn({R}, torch::kFloat64);
    auto c = clean.clone().requires_grad_(true), s = scale.clone().requires_grad_(true);
    (xft::noisy_topk_load(c, noisy, s, k, rule) * w).sum().backward();
    const double eps = 1e-6;
    for (auto* which : {&c, &s}) {
      auto base = which == &c ? clean : scale;
      auto numeric = torch::zeros_like(base);
      for (int64_t i = 0; i < base.numel(); ++i) {
        auto plus = base.clone(), minus = base.clone();
        plus.view(-1)[i] += eps;
        minus.view(-1)[i] -= eps;
        auto f = [&](const torch::Tensor& v) {
          return (which == &c ? xft::noisy_topk_load(v, noisy, scale, k, rule)
                              : xft::noisy_topk_load(clean, noisy, v, k, rule)) *
                 w;
        };
        numeric.view(-1)[i] = (f(plus) - f(minus)).sum().item<double>() / (2 * eps);
      }
      EXPECT_LE(max_abs_diff(which->grad(), numeric), 1e-7) << (ref ? "reference" : "shazeer");
    }
  }
  // The two rules differ where the noise alone and the noisy logit fall on different sides.
  EXPECT_GT(max_abs_diff(xft::noisy_topk_load(clean, noisy, scale, k, xft::LoadEstimate::kShazeer),
                         xft::noisy_topk_load(clean, noisy, scale, k, xft::LoadEstimate::kReference)),
            1e-3);
}

TEST(LoadBalancing, NoisyGatingUsesTheSmoothLoadAndTrainsTheNoiseWeights) {
  torch::manual_seed(5);
  auto c = config("xft", 8, 4);
  c.router_noise = true;
  c.aux_loss = xft::AuxLossKind::kCv2;
  xft::MoeLayer layer(16, 24, c);
  layer->train();
  EXPECT_GT(layer->router->noise_weight.abs().sum().item<double>(), 0.0);  // N(0, std), not zeros
  torch::manual_seed(9);
  auto x = torch::randn({32, 16});
  auto out = layer->forward(x);
  ASSERT_TRUE(out.aux_loss.defined());
  out.aux_loss.backward();
  // Only the smooth load reaches the noise weights (hard counts have no gradient).
  ASSERT_TRUE(layer->router->noise_weight.grad().defined());
  EXPECT_GT(layer->router->noise_weight.grad().abs().sum().item<double>(), 0.0);
  // The same loss by hand from the same draw: replay the RNG.
  torch::manual_seed(9);
  auto x2 = torch::randn({32, 16});
  auto logits = layer->router->forward(x2);
  auto r = route(logits.noisy_TR, c);
  auto e_TK = r.experts_TS.narrow(1, 1, 3) - 1;
  auto importance = torch::zeros({7}).scatter_add(0, e_TK.reshape(-1), r.probs_TR.gather(1, e_TK).reshape(-1));
  auto load = xft::noisy_topk_load(logits.clean_TR, logits.noisy_TR, logits.noise_scale_TR, 3, c.load_estimate);
  const double want = c.aux_loss_coef * (xft::cv_squared(importance) + xft::cv_squared(load)).item<double>();
  EXPECT_NEAR(xft::load_balancing_loss(r, logits, c).item<double>(), want, 1e-6);
}

TEST(LoadBalancing, SwitchByHand) {
  Routing r;
  r.weights_TS = torch::tensor({{0.4, 0.6}, {0.2, 0.8}}, torch::kFloat64);
  r.experts_TS = torch::tensor({{0, 1}, {0, 3}}, torch::kInt64);
  r.probs_TR = torch::tensor({{0.6, 0.3, 0.1}, {0.2, 0.2, 0.6}}, torch::kFloat64);
  auto c = config("xft", 4, 2);
  c.aux_loss = xft::AuxLossKind::kSwitch;
  c.aux_loss_coef = 1.0;
  // f = [0.5, 0, 0.5], P = [0.4, 0.25, 0.35]: 3 * (0.2 + 0.175)
  EXPECT_NEAR(load_balancing_loss(r, clean_logits(r.probs_TR.log()), c).item<double>(), 3 * (0.5 * 0.4 + 0.5 * 0.35),
              1e-12);
  c.aux_loss = xft::AuxLossKind::kNone;
  EXPECT_FALSE(load_balancing_loss(r, clean_logits(r.probs_TR.log()), c).defined());
}
