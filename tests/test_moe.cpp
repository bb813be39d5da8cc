// The MoE layer and the upcycler (paper 3.1): dropless dispatch against the naive every-expert
// reference, the upcycled model computing the dense function (Eq. 2's normalisation), the
// upcycle command on a transformers-made checkpoint, and bad input.
#include <filesystem>
#include <fstream>

#include "moe_reference.h"
#include "test_util.h"
#include "xft/methods/upcycle.h"
#include "xft/model/model_io.h"
#include "xft/moe/moe_layer.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::expect_error;
using xft::test::max_abs_diff;

namespace {

MoeConfig moe_config(int64_t N, int64_t K, const std::string& routing = "xft", const std::string& router = "linear",
                     bool noise = false) {
  MoeConfig c;
  c.num_experts = N;
  c.top_k = K;
  c.routing = xft::test::routing_mode(routing);
  c.shared_expert = routing_has_shared_expert(c.routing);
  c.router = xft::test::router_kind(router);
  c.router_noise = noise;
  return c;
}

ModelConfig tiny_dense() {
  return ModelConfig::from_json({{"model_type", "llama"},
                                 {"vocab_size", 53},
                                 {"hidden_size", 32},
                                 {"intermediate_size", 48},
                                 {"num_hidden_layers", 2},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"rope_theta", 100000.0},
                                 {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}},
                                "tiny");
}

}  // namespace

TEST(Dispatch, DroplessEqualsNaiveReferenceIncludingIdleExperts) {
  torch::manual_seed(5);
  Experts experts(8, 16, 24);
  auto c = moe_config(8, 3);
  auto x = torch::randn({41, 16}, torch::kFloat64);
  experts->to(torch::kFloat64);
  // Skewed logits: experts 5..7 (routed 4..6) never win, so they receive no token.
  auto z = torch::randn({41, 7}, torch::kFloat64);
  z.narrow(1, 4, 3).sub_(100);
  auto r = route(z, c);
  auto counts = r.experts_TS.reshape(-1).bincount({}, 8);
  ASSERT_EQ(counts.narrow(0, 5, 3).sum().item<int64_t>(), 0);

  auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  auto wa = r.weights_TS.detach().clone().requires_grad_(true);
  auto fast = moe_combine(*experts, xa, r.experts_TS, wa);
  auto naive =
      test::moe_combine_naive(*experts, xb, test::dense_routing_matrix({r.weights_TS.detach(), r.experts_TS, {}}, 8));
  EXPECT_LE(max_abs_diff(fast, naive), 1e-12);

  // Gradients too: w.r.t. x, the expert stacks and the routing weights.
  auto g = torch::randn_like(fast);
  auto grads_fast = torch::autograd::grad({(fast * g).sum()}, {xa, experts->gate_proj, experts->down_proj, wa});
  auto wb = r.weights_TS.detach().clone().requires_grad_(true);
  auto naive2 = test::moe_combine_naive(*experts, xb, test::dense_routing_matrix({wb, r.experts_TS, {}}, 8));
  auto grads_naive = torch::autograd::grad({(naive2 * g).sum()}, {xb, experts->gate_proj, experts->down_proj, wb});
  for (size_t i = 0; i < grads_fast.size(); ++i) EXPECT_LE(max_abs_diff(grads_fast[i], grads_naive[i]), 1e-12) << i;
  EXPECT_EQ(grads_fast[1][6].abs().sum().item<double>(), 0.0);  // an idle expert gets zero gradient
}

TEST(Dispatch, Fp32MatchesNaiveToRounding) {
  torch::manual_seed(6);
  Experts experts(6, 32, 40);
  auto r = route(torch::randn({100, 6}), moe_config(6, 3, "vanilla"));
  auto x = torch::randn({100, 32});
  auto fast = moe_combine(*experts, x, r.experts_TS, r.weights_TS);
  auto naive = test::moe_combine_naive(*experts, x, test::dense_routing_matrix(r, 6));
  EXPECT_LE(max_abs_diff(fast, naive), 1e-6);
}

