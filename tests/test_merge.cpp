// The merge (Eq. 5-6) and its export, EWA's pull and average (paper A.2), fold_experts alone,
// and transformers loading the merged and averaged models.
#include <algorithm>
#include <map>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/methods/ewa.h"
#include "xft/methods/fold_experts.h"
#include "xft/methods/merge.h"
#include "xft/moe/moe_layer.h"
#include "xft/train/trainer.h"

using namespace xft;
using namespace xft::test;

namespace {

// An upcycled StableLM (a transformers-made StableLmForCausalLM fixture) whose experts drifted.
CausalLM stablelm_moe(const std::string& fixture, const std::string& dir) {
  const auto dense_dir = xft::test::fixture(fixture) + "/model";
  auto files = TensorDirectory::open(dense_dir);
  NamedTensors dense;
  for (const auto& n : files.names()) dense.emplace_back(n, files.get(n));
  return xft::test::drifted_moe(upcycle(ModelConfig::load(dense_dir), dense, xft::test::tiny_moe_config(), 2), dir);
}

}  // namespace

TEST(Merge, ExportEqualsEq5AppliedToTheExperts) {
  const auto dir = xft::test::scratch_dir("merge");
  auto model = tiny_moe(dir + "/moe");
  // Keep the experts before attaching (attach keeps references to the same tensors).
  auto moe_layer = std::dynamic_pointer_cast<MoeLayerImpl>(model->layer(1)->mlp);
  auto gate = moe_layer->experts->gate_proj.detach().clone();
  auto down = moe_layer->experts->down_proj.detach().clone();
  MergeConfig mc;
  mc.shared_rate = 0.75;
  auto logits = attach_merge(*model, mc);
  ASSERT_EQ(logits.size(), 2u);
  {
    torch::NoGradGuard ng;
    logits[1].second.copy_(torch::tensor({0.3f, -1.0f, 2.0f, 0.5f}));
  }
  export_merged(*model, dir + "/merged", torch::kFloat32);
  auto files = TensorDirectory::open(dir + "/merged");
  // By hand: alpha = 0.25 * softmax(logits); W = 0.75 W_0 + sum alpha_i W_{i}.
  auto e = torch::exp(torch::tensor({0.3, -1.0, 2.0, 0.5}, torch::kFloat64));
  auto alpha = 0.25 * e / e.sum();
  auto want_gate = 0.75 * gate[0].to(torch::kFloat64);
  auto want_down = 0.75 * down[0].to(torch::kFloat64);
  for (int64_t i = 0; i < 4; ++i) {
    want_gate += alpha[i] * gate[i + 1].to(torch::kFloat64);
    want_down += alpha[i] * down[i + 1].to(torch::kFloat64);
  }
  EXPECT_LE(max_abs_diff(files.get("model.layers.1.mlp.gate_proj.weight"), want_gate), 1e-6);
  EXPECT_LE(max_abs_diff(files.get("model.layers.1.mlp.down_proj.weight"), want_down), 1e-6);
  // Layer 0 kept its uniform initial coefficients: 0.75 and 0.25 / 4 each.
  auto coeffs = merge_coefficients_json(*model, mc);
  EXPECT_NEAR(coeffs["layers"][0][0].get<double>(), 0.75, 1e-7);
  EXPECT_NEAR(coeffs["layers"][0][3].get<double>(), 0.0625, 1e-7);
  EXPECT_NEAR(coeffs["layers"][1][3].get<double>(), alpha[2].item<double>(), 1e-7);
  // The export is a dense checkpoint of the base architecture, rope settings kept.
  auto cfg = ModelConfig::load(dir + "/merged");
  EXPECT_FALSE(cfg.moe.has_value());
  EXPECT_EQ(cfg.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(cfg.rope_theta, 100000.0);
  // The merged model's forward equals the exported dense model's forward.
  auto dense = load_model(dir + "/merged");
  dense->eval();
  model->eval();
  auto ids = torch::randint(0, 61, {2, 9});
  torch::NoGradGuard ng;
  EXPECT_LE(max_abs_diff(model->forward(ids).logits, dense->forward(ids).logits), 1e-5);
}

TEST(Merge, Bf16StacksAreMixedInFp32) {
  const auto dir = xft::test::scratch_dir("bf16");
  auto model = tiny_moe(dir + "/moe");
  auto layer = std::dynamic_pointer_cast<MoeLayerImpl>(model->layer(0)->mlp);
  auto up = layer->experts->up_proj.detach().to(torch::kBFloat16).to(torch::kFloat64);
  auto logits = attach_merge(*model, MergeConfig{}, torch::kBFloat16);
  auto merged = std::dynamic_pointer_cast<MergedFeedForwardImpl>(model->layer(0)->mlp);
  ASSERT_EQ(merged->up_stack.scalar_type(), torch::kBFloat16);
  auto want = 0.75 * up[0];
  for (int64_t i = 1; i < 5; ++i) want += 0.0625 * up[i];
  auto w = merged->merged_weights();
  EXPECT_EQ(w[1].scalar_type(), torch::kFloat32);
  EXPECT_LE(max_abs_diff(w[1], want), 1e-6);
  model->eval();
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::isfinite(model->forward(torch::randint(0, 61, {1, 5})).logits).all().item<bool>());
}

