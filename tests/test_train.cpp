// Training: the merge (Eq. 5-6) and its export, EWA's averaging, exact resume on CPU, the NaN
// stop, transformers loading what the pipelines export, and the memory and speed paths
// (activation checkpointing, sequence packing, sdpa's unmasked path) against the plain ones.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/data/batcher.h"
#include "xft/data/packing.h"
#include "xft/methods/ewa.h"
#include "xft/methods/fold_experts.h"
#include "xft/methods/merge.h"
#include "xft/moe/moe_layer.h"
#include "xft/train/memory_plan.h"
#include "xft/train/trainer.h"
#include "xft/methods/upcycle.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::max_abs_diff;
using xft::test::losses;
using xft::test::tiny_data;
using xft::test::tiny_dense;
using xft::test::tiny_train;

namespace {

MoeConfig moe_config(bool noise = false) {
  MoeConfig m;
  m.num_experts = 5;
  m.top_k = 3;
  m.router_noise = noise;
  return m;
}

// A tiny upcycled MoE whose experts have drifted apart (as after MoE training).
CausalLM tiny_moe(const std::string& dir, bool noise = false) {
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  dense->init_weights(0.1, 1);
  auto moe = upcycle(dense_cfg, model_tensors(*dense), moe_config(noise), 2);
  torch::manual_seed(3);
  for (auto& [n, t] : moe.tensors)
    if (n.find(".experts.") != std::string::npos) t = t + 0.05 * torch::randn_like(t);
  save_model_tensors(moe.config, moe.tensors, dir);
  return load_model(dir);
}

// An upcycled StableLM (a transformers-made StableLmForCausalLM fixture) whose experts drifted.
CausalLM stablelm_moe(const std::string& fixture, const std::string& dir) {
  const auto dense_dir = xft::test::fixture(fixture) + "/model";
  auto files = TensorDirectory::open(dense_dir);
  NamedTensors dense;
  for (const auto& n : files.names()) dense.emplace_back(n, files.get(n));
  auto moe = upcycle(ModelConfig::load(dense_dir), dense, moe_config(), 2);
  torch::manual_seed(3);
  for (auto& [n, t] : moe.tensors)
    if (n.find(".experts.") != std::string::npos) t = t + 0.05 * torch::randn_like(t);
  save_model_tensors(moe.config, moe.tensors, dir);
  return load_model(dir);
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

// A run interrupted after a checkpoint and resumed reproduces the uninterrupted loss curve and
// parameters exactly (noisy routing included, so the RNG state must come back too).
TEST(Trainer, ResumeReproducesTheUninterruptedRunExactly) {
  const auto dir = xft::test::scratch_dir("resume");
  tiny_moe(dir + "/moe", /*noise=*/true);
  auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(7);
  cfg.save_every = 2;

  auto a = load_model(dir + "/moe");
  Trainer(" run", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);

  auto b = load_model(dir + "/moe");
  Trainer crashing(" run", b, model_tensors(*b), data, cfg, dir + "/b", 0);
  crashing.set_after_step([](int64_t step, int64_t) {
    if (step == 5) throw std::runtime_error("simulated crash");
  });
  EXPECT_THROW(crashing.run(false), std::runtime_error);
  ASSERT_TRUE(fs::exists(dir + "/b/checkpoints/step-00000004"));
  // Without --resume an existing run is not overwritten.
  auto c = load_model(dir + "/moe");
  xft::test::expect_error([&] { Trainer(" run", c, model_tensors(*c), data, cfg, dir + "/b", 0).run(false); },
                          {"--resume"});
  Trainer(" run", c, model_tensors(*c), data, cfg, dir + "/b", 0).run(true);

  auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  ASSERT_EQ(la.size(), 7u);
  ASSERT_EQ(lb.size(), 7u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  auto pa = model_tensors(*a), pc = model_tensors(*c);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pc[i].second)) << pa[i].first;
  // keep_last = 2: only the newest two checkpoints remain.
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir + "/a/checkpoints")) ++n;
  EXPECT_EQ(n, 2);
}