TEST(MoeLayer, SharedExpertPathEqualsNaiveReference) {
  torch::manual_seed(8);
  auto c = moe_config(5, 3, "xft", "mlp");
  MoeLayer layer(16, 24, c);
  layer->to(torch::kFloat64);
  layer->eval();
  auto x = torch::randn({3, 7, 16}, torch::kFloat64);
  auto y = layer->forward(x).y;
  auto x_TD = x.reshape({-1, 16});
  auto r = route(layer->router->forward(x_TD).noisy_TR.to(torch::kFloat64), c);
  auto want = test::moe_combine_naive(*layer->experts, x_TD, test::dense_routing_matrix(r, 5));
  EXPECT_LE(max_abs_diff(y.reshape({-1, 16}), want), 1e-12);
  EXPECT_EQ(layer->last_expert_counts()[0].item<int64_t>(), 21);  // the shared expert saw every token
}

TEST(MoeLayer, AuxLossOnlyWhileTraining) {
  MoeLayer layer(16, 24, moe_config(5, 3));
  auto x = torch::randn({9, 16});
  layer->train();
  auto out = layer->forward(x);
  ASSERT_TRUE(out.aux_loss.defined());
  EXPECT_GE(out.aux_loss.item<double>(), 0.0);
  out.aux_loss.backward();
  EXPECT_TRUE(layer->router->weight.grad().defined());  // the loss reaches the router through importance
  layer->eval();
  EXPECT_FALSE(layer->forward(x).aux_loss.defined());
}

struct UpcycleCase {
  int64_t N, K;
  std::string router;
  bool noise;
};
void PrintTo(const UpcycleCase& c, std::ostream* os) { *os << "N" << c.N << " K" << c.K << " " << c.router; }
class UpcycleInvariance : public ::testing::TestWithParam<UpcycleCase> {};