TEST(Merge, LearnedSoupStartsAtTheFixedRatePoint) {
  const auto dir = xft::test::scratch_dir("soup");
  auto model = tiny_moe(dir + "/moe");
  MergeConfig mc;
  mc.fixed_shared_rate = false;
  auto logits = attach_merge(*model, mc);
  EXPECT_EQ(logits[0].second.numel(), 5);
  auto c = merge_coefficients_json(*model, mc)["layers"][0];
  EXPECT_NEAR(c[0].get<double>(), 0.75, 1e-6);
  EXPECT_NEAR(c[4].get<double>(), 0.0625, 1e-6);
}

TEST(Merge, TrainingMovesOnlyTheLogits) {
  const auto dir = xft::test::scratch_dir("mtrain");
  auto model = tiny_moe(dir + "/moe");
  auto data = tiny_data(dir, 24, 1);
  auto before = model_tensors(*model);
  std::map<std::string, torch::Tensor> frozen;
  for (auto& [n, t] : before) frozen[n] = t.clone();
  auto logits = attach_merge(*model, MergeConfig{});
  Trainer trainer("merge", model, logits, data, tiny_train(3), dir + "/run", 0);
  trainer.run(false);
  for (auto& [n, t] : model_tensors(*model)) {
    if (n.find(".logits") != std::string::npos) {
      EXPECT_GT(t.abs().sum().item<double>(), 0.0) << n;
    } else if (frozen.count(n)) {
      EXPECT_TRUE(torch::equal(t, frozen[n])) << n << " changed";
    }
  }
}

TEST(Ewa, PullAndFinalAverageByHand) {
  const auto dir = xft::test::scratch_dir("ewa");
  auto model = tiny_moe(dir + "/moe");
  auto layer = std::dynamic_pointer_cast<MoeLayerImpl>(model->layer(0)->mlp);
  auto W = layer->experts->up_proj.detach().clone().to(torch::kFloat64);
  ewa_pull(*model, 0.3);
  auto mean = W.mean(0);
  for (int64_t i = 0; i < W.size(0); ++i) {
    auto want = 0.3 * mean + 0.7 * W[i];
    EXPECT_LE(max_abs_diff(layer->experts->up_proj[i], want), 1e-6) << i;
  }
  auto after = layer->experts->up_proj.detach().clone().to(torch::kFloat64);
  export_averaged(*model, dir + "/avg", torch::kFloat32);
  auto files = TensorDirectory::open(dir + "/avg");
  EXPECT_LE(max_abs_diff(files.get("model.layers.0.mlp.up_proj.weight"), after.mean(0)), 1e-6);
  EXPECT_FALSE(ModelConfig::load(dir + "/avg").moe.has_value());
  EwaConfig lin;
  lin.schedule = xft::EwaSchedule::kLinear;
  EXPECT_DOUBLE_EQ(ewa_beta(lin, 5, 10), 0.15);
  EXPECT_DOUBLE_EQ(ewa_beta(EwaConfig{}, 5, 10), 0.3);
}