TEST(Trainer, NanLossStopsWithStepAndBatchNamedAndCheckpointIntact) {
  const auto dir = xft::test::scratch_dir("nan");
  auto model = CausalLM(tiny_dense());
  model->init_weights(0.05, 4);
  auto data = tiny_data(dir, 16, 3);
  auto cfg = tiny_train(4);
  cfg.save_every = 1;
  Trainer trainer("sft", model, model_tensors(*model), data, cfg, dir + "/run", 0);
  trainer.set_after_step([&](int64_t step, int64_t) {
    if (step == 2) {
      torch::NoGradGuard ng;
      model->model->norm->weight.fill_(std::numeric_limits<float>::quiet_NaN());
    }
  });
  xft::test::expect_error([&] { trainer.run(false); }, {"sft", "nan", "step 3", "examples", "intact"});
  // The last good checkpoint (step 2 was saved after the hook: its norm is NaN; step 1 is clean)
  // is whole and readable.
  auto ck = SafetensorsFile::open(dir + "/run/checkpoints/step-00000001/trainable.safetensors");
  EXPECT_TRUE(torch::isfinite(ck->get("model.norm.weight")).all().item<bool>());
  EXPECT_FALSE(fs::exists(dir + "/run/checkpoints/step-00000003"));
}

TEST(Trainer, GradientAccumulationMatchesOneBigBatch) {
  const auto dir = xft::test::scratch_dir("accum");
  auto data = tiny_data(dir, 16, 5);
  auto m1 = CausalLM(tiny_dense());
  m1->init_weights(0.05, 4);
  save_model(*m1, dir + "/init");
  auto a = load_model(dir + "/init"), b = load_model(dir + "/init");
  auto ca = tiny_train(2), cb = tiny_train(2);
  ca.micro_batch = 8;
  cb.micro_batch = 2;
  Trainer("sft", a, model_tensors(*a), data, ca, dir + "/a", 0).run(false);
  Trainer("sft", b, model_tensors(*b), data, cb, dir + "/b", 0).run(false);
  auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-5);
  auto pa = model_tensors(*a), pb = model_tensors(*b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_LE(max_abs_diff(pa[i].second, pb[i].second), 1e-5) << pa[i].first;
}

TEST(Trainer, LossMasksPromptAndPadding) {
  // Two positions predict labels 5 and 6; everything else is -100.
  auto logits = torch::zeros({1, 4, 8});
  logits[0][1][5] = 2.0;
  auto labels = torch::tensor({{-100, -100, 5, 6}}, torch::kInt64);
  auto [sum, n] = language_model_loss(logits, labels);
  EXPECT_EQ(n, 2);
  const double l1 = -std::log(std::exp(2.0) / (std::exp(2.0) + 7));  // position 1 -> label 5
  const double l2 = std::log(8.0);                                   // position 2 -> label 6, uniform
  EXPECT_NEAR(sum.item<double>(), l1 + l2, 1e-5);
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
  EXPECT_LE(max_abs_diff(avg_by_name.at("model.layers.1.mlp.up_proj.weight"), stacks[1][1].to(torch::kFloat64).mean(0)), 1e-6);
  // Clear errors: coefficients that do not match the stacks, a layer without its stack.
  xft::test::expect_error([&] { xft::fold_experts(moe, torch::ones({2, 4})); }, {"model.layers.0.mlp.experts.gate_proj", "4 coefficients"});
  xft::test::expect_error([&] { xft::fold_experts(moe, torch::ones({3, 3})); }, {"3 rows", "2 layers"});
  auto missing = moe;
  missing.erase(std::remove_if(missing.begin(), missing.end(),
                               [](const auto& nt) { return nt.first == "model.layers.1.mlp.experts.down_proj"; }),
                missing.end());
  xft::test::expect_error([&] { xft::fold_experts(missing, c); }, {"missing tensor 'model.layers.1.mlp.experts.down_proj'"});
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

// loss_reduction: the first step's loss (before any update) by hand from the sampler's order:
// "token" = all response tokens' mean, "micro_batch" = the mean of each micro-batch's token mean.
TEST(Trainer, LossReductionTokenAndMicroBatchByHand) {
  const auto dir = xft::test::scratch_dir("reduction");
  auto data = tiny_data(dir, 8, 9);
  auto init = CausalLM(tiny_dense());
  init->init_weights(0.05, 4);
  save_model(*init, dir + "/init");
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < data.size(); ++i) lengths.push_back(static_cast<int64_t>(data[i].input_ids.size()));
  auto t = tiny_train(1);
  t.micro_batch = 2;
  const auto order = BatchSampler(lengths, t.global_batch, t.seed, false, false).next();
  double sum = 0.0, mean_of_means = 0.0;
  int64_t tokens = 0;
  {
    torch::NoGradGuard ng;
    for (size_t m = 0; m < order.size(); m += 2) {
      auto b = collate(data, {order[m], order[m + 1]}, 0);
      auto [s, n] = language_model_loss(init->forward(b.input_ids, b.attention_mask).logits, b.labels);
      sum += s.item<double>();
      tokens += n;
      mean_of_means += s.item<double>() / n / 4.0;
    }
  }
  EXPECT_GT(std::abs(sum / tokens - mean_of_means), 1e-4);  // the two rules differ on these lengths
  for (auto mode : {xft::LossReduction::kToken, xft::LossReduction::kMicroBatch}) {
    auto model = load_model(dir + "/init");
    t.loss_reduction = mode;
    const auto out = dir + (mode == xft::LossReduction::kToken ? "/token" : "/micro");
    Trainer("sft", model, model_tensors(*model), data, t, out, 0).run(false);
    const double want = mode == xft::LossReduction::kToken ? sum / tokens : mean_of_means;
    EXPECT_NEAR(losses(out + "/metrics.jsonl").at(0), want, 1e-5) << xft::to_string(mode);
  }
}

