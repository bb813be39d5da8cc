// Training: exact resume on CPU, the NaN stop, gradient accumulation and the loss reductions,
// the step metrics by hand, and the memory and speed paths of the trainer (activation
// checkpointing, sdpa's unmasked path) against the plain ones. The merge and EWA are in
// tests/test_merge.cpp, packing in tests/test_packing.cpp, the memory plan in
// tests/test_memory_plan.cpp.
#include <cmath>
#include <filesystem>
#include <limits>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/data/batcher.h"
#include "xft/methods/merge.h"
#include "xft/moe/moe_layer.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;
using namespace xft;
using namespace xft::test;

// A run interrupted after a checkpoint and resumed reproduces the uninterrupted loss curve and
// parameters exactly (noisy routing included, so the RNG state must come back too).
TEST(Trainer, ResumeReproducesTheUninterruptedRunExactly) {
  const auto dir = xft::test::scratch_dir("resume");
  tiny_moe(dir + "/moe", /*noise=*/true);
  auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(7);
  cfg.save_every = 2;

  auto a = train_saved(dir + "/moe", " run", data, cfg, dir + "/a");

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

namespace {

// A tiny dense model with fixed weights, also saved to `dir`: the start both runs load.
CausalLM saved_tiny_dense(const std::string& dir) {
  auto model = CausalLM(tiny_dense());
  model->init_weights(0.05, 4);
  save_model(*model, dir);
  return model;
}

}  // namespace

TEST(Trainer, GradientAccumulationMatchesOneBigBatch) {
  const auto dir = xft::test::scratch_dir("accum");
  auto data = tiny_data(dir, 16, 5);
  saved_tiny_dense(dir + "/init");
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

// loss_reduction: the first step's loss (before any update) by hand from the sampler's order:
// "token" = all response tokens' mean, "micro_batch" = the mean of each micro-batch's token mean.
TEST(Trainer, LossReductionTokenAndMicroBatchByHand) {
  const auto dir = xft::test::scratch_dir("reduction");
  auto data = tiny_data(dir, 8, 9);
  auto init = saved_tiny_dense(dir + "/init");
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
  EXPECT_TRUE(torch::equal(loss, want_loss))
      << what << ": " << loss.item<double>() << " vs " << want_loss.item<double>();
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
  auto a = train_saved(dir + "/moe", "moe", data, cfg, dir + "/a");
  cfg.activation_checkpointing = true;
  auto b = train_saved(dir + "/moe", "moe", data, cfg, dir + "/b");
  const auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  ASSERT_EQ(la.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  EXPECT_EQ(xft::test::metric(dir + "/a/metrics.jsonl", "aux_loss"),
            xft::test::metric(dir + "/b/metrics.jsonl", "aux_loss"));
  auto pa = model_tensors(*a), pb = model_tensors(*b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
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
  xft::test::expect_error(
      [] {
        TrainConfig::from_json({{"activation_checkpointing", 1}}, "x.json", "moe_train");
      },
      {"x.json", "moe_train.activation_checkpointing", "boolean"});
  const auto d = DataConfig::from_json({{"path", "d.jsonl"}, {"packing", true}}, "x.json");
  EXPECT_TRUE(d.packing);
  EXPECT_EQ(d.to_json()["packing"], true);
  xft::test::expect_error(
      [] {
        DataConfig::from_json({{"path", "d.jsonl"}, {"packing", "yes"}}, "x.json");
      },
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
  train_saved(dir + "/moe", "moe", data, t, dir + "/run");
  EXPECT_NEAR(losses(dir + "/run/metrics.jsonl").at(0), loss, 1e-6);
  EXPECT_NEAR(xft::test::metric(dir + "/run/metrics.jsonl", "aux_loss").at(0), aux, 1e-7);
  EXPECT_EQ(xft::test::metric(dir + "/run/metrics.jsonl", "tokens").at(0), tokens);
  EXPECT_GT(aux, 0.0);
}