TEST(Export, TransformersLoadsMergedAndAveragedModelsWithSameLogits) {
  const auto dir = xft::test::scratch_dir("hf");
  auto model = tiny_moe(dir + "/moe");
  auto logits = attach_merge(*model, MergeConfig{});
  {
    torch::NoGradGuard ng;
    logits[0].second.copy_(torch::tensor({1.0f, -0.5f, 0.2f, 0.0f}));
  }
  export_merged(*model, dir + "/xft", torch::kFloat32);
  auto ewa_model = tiny_moe(dir + "/moe2");
  export_averaged(*ewa_model, dir + "/ewa", torch::kFloat32);
  const auto py = xft::test::env_or_empty("XFT_PYTHON"), src = xft::test::env_or_empty("XFT_SOURCE_DIR");
  for (const auto* name : {"xft", "ewa"}) {
    auto m = load_model(dir + "/" + name);
    m->eval();
    auto ids = torch::randint(0, 61, {2, 7});
    torch::NoGradGuard ng;
    save_safetensors(dir + "/" + name + ".safetensors", {{"input_ids", ids}, {"logits", m->forward(ids).logits}});
    EXPECT_EQ(xft::test::run(py + " " + src + "/tests/python/check_hf_load.py " + dir + "/" + name + " " + dir + "/" +
                             name + ".safetensors 1e-4"),
              0)
        << name;
  }
}

class ExportStableLm : public ::testing::TestWithParam<std::string> {};

// Upcycle -> merge -> export on StableLM: the dense checkpoint is a StableLmForCausalLM that
// transformers loads exactly, with the merged model's logits; EWA's average too.
TEST_P(ExportStableLm, MergedAndAveragedModelsLoadInTransformersAsStableLm) {
  const auto dir = xft::test::scratch_dir("stablelm");
  auto model = stablelm_moe(GetParam(), dir + "/moe");
  MergeConfig mc;
  mc.shared_rate = 0.85;  // StableCode's lambda (paper A.8)
  auto logits = attach_merge(*model, mc);
  {
    torch::NoGradGuard ng;
    logits[1].second.copy_(torch::tensor({1.0f, -0.5f, 0.2f, 0.0f}));
  }
  export_merged(*model, dir + "/xft", torch::kFloat32);
  auto dense = load_model(dir + "/xft");
  EXPECT_EQ(dense->config().architecture, Architecture::kStableLm);
  EXPECT_FALSE(dense->config().moe.has_value());
  model->eval();
  dense->eval();
  auto ids = torch::randint(3, 101, {2, 9});
  torch::NoGradGuard ng;
  auto merged = model->forward(ids).logits;
  EXPECT_LE(max_abs_diff(dense->forward(ids).logits, merged), 1e-5);
  EXPECT_EQ(xft::test::check_hf_load(dir + "/xft", ids, merged, "StableLmForCausalLM", dir), 0);

  auto ewa_model = stablelm_moe(GetParam(), dir + "/moe2");
  export_averaged(*ewa_model, dir + "/ewa", torch::kFloat32);
  auto averaged = load_model(dir + "/ewa");
  averaged->eval();
  EXPECT_EQ(xft::test::check_hf_load(dir + "/ewa", ids, averaged->forward(ids).logits, "StableLmForCausalLM", dir), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExportStableLm, ::testing::Values("stablelm", "stablelm_parallel"),
                         [](const auto& info) { return std::string(info.param); });

// fold_experts alone, without training: W = sum_i c_i W_i per layer (Eq. 5), by hand in fp64.
TEST(FoldExperts, MixesEveryLayersStacksByItsCoefficientsAndDropsTheRouters) {
  torch::manual_seed(3);
  const int64_t N = 3, D = 4, F = 5;
  xft::NamedTensors moe = {{"model.embed_tokens.weight", torch::randn({7, D})}};
  std::vector<std::vector<torch::Tensor>> stacks(2);
  for (int64_t l = 0; l < 2; ++l) {
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      auto s = std::string(proj) == "down_proj" ? torch::randn({N, D, F}) : torch::randn({N, F, D});
      stacks[l].push_back(s);
      moe.emplace_back("model.layers." + std::to_string(l) + ".mlp.experts." + proj, s);
    }
    moe.emplace_back("model.layers." + std::to_string(l) + ".mlp.router.weight", torch::randn({N - 1, D}));
    moe.emplace_back("model.layers." + std::to_string(l) + ".self_attn.q_proj.weight", torch::randn({D, D}));
  }
  const auto c = torch::tensor({{0.75, 0.2, 0.05}, {0.5, 0.25, 0.25}}, torch::kFloat64);
  const auto out = xft::fold_experts(moe, c);
  std::map<std::string, torch::Tensor> by_name(out.begin(), out.end());
  EXPECT_EQ(by_name.count("model.layers.0.mlp.router.weight"), 0u);
  EXPECT_TRUE(by_name.at("model.embed_tokens.weight").equal(moe[0].second));
  EXPECT_TRUE(by_name.at("model.layers.1.self_attn.q_proj.weight").defined());
  const char* names[] = {"gate_proj", "up_proj", "down_proj"};
  for (int64_t l = 0; l < 2; ++l)
    for (int p = 0; p < 3; ++p) {
      auto want = torch::zeros_like(stacks[l][p][0], torch::kFloat64);
      for (int64_t i = 0; i < N; ++i) want += c[l][i].item<double>() * stacks[l][p][i].to(torch::kFloat64);
      const auto& got = by_name.at("model.layers." + std::to_string(l) + ".mlp." + names[p] + ".weight");
      EXPECT_EQ(got.sizes(), stacks[l][p][0].sizes());
      EXPECT_LE(max_abs_diff(got, want), 1e-6) << l << " " << names[p];
    }
  // One row for every layer: EWA's uniform average is the experts' mean.
  const auto avg = xft::fold_experts(moe, torch::full({N}, 1.0 / N, torch::kFloat64));
  std::map<std::string, torch::Tensor> avg_by_name(avg.begin(), avg.end());
  EXPECT_LE(max_abs_diff(avg_by_name.at("model.layers.1.mlp.up_proj.weight"), stacks[1][1].to(torch::kFloat64).mean(0)),
            1e-6);
  // Clear errors: coefficients that do not match the stacks, a layer without its stack.
  xft::test::expect_error(
      [&] {
        xft::fold_experts(moe, torch::ones({2, 4}));
      },
      {"model.layers.0.mlp.experts.gate_proj", "4 coefficients"});
  xft::test::expect_error([&] { xft::fold_experts(moe, torch::ones({3, 3})); }, {"3 rows", "2 layers"});
  auto missing = moe;
  missing.erase(std::remove_if(missing.begin(), missing.end(),
                               [](const auto& nt) { return nt.first == "model.layers.1.mlp.experts.down_proj"; }),
                missing.end());
  xft::test::expect_error([&] { xft::fold_experts(missing, c); },
                          {"missing tensor 'model.layers.1.mlp.experts.down_proj'"});
}