namespace {

// One forward and backward of a training step's loss (token cross-entropy sum + aux) on `b`;
// returns the loss and every parameter gradient (cleared afterwards).
std::pair<torch::Tensor, std::vector<torch::Tensor>> loss_and_grads(CausalLMImpl& model, const Batch& b,
                                                                    bool with_mask = true) {
  auto out = model.forward(b.input_ids, with_mask ? b.attention_mask : torch::Tensor(), b.position_ids);
  auto loss = cross_entropy_sum(out.logits, b.labels);
  if (out.aux_loss.defined()) loss = loss + out.aux_loss;
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    p.mutable_grad() = torch::Tensor();
  }
  return {loss.detach(), grads};
}

// Checkpointed and plain runs of the same step from the same generator state: bitwise the same
// loss, gradients, and generator state afterwards (noisy routing draws its noise in both
// forwards of the checkpointed run).
void expect_checkpointing_is_exact(CausalLMImpl& model, const Batch& b, const std::string& what) {
  model.train();
  torch::manual_seed(11);
  model.set_activation_checkpointing(false);
  auto [want_loss, want] = loss_and_grads(model, b);
  const auto want_next = torch::randn({4});
  torch::manual_seed(11);
  model.set_activation_checkpointing(true);
  auto [loss, got] = loss_and_grads(model, b);
  const auto next = torch::randn({4});
  model.set_activation_checkpointing(false);
  EXPECT_TRUE(torch::equal(loss, want_loss)) << what << ": " << loss.item<double>() << " vs " << want_loss.item<double>();
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t with_grad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].defined(), want[i].defined()) << what << " parameter " << i;
    if (!got[i].defined()) continue;
    ++with_grad;
    EXPECT_TRUE(torch::equal(got[i], want[i])) << what << " parameter " << i << ": " << max_abs_diff(got[i], want[i]);
  }
  EXPECT_GT(with_grad, 0u) << what;
  EXPECT_TRUE(torch::equal(next, want_next)) << what << ": the generator did not come back to its state";
}

}  // namespace