// The property that matters most: with routing "xft" the fresh MoE is the dense function.
TEST_P(UpcycleInvariance, XftRoutingReproducesDenseLogits) {
  const auto p = GetParam();
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  dense->init_weights(0.2, 17);
  dense->eval();
  auto moe = upcycle(dense_cfg, model_tensors(*dense), moe_config(p.N, p.K, "xft", p.router, p.noise), 99);
  CausalLM model(moe.config);
  const auto dir = xft::test::scratch_dir("moe");
  save_model_tensors(moe.config, moe.tensors, dir);
  load_weights(*model, TensorDirectory::open(dir));
  model->eval();
  auto ids = torch::randint(0, 53, {3, 19});
  torch::NoGradGuard ng;
  auto want = dense->forward(ids).logits;
  auto got = model->forward(ids).logits;
  EXPECT_LE(max_abs_diff(got, want), 1e-5);
  // The routers are live (not all-zero), so the invariance is not an accident of uniform routing.
  EXPECT_GT(model->layer(0)
                ->mlp->named_parameters()["router." + std::string(p.router == "mlp" ? "w1" : "weight")]
                .abs()
                .sum()
                .item<double>(),
            0.0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, UpcycleInvariance,
                         ::testing::Values(UpcycleCase{8, 6, "linear", false}, UpcycleCase{4, 2, "linear", false},
                                           UpcycleCase{8, 2, "mlp", false}, UpcycleCase{16, 5, "linear", true},
                                           UpcycleCase{3, 3, "mlp", true}),
                         [](const auto& info) {
                           return "N" + std::to_string(info.param.N) + "_K" + std::to_string(info.param.K) + "_" +
                                  info.param.router + (info.param.noise ? "_noise" : "");
                         });

// Largest logit difference between a random dense model and its fresh upcycle under `moe`.
double upcycle_gap(const MoeConfig& moe_cfg, const std::string& name) {
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  dense->init_weights(0.2, 17);
  dense->eval();
  auto moe = upcycle(dense_cfg, model_tensors(*dense), moe_cfg, 99);
  CausalLM model(moe.config);
  const auto dir = xft::test::scratch_dir(name);
  save_model_tensors(moe.config, moe.tensors, dir);
  load_weights(*model, TensorDirectory::open(dir));
  model->eval();
  auto ids = torch::randint(0, 53, {2, 11});
  torch::NoGradGuard ng;
  return max_abs_diff(model->forward(ids).logits, dense->forward(ids).logits);
}

TEST(Upcycle, SharedNoNormBreaksTheInvariance) {
  EXPECT_GT(upcycle_gap(moe_config(8, 6, "shared_no_norm"), "nonorm"), 1e-3);
}

// Table 4's "- Shared Expert" as the reference ran it: top-K over all N, renormalised (a softmax
// over the top-K logits), so the fresh MoE is the dense model; the raw Eq. 1 scores are not.
TEST(Upcycle, VanillaRenormalisedReproducesTheDenseModelAndRawEq1DoesNot) {
  auto renorm = moe_config(8, 2, "vanilla");
  EXPECT_TRUE(renorm.vanilla_renormalize);  // the default
  EXPECT_LE(upcycle_gap(renorm, "vanilla"), 1e-5);
  auto raw = renorm;
  raw.vanilla_renormalize = false;
  EXPECT_GT(upcycle_gap(raw, "vanilla_raw"), 1e-3);
}

TEST(Upcycle, ExpertsCopyTheDenseFfnAndRoutersAreNormal) {
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  dense->init_weights(0.2, 3);
  auto in = model_tensors(*dense);
  auto moe = upcycle(dense_cfg, in, moe_config(8, 6), 5);
  std::map<std::string, torch::Tensor> m(moe.tensors.begin(), moe.tensors.end());
  auto dense_gate = dense->named_parameters()["model.layers.1.mlp.gate_proj.weight"];
  auto stacked = m.at("model.layers.1.mlp.experts.gate_proj");
  ASSERT_EQ(stacked.sizes(), (std::vector<int64_t>{8, 48, 32}));
  for (int64_t e = 0; e < 8; ++e) EXPECT_TRUE(torch::equal(stacked[e], dense_gate));
  EXPECT_EQ(m.at("model.layers.0.mlp.experts.down_proj").sizes(), (std::vector<int64_t>{8, 32, 48}));
  EXPECT_TRUE(torch::equal(m.at("model.embed_tokens.weight"), dense->named_parameters()["model.embed_tokens.weight"]));
  auto router = torch::cat(
      {m.at("model.layers.0.mlp.router.weight").flatten(), m.at("model.layers.1.mlp.router.weight").flatten()});
  EXPECT_NEAR(router.std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(router.mean().item<double>(), 0.0, 0.002);
  EXPECT_EQ(m.count("model.layers.0.mlp.gate_proj.weight"), 0u);
  // Same seed, same routers; another seed, other routers.
  auto again = upcycle(dense_cfg, in, moe_config(8, 6), 5);
  auto other = upcycle(dense_cfg, in, moe_config(8, 6), 6);
  std::map<std::string, torch::Tensor> a(again.tensors.begin(), again.tensors.end()),
      o(other.tensors.begin(), other.tensors.end());
  EXPECT_TRUE(torch::equal(a.at("model.layers.0.mlp.router.weight"), m.at("model.layers.0.mlp.router.weight")));
  EXPECT_FALSE(torch::equal(o.at("model.layers.0.mlp.router.weight"), m.at("model.layers.0.mlp.router.weight")));
}

TEST(Upcycle, BadMoeShapesAreErrors) {
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  auto in = model_tensors(*dense);
  expect_error([&] { upcycle(dense_cfg, in, moe_config(4, 6), 0); }, {"top_k (6) exceeds", "num_experts (4)"});
  expect_error([&] { upcycle(dense_cfg, in, moe_config(8, 1), 0); }, {"top_k must be >= 2 with a shared expert"});
  expect_error([&] { upcycle(dense_cfg, in, moe_config(1, 1, "vanilla"), 0); }, {"num_experts must be >= 2"});
  NamedTensors no_up;
  for (const auto& [n, t] : in)
    if (n != "model.layers.1.mlp.up_proj.weight") no_up.emplace_back(n, t);
  expect_error([&] { upcycle(dense_cfg, no_up, moe_config(8, 6), 0); }, {"model.layers.1.mlp.up_proj.weight"});
}

TEST(Upcycle, MoeConfigWithoutDenseFieldsIsAnError) {
  const auto dir = xft::test::scratch_dir("cfg");
  std::ofstream(dir + "/config.json") << R"({"model_type": "llama", "moe": {"num_experts": 8, "top_k": 6}})";
  expect_error([&] { ModelConfig::load(dir); }, {"config.json", "missing required field", "vocab_size"});
  std::ofstream(dir + "/config.json") << tiny_dense().to_json().dump().substr(0,
                                                                              tiny_dense().to_json().dump().size() - 1)
                                      << R"(, "moe": {"num_experts": 8})"
                                      << "}";
  expect_error([&] { ModelConfig::load(dir); }, {"config.json", "moe.top_k", "required"});
}

TEST(Upcycle, CommandOnTransformersCheckpoint) {
  const auto tool = xft::test::env_or_empty("XFT_TOOL");
  const auto dense_dir = xft::test::fixture("gqa") + "/model";
  const auto out = xft::test::scratch_dir("cmd") + "/moe";
  ASSERT_EQ(xft::test::run(tool + " upcycle --model " + dense_dir + " --out " + out +
                           " --experts 8 --top-k 6 --routing xft --router mlp --seed 3 > /dev/null"),
            0);
  auto cfg = ModelConfig::load(out);
  ASSERT_TRUE(cfg.moe.has_value());
  EXPECT_EQ(cfg.moe->num_experts, 8);
  EXPECT_EQ(cfg.moe->router, xft::RouterKind::kMlp);
  EXPECT_DOUBLE_EQ(cfg.rope_theta, ModelConfig::load(dense_dir).rope_theta);
  auto moe = load_model(out);
  auto dense = load_model(dense_dir);
  moe->eval();
  dense->eval();
  auto ids = torch::randint(3, 100, {2, 9});
  torch::NoGradGuard ng;
  EXPECT_LE(max_abs_diff(moe->forward(ids).logits, dense->forward(ids).logits), 1e-5);
  // forward and inspect work on the MoE directory.
  const auto logits = out + "/../logits.safetensors";
  EXPECT_EQ(xft::test::run(tool + " forward --model " + out + " --tokens 5,6,7 --out " + logits + " > /dev/null"), 0);
  EXPECT_EQ(SafetensorsFile::open(logits)->get("logits").sizes(), (std::vector<int64_t>{3, 101}));
  EXPECT_EQ(xft::test::run(tool + " inspect " + out + " > /dev/null"), 0);
  // Bad arguments fail with an error, not a crash.
  EXPECT_NE(
      xft::test::run(tool + " upcycle --model " + dense_dir + " --out " + out + "2 --experts 4 --top-k 6 2> /dev/null"),
      0);
  EXPECT_FALSE(fs::exists(out + "2"));
}

struct StableLmUpcycleCase {
  std::string fixture;
  int64_t N, K;
  std::string router;
};
void PrintTo(const StableLmUpcycleCase& c, std::ostream* os) { *os << c.fixture << " N" << c.N << " K" << c.K; }
class UpcycleStableLm : public ::testing::TestWithParam<StableLmUpcycleCase> {};

// StableLM's FFN is the same SwiGLU: upcycling a transformers-made StableLmForCausalLM (LayerNorm
// biases, qkv bias, partial rotary, qk LayerNorm, parallel residual) gives an MoE computing the
// dense function, which is transformers' function.
TEST_P(UpcycleStableLm, XftRoutingReproducesDenseAndTransformersLogits) {
  const auto p = GetParam();
  const auto fixture = xft::test::fixture(p.fixture);
  const auto out = xft::test::scratch_dir("moe") + "/moe";
  upcycle_directory(fixture + "/model", out, moe_config(p.N, p.K, "xft", p.router), 11);
  auto moe = load_model(out);
  auto dense = load_model(fixture + "/model");
  moe->eval();
  dense->eval();
  EXPECT_EQ(moe->config().architecture, Architecture::kStableLm);
  EXPECT_EQ(read_json_file(out + "/config.json").at("model_type"), "stablelm");
  auto expected = SafetensorsFile::open(fixture + "/expected.safetensors");
  auto ids = expected->get("input_ids");
  torch::NoGradGuard ng;
  auto got = moe->forward(ids).logits;
  EXPECT_LE(max_abs_diff(got, dense->forward(ids).logits), 1e-5);
  EXPECT_LE(max_abs_diff(got, expected->get("logits")), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, UpcycleStableLm,
                         ::testing::Values(StableLmUpcycleCase{"stablelm", 4, 2, "mlp"},
                                           StableLmUpcycleCase{"stablelm_parallel", 8, 6, "linear"},
                                           StableLmUpcycleCase{"stablelm_qk_norm", 5, 3, "mlp"}),
                         [](const auto& info) { return info.param.fixture; });

// upcycle.rope_theta reproduces the authors' MoE (RoPE base 10000 whatever the checkpoint's);
// 0 keeps the base model's, drop_rope_scaling nulls the scaling.
TEST(Upcycle, RopeThetaOverrideAndScalingDrop) {
  auto dense_cfg = tiny_dense();  // rope_theta 100000, linear scaling x4
  CausalLM dense(dense_cfg);
  const auto tensors = model_tensors(*dense);
  auto kept = upcycle(dense_cfg, tensors, moe_config(4, 2), xft::UpcycleConfig{});
  EXPECT_EQ(kept.config.rope_theta, 100000.0);
  EXPECT_EQ(kept.config.rope_scaling.type, "linear");
  xft::UpcycleConfig ref;
  ref.rope_theta = 10000.0;
  ref.drop_rope_scaling = true;
  auto changed = upcycle(dense_cfg, tensors, moe_config(4, 2), ref);
  EXPECT_EQ(changed.config.rope_theta, 10000.0);
  EXPECT_EQ(changed.config.rope_scaling.type, "default");
  EXPECT_EQ(changed.config.to_json()["rope_theta"], 10000.0);
  EXPECT_TRUE(changed.config.to_json()["rope_scaling"].is_null());
  // The merged model inherits it: dense() keeps every field but the MoE section.
  EXPECT_EQ(changed.config.dense().rope_theta, 10000.0);
  // The section's reader rejects nonsense.
  xft::test::expect_error(
      [] {
        xft::UpcycleConfig::from_json({{"rope_theta", -1.0}}, "u.json");
      },
      {"u.json", "upcycle.rope_theta"});
}

// The aux loss and the routing counts cover real tokens only: a padded batch with its token mask
// gives what its real tokens alone give, and counting the padding (no mask) gives something else,
// which is what aux_counts_padding asks for.
TEST(MoeLayer, AuxLossAndCountsIgnorePadding) {
  for (const char* aux : {"cv2", "switch"}) {
    auto c = moe_config(5, 3);
    c.aux_loss = std::string(aux) == "cv2" ? AuxLossKind::kCv2 : AuxLossKind::kSwitch;
    torch::manual_seed(2);
    MoeLayer layer(16, 24, c);
    layer->train();
    auto x = torch::randn({2, 6, 16});
    auto mask = torch::ones({2, 6}, torch::kBool);
    mask[0].narrow(0, 4, 2).fill_(false);
    mask[1].narrow(0, 3, 3).fill_(false);
    const auto real = torch::cat({x[0].narrow(0, 0, 4), x[1].narrow(0, 0, 3)}).unsqueeze(0);
    const auto masked = layer->forward(x, mask);
    const auto masked_counts = layer->last_expert_counts().clone();
    const auto alone = layer->forward(real);
    EXPECT_LE(max_abs_diff(masked.aux_loss, alone.aux_loss), 1e-6) << aux;
    EXPECT_TRUE(torch::equal(masked_counts, layer->last_expert_counts())) << aux;
    EXPECT_EQ(masked_counts.sum().item<int64_t>(), 7 * 3) << aux;
    EXPECT_GT(max_abs_diff(layer->forward(x).aux_loss, alone.aux_loss), 1e-6) << aux;
    // The outputs of the real tokens do not depend on the mask.
    EXPECT_LE(max_abs_diff(masked.y[1].narrow(0, 0, 3), alone.y[0].narrow(0, 4, 3)), 1e-6) << aux;
    // aux_counts_padding (compat "reference"): the mask is ignored for the aux loss and counts,
    // every position counts as in the authors' code.
    auto ref = c;
    ref.aux_counts_padding = true;
    torch::manual_seed(2);
    MoeLayer counting(16, 24, ref);
    counting->train();
    const auto with_pads = counting->forward(x, mask);
    EXPECT_EQ(with_pads.aux_loss.item<double>(), counting->forward(x).aux_loss.item<double>()) << aux;
    EXPECT_EQ(counting->last_expert_counts().sum().item<int64_t>(), 12 * 3) << aux;
    EXPECT_TRUE(torch::equal(with_pads.y, masked.y)) << aux;
  }
}