// Table 12's endpoints: lambda = 1 exports the shared expert itself, lambda = 0 ignores it.
TEST(Merge, SharedRateEndpointsExportTheSharedExpertOrIgnoreIt) {
  const auto dir = xft::test::scratch_dir("lambda");
  for (double lambda : {1.0, 0.0}) {
    auto model = tiny_moe(dir + "/moe" + std::to_string(static_cast<int>(lambda)));
    auto layer = std::dynamic_pointer_cast<MoeLayerImpl>(model->layer(0)->mlp);
    auto up = layer->experts->up_proj.detach().clone().to(torch::kFloat64);
    MergeConfig mc;
    mc.shared_rate = lambda;
    auto logits = attach_merge(*model, mc);
    {
      torch::NoGradGuard ng;
      logits[0].second.copy_(torch::tensor({0.3f, -1.0f, 2.0f, 0.5f}));
    }
    export_merged(*model, dir + "/out", torch::kFloat32);
    auto got = TensorDirectory::open(dir + "/out").get("model.layers.0.mlp.up_proj.weight").to(torch::kFloat64);
    const auto alpha = torch::softmax(torch::tensor({0.3, -1.0, 2.0, 0.5}, torch::kFloat64), 0);
    auto want = lambda * up[0];
    for (int64_t i = 1; i < up.size(0); ++i) want = want + (1.0 - lambda) * alpha[i - 1].item<double>() * up[i];
    EXPECT_LE(max_abs_diff(got, want), 1e-6) << lambda;
    if (lambda == 1.0) {
      EXPECT_LE(max_abs_diff(got, up[0]), 1e-6);
    }
  }
  MergeConfig bad;
  bad.shared_rate = 1.5;
  xft::test::expect_error([&] { bad.validate("m.json"); }, {"m.json", "shared_rate", "[0, 1]"});
  bad.shared_rate = 1.0;
  bad.fixed_shared_rate = false;
  xft::test::expect_error([&] { bad.validate("m.json"); }, {"m.json", "(0, 1)"});
}