TEST(ActivationCheckpointing, SameLossAndGradientsBitwiseForDenseMoeAndMerge) {
  const auto dir = xft::test::scratch_dir("ckpt");
  auto data = tiny_data(dir, 6, 21);
  const auto b = collate(data, {0, 1, 2, 3, 4, 5}, 0);
  auto dense = CausalLM(tiny_dense());
  dense->init_weights(0.05, 4);
  expect_checkpointing_is_exact(*dense, b, "dense");
  auto moe = tiny_moe(dir + "/moe", /*noise=*/true);
  expect_checkpointing_is_exact(*moe, b, "moe with noisy routing");
  auto merged = tiny_moe(dir + "/moe2");
  auto logits = attach_merge(*merged, MergeConfig{});  // only the merge logits train: x needs no grad
  expect_checkpointing_is_exact(*merged, b, "merge");
}

// The trainer's switch: the same loss curve and parameters, bitwise, with noisy routing.
TEST(ActivationCheckpointing, TrainerRunEqualsTheRunWithout) {
  const auto dir = xft::test::scratch_dir("ckpt_run");
  tiny_moe(dir + "/moe", /*noise=*/true);
  auto data = tiny_data(dir, 16, 22);
  auto cfg = tiny_train(3);
  auto a = load_model(dir + "/moe");
  Trainer("moe", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);
  cfg.activation_checkpointing = true;
  auto b = load_model(dir + "/moe");
  Trainer("moe", b, model_tensors(*b), data, cfg, dir + "/b", 0).run(false);
  const auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  ASSERT_EQ(la.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  EXPECT_EQ(xft::test::metric(dir + "/a/metrics.jsonl", "aux_loss"), xft::test::metric(dir + "/b/metrics.jsonl", "aux_loss"));
  auto pa = model_tensors(*a), pb = model_tensors(*b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
}

TEST(Packing, FirstFitRowsAndPerDocumentLayout) {
  EXPECT_EQ(pack_rows({5, 4, 3, 2, 6}, 9), (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4}}));
  xft::test::expect_error([] { pack_rows({3, 10}, 9); }, {"example 1", "10 tokens", "max_length = 9"});
  const auto dir = xft::test::scratch_dir("layout");
  auto data = tiny_data(dir, 5, 23);
  const std::vector<int64_t> idx = {4, 0, 2};
  const int64_t row = static_cast<int64_t>(data[4].input_ids.size() + data[0].input_ids.size());
  const auto b = collate_packed(data, idx, 0, row);
  const auto u = collate(data, idx, 0);
  EXPECT_EQ(b.loss_tokens, u.loss_tokens);
  EXPECT_EQ(b.tokens, u.tokens);
  EXPECT_TRUE(b.needs_mask);
  // Row 0 holds examples 4 and 0 end to end: documents 1 and 2, positions restarting at 0.
  const auto n4 = static_cast<int64_t>(data[4].input_ids.size());
  EXPECT_EQ(b.attention_mask[0][n4 - 1].item<int64_t>(), 1);
  EXPECT_EQ(b.attention_mask[0][n4].item<int64_t>(), 2);
  EXPECT_EQ(b.position_ids[0][n4].item<int64_t>(), 0);
  EXPECT_EQ(b.input_ids[0][n4].item<int64_t>(), data[0].input_ids[0]);
  EXPECT_EQ(b.labels[0][n4].item<int64_t>(), kIgnoreLabel);
}

// Packed rows give every example its unpacked logits (no attention across documents, RoPE
// restarting), and the packed batch the unpacked batch's loss and gradient, aux loss included
// (it counts real tokens only, so the padding of either layout changes nothing).
TEST(Packing, SameLogitsLossAndGradientsAsUnpacked) {
  const auto dir = xft::test::scratch_dir("packed");
  auto data = tiny_data(dir, 7, 24);
  const std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5, 6};
  const auto u = collate(data, idx, 0);
  const auto p = collate_packed(data, idx, 0, 24);
  ASSERT_LT(p.input_ids.size(0), u.input_ids.size(0));  // some rows hold several documents
  auto dense = CausalLM(tiny_dense());
  dense->init_weights(0.05, 4);
  auto moe = tiny_moe(dir + "/moe");
  for (auto* model : {dense.get(), moe.get()}) {
    model->eval();
    {
      torch::NoGradGuard ng;
      const auto lu = model->forward(u.input_ids, u.attention_mask).logits;
      const auto lp = model->forward(p.input_ids, p.attention_mask, p.position_ids).logits;
      // Find each example in the packed rows by its document number.
      for (int64_t r = 0; r < p.input_ids.size(0); ++r) {
        int64_t t = 0;
        while (t < p.input_ids.size(1) && p.attention_mask[r][t].item<int64_t>() > 0) {
          const int64_t d = p.attention_mask[r][t].item<int64_t>();
          int64_t len = 0;
          while (t + len < p.input_ids.size(1) && p.attention_mask[r][t + len].item<int64_t>() == d) ++len;
          // The unpacked row with these ids.
          bool found = false;
          for (int64_t e = 0; e < u.input_ids.size(0) && !found; ++e) {
            if (u.attention_mask[e].sum().item<int64_t>() != len) continue;
            if (!torch::equal(u.input_ids[e].narrow(0, 0, len), p.input_ids[r].narrow(0, t, len))) continue;
            found = true;
            EXPECT_LE(max_abs_diff(lp[r].narrow(0, t, len), lu[e].narrow(0, 0, len)), 1e-5) << "row " << r << " doc " << d;
          }
          EXPECT_TRUE(found) << "row " << r << " doc " << d;
          t += len;
        }
      }
    }
    model->train();
    auto [loss_u, grads_u] = loss_and_grads(*model, u);
    auto [loss_p, grads_p] = loss_and_grads(*model, p);
    EXPECT_NEAR(loss_p.item<double>(), loss_u.item<double>(), 1e-4);  // a sum over ~50 tokens
    ASSERT_EQ(grads_u.size(), grads_p.size());
    for (size_t i = 0; i < grads_u.size(); ++i)
      if (grads_u[i].defined()) {
        EXPECT_LE(max_abs_diff(grads_p[i], grads_u[i]), 1e-5) << "parameter " << i;
      }
  }
}

// data.packing in the trainer: the same examples per micro-batch, so the same losses (within
// rounding) and token counts; and a packed run resumed from a checkpoint is the uninterrupted one.
TEST(Packing, TrainerLossesMatchUnpackedAndResumeIsExact) {
  const auto dir = xft::test::scratch_dir("packrun");
  tiny_moe(dir + "/moe");
  auto data = tiny_data(dir, 20, 25);
  auto cfg = tiny_train(4);
  cfg.save_every = 2;
  auto a = load_model(dir + "/moe");
  Trainer("moe", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);
  auto b = load_model(dir + "/moe");
  Trainer packed("moe", b, model_tensors(*b), data, cfg, dir + "/b", 0);
  packed.set_packing(32);
  packed.run(false);
  const auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  ASSERT_EQ(lb.size(), 4u);
  EXPECT_NEAR(la[0], lb[0], 1e-5);
  EXPECT_NEAR(xft::test::metric(dir + "/a/metrics.jsonl", "aux_loss")[0],
              xft::test::metric(dir + "/b/metrics.jsonl", "aux_loss")[0], 1e-5);
  EXPECT_EQ(xft::test::metric(dir + "/a/metrics.jsonl", "tokens"), xft::test::metric(dir + "/b/metrics.jsonl", "tokens"));
  auto c = load_model(dir + "/moe");
  Trainer crashing("moe", c, model_tensors(*c), data, cfg, dir + "/c", 0);
  crashing.set_packing(32);
  crashing.set_after_step([](int64_t step, int64_t) {
    if (step == 3) throw std::runtime_error("simulated crash");
  });
  EXPECT_THROW(crashing.run(false), std::runtime_error);
  auto d = load_model(dir + "/moe");
  Trainer resumed("moe", d, model_tensors(*d), data, cfg, dir + "/c", 0);
  resumed.set_packing(32);
  resumed.run(true);
  EXPECT_EQ(losses(dir + "/c/metrics.jsonl"), lb);
}

// Without padding the trainer drops the mask (sdpa's is_causal path, which GPU flash kernels
// take): the same logits as the explicit all-ones mask, for dense and MoE models.
TEST(FastAttention, UnmaskedCausalPathEqualsTheMaskedPath) {
  const auto dir = xft::test::scratch_dir("fast");
  auto dense = CausalLM(tiny_dense());
  dense->init_weights(0.05, 4);
  auto moe = tiny_moe(dir + "/moe");
  torch::manual_seed(5);
  const auto ids = torch::randint(3, 61, {3, 11});
  for (auto* model : {dense.get(), moe.get()}) {
    model->eval();
    torch::NoGradGuard ng;
    const auto fast = model->forward(ids).logits;
    const auto masked = model->forward(ids, torch::ones_like(ids)).logits;
    EXPECT_LE(max_abs_diff(fast, masked), 1e-5);
    // A mask that differs is seen (the comparison can fail): a padded key changes the logits.
    auto padded = torch::ones_like(ids);
    padded[0][0] = 0;
    EXPECT_GT(max_abs_diff(fast, model->forward(ids, padded).logits), 1e-4);
  }
  auto data = tiny_data(dir, 4, 26);
  EXPECT_TRUE(collate(data, {0, 1, 2, 3}, 0).needs_mask);  // lengths differ
  EXPECT_FALSE(collate(data, {2}, 0).needs_mask);
}

TEST(PerformanceConfig, CheckpointingAndPackingAreReadWrittenAndChecked) {
  const auto t = TrainConfig::from_json({{"activation_checkpointing", true}}, "x.json", "moe_train");
  EXPECT_TRUE(t.activation_checkpointing);
  EXPECT_FALSE(TrainConfig{}.activation_checkpointing);
  EXPECT_EQ(t.to_json()["activation_checkpointing"], true);
  xft::test::expect_error([] { TrainConfig::from_json({{"activation_checkpointing", 1}}, "x.json", "moe_train"); },
                          {"x.json", "moe_train.activation_checkpointing", "boolean"});
  const auto d = DataConfig::from_json({{"path", "d.jsonl"}, {"packing", true}}, "x.json");
  EXPECT_TRUE(d.packing);
  EXPECT_EQ(d.to_json()["packing"], true);
  xft::test::expect_error([] { DataConfig::from_json({{"path", "d.jsonl"}, {"packing", "yes"}}, "x.json"); },
                          {"x.json", "data.packing", "boolean"});
}

// The trainer reads its losses once per step: the logged loss and aux loss of the first step
// (before any update) are still the sums over its micro-batches, by hand from the sampler's order.
TEST(Trainer, StepMetricsAreTheMicroBatchSumsByHand) {
  const auto dir = xft::test::scratch_dir("metrics");
  tiny_moe(dir + "/moe");
  auto data = tiny_data(dir, 8, 27);
  auto t = tiny_train(1);
  t.micro_batch = 2;
  const auto order = BatchSampler(data.lengths(), t.global_batch, t.seed, false, false).next();
  double loss = 0.0, aux = 0.0, tokens = 0.0;
  {
    auto model = load_model(dir + "/moe");
    model->train();
    torch::NoGradGuard ng;
    torch::manual_seed(t.seed);
    const int64_t global = count_loss_tokens(data, order);
    for (size_t m = 0; m < order.size(); m += 2) {
      auto b = collate(data, {order[m], order[m + 1]}, 0);
      auto out = model->forward(b.input_ids, b.needs_mask ? b.attention_mask : torch::Tensor());
      loss += cross_entropy_sum(out.logits, b.labels).item<double>() / static_cast<double>(global);
      aux += out.aux_loss.item<double>() / 4.0;
      tokens += static_cast<double>(b.attention_mask.sum().item<int64_t>());
    }
  }
  auto model = load_model(dir + "/moe");
  Trainer("moe", model, model_tensors(*model), data, t, dir + "/run", 0).run(false);
  EXPECT_NEAR(losses(dir + "/run/metrics.jsonl").at(0), loss, 1e-6);
  EXPECT_NEAR(xft::test::metric(dir + "/run/metrics.jsonl", "aux_loss").at(0), aux, 1e-7);
  EXPECT_EQ(xft::test::metric(dir + "/run/metrics.jsonl", "tokens").at(0), tokens);
  EXPECT_GT(aux, 0.0);
}

namespace {

// Live CPU bytes allocated since construction and their peak, from the allocator's profiler hook.
class CpuMemoryMeter : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t size, size_t, size_t, c10::Device) override {
    live_ += size;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t live_ = 0, peak_ = 0;
};

}  // namespace

// The planner's step peak (activations and gradients) against the peak the CPU allocator sees
// over one forward and backward of a micro-batch, with and without activation checkpointing, for
// the dense and the MoE model; and its parameter bytes against the model's.
TEST(MemoryPlan, StepPeakWithin15PercentOfTheMeasuredPeak) {
  auto cfg = tiny_dense(1024);
  cfg.hidden_size = 128;
  cfg.intermediate_size = 352;
  cfg.num_hidden_layers = 4;
  cfg.head_dim = 32;
  MoeConfig moe;
  moe.num_experts = 4;
  moe.top_k = 2;
  for (bool is_moe : {false, true}) {
    auto model_cfg = cfg;
    if (is_moe) model_cfg.moe = moe;
    CausalLM model(model_cfg);
    model->train();
    TrainConfig t;
    t.micro_batch = 4;
    const int64_t T = 128;
    MemoryPlanInput in{cfg, moe, t, T, is_moe ? StageKind::kMoe : StageKind::kDense};
    const auto plan = plan_stage_memory(in);
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel() * 4;
    EXPECT_EQ(static_cast<int64_t>(plan.parameters), params) << is_moe;
    const auto ids = torch::randint(3, 1024, {t.micro_batch, T});
    for (bool ckpt : {false, true}) {
      model->set_activation_checkpointing(ckpt);
      for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
      auto meter = std::make_shared<CpuMemoryMeter>();
      {
        c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, meter);
        auto out = model->forward(ids);
        auto loss = cross_entropy_sum(out.logits, ids);
        if (out.aux_loss.defined()) loss = loss + out.aux_loss;
        out = CausalLMOutput();
        loss.backward();
      }
      const double want = plan.step_peak(ckpt);
      const double got = static_cast<double>(meter->peak());
      std::cerr << (is_moe ? "moe" : "dense") << (ckpt ? " checkpointed" : "") << ": planned " << want / 1e6
                << " MB, measured peak " << got / 1e6 << " MB\n";
      EXPECT_NEAR(want / got, 1.0, 0.15) << (is_moe ? "moe" : "dense") << " checkpointing " << ckpt;
    }
  }
}

// The merge's frozen stacks per rank by hand: 8 experts x 3 projections x F x D in bf16, whole
// (1 shard), 4 + 4 rows (2 shards), 2 per rank (4), and the busiest rank's 3 for 3 shards
// (3 + 3 + 2); the fp32 merged W (3 x F x D per layer) stays on every rank. Uneven expert
// parallelism counts the busiest rank's ceil(7 / 4) = 2 routed experts.
TEST(MemoryPlan, ShardedMergeStacksAndUnevenExpertParallel) {
  auto cfg = tiny_dense(1024);
  cfg.hidden_size = 128;
  cfg.intermediate_size = 352;
  cfg.num_hidden_layers = 4;
  cfg.head_dim = 32;
  MoeConfig moe;
  moe.num_experts = 8;
  moe.top_k = 3;
  const double L = 4, F = 352, D = 128;
  for (const auto& [shards, rows] : {std::pair{1, 8}, std::pair{2, 4}, std::pair{4, 2}, std::pair{3, 3}}) {
    MemoryPlanInput in{cfg, moe, TrainConfig{}, 128, StageKind::kMerge};
    in.merge_shards = shards;
    EXPECT_EQ(plan_stage_memory(in).expert_stacks, L * 3 * rows * F * D * 2 + L * 3 * F * D * 4) << shards;
  }
  MemoryPlanInput one{cfg, moe, TrainConfig{}, 128, StageKind::kMoe}, four = one;
  four.expert_parallel = 4;
  // The shared expert plus 7 routed on one rank; the shared one plus 2 on the busiest of 4.
  EXPECT_EQ(plan_stage_memory(one).parameters - plan_stage_memory(four).parameters, L * 3 * (8 - 3) * F * D * 4);
}
