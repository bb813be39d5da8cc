// The standard merge baselines (merge.method task_arithmetic, ties, dare) by hand on small
// tensors, their export from an MoE directory, and their config.
#include <cmath>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/methods/task_vector_merge.h"
#include "xft/methods/upcycle.h"
#include "xft/pipelines/experiment.h"

using namespace xft;
using namespace xft::test;

namespace {

// Three experts of six elements (as [2, 3]): W_0 = 1 everywhere, tau_1 and tau_2 chosen so that
// trimming, the sign election and the disjoint mean each change something.
const std::vector<double> kTau1 = {1, -2, 3, 0.5, 2.5, 0.1};
const std::vector<double> kTau2 = {-1, -1.5, 1.25, 4, -3, 0.2};

torch::Tensor stack_of_three() {
  auto base = torch::ones({2, 3}, torch::kFloat64);
  auto t1 = torch::tensor(kTau1, torch::kFloat64).view({2, 3});
  auto t2 = torch::tensor(kTau2, torch::kFloat64).view({2, 3});
  return torch::stack({base, base + t1, base + t2}).to(torch::kFloat32);
}

torch::Tensor merged(MergeMethod method, double density, double scaling, uint64_t seed = 0) {
  MergeConfig c;
  c.method = method;
  c.density = density;
  c.scaling = scaling;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return merge_task_vectors(stack_of_three(), c, gen);
}

void expect_values(const torch::Tensor& got, const std::vector<double>& want) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  const auto g = got.to(torch::kFloat64).reshape(-1);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(g[i].item<double>(), want[i], 1e-6) << "element " << i;
}

}  // namespace

TEST(TaskVectorMerge, TaskArithmeticAddsTheScaledSumOfTaskVectors) {
  // tau_1 + tau_2 = [0, -3.5, 4.25, 4.5, -0.5, 0.3]; W = 1 + 0.5 * that.
  expect_values(merged(MergeMethod::kTaskArithmetic, 1.0, 0.5), {1.0, -0.75, 3.125, 3.25, 0.75, 1.15});
}

TEST(TaskVectorMerge, TiesTrimsElectsAndTakesTheDisjointMean) {
  // density 0.5 keeps 3 of 6 per task vector: tau_1 -> [0, -2, 3, 0, 2.5, 0],
  // tau_2 -> [0, -1.5, 0, 4, -3, 0]. Their sum [0, -3.5, 3, 4, -0.5, 0] elects [+, -, +, +, -, +].
  // Agreeing values: element 1 both (-3.5 / 2), 2 tau_1 only, 3 tau_2 only, 4 tau_2 only (tau_1's
  // 2.5 disagrees), 0 and 5 none (the mean is 0). W = 1 + [0, -1.75, 3, 4, -3, 0].
  expect_values(merged(MergeMethod::kTies, 0.5, 1.0), {1.0, -0.75, 4.0, 5.0, -2.0, 1.0});
  // density 1 keeps everything: the sum [0, -3.5, 4.25, 4.5, -0.5, 0.3] elects [+, -, +, +, -, +];
  // element 0 averages tau_1's 1 alone (tau_2's -1 disagrees), element 4 tau_2's -3 alone.
  expect_values(merged(MergeMethod::kTies, 1.0, 1.0), {2.0, -0.75, 3.125, 3.25, -2.0, 1.15});
  // scaling multiplies the merged task vector only.
  expect_values(merged(MergeMethod::kTies, 0.5, 2.0), {1.0, -2.5, 7.0, 9.0, -5.0, 1.0});
}

TEST(TaskVectorMerge, DareKeepsADensityShareRescaledAndIsUnbiased) {
  // density 1 keeps everything: DARE is task arithmetic.
  EXPECT_LE(max_abs_diff(merged(MergeMethod::kDare, 1.0, 0.5), merged(MergeMethod::kTaskArithmetic, 1.0, 0.5)), 1e-6);
  // One routed expert over many elements: every element of (W - W_0) / tau is 0 (dropped) or
  // 1 / density (kept and rescaled), and about `density` of them are kept.
  const int64_t n = 20000;
  auto base = torch::randn({n});
  auto tau = torch::rand({n}) + 0.5;  // no zero, so a dropped element shows as 0
  MergeConfig c;
  c.method = MergeMethod::kDare;
  c.density = 0.3;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto w = merge_task_vectors(torch::stack({base, base + tau}), c, gen);
  const auto ratio = ((w - base) / tau).to(torch::kFloat64);
  const auto kept = (ratio - 1.0 / 0.3).abs() < 1e-3;
  const auto dropped = ratio.abs() < 1e-4;
  EXPECT_TRUE((kept | dropped).all().item<bool>());
  const double share = kept.to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(share, 0.3, 5 * std::sqrt(0.3 * 0.7 / static_cast<double>(n)));  // 5 binomial sigmas
  // Unbiased: the mean over the elements of (W - W_0) / tau is 1 within the same bound, rescaled.
  EXPECT_NEAR(ratio.mean().item<double>(), 1.0, 5 * std::sqrt(0.7 / 0.3 / static_cast<double>(n)));
  // The seed decides the draws: the same seed the same merge, another seed another.
  EXPECT_TRUE(torch::equal(merged(MergeMethod::kDare, 0.5, 1.0, 3), merged(MergeMethod::kDare, 0.5, 1.0, 3)));
  EXPECT_FALSE(torch::equal(merged(MergeMethod::kDare, 0.5, 1.0, 3), merged(MergeMethod::kDare, 0.5, 1.0, 4)));
}

TEST(TaskVectorMerge, ExportMergesEveryLayersProjectionsAndCopiesTheRest) {
  const auto dir = scratch_dir("task_vector_merge");
  tiny_moe(dir + "/moe");
  MergeConfig c;
  c.method = MergeMethod::kTies;
  c.density = 0.4;
  c.scaling = 0.8;
  export_task_vector_merge(dir + "/moe", dir + "/ties", c, torch::kFloat32);
  const auto cfg = ModelConfig::load(dir + "/ties");
  EXPECT_FALSE(cfg.moe.has_value());
  auto out = TensorDirectory::open(dir + "/ties");
  auto in = TensorDirectory::open(dir + "/moe");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      const auto want =
          merge_task_vectors(in.get("model.layers." + std::to_string(l) + ".mlp.experts." + proj), c, gen);
      EXPECT_LE(max_abs_diff(out.get("model.layers." + std::to_string(l) + ".mlp." + proj + ".weight"), want), 0.0)
          << "layer " << l << " " << proj;
    }
  }
  for (const auto& name : out.names())
    if (name.find(".mlp.") == std::string::npos) EXPECT_TRUE(torch::equal(out.get(name), in.get(name))) << name;
  auto dense = load_model(dir + "/ties");  // a dense model of the base architecture
  EXPECT_FALSE(dense->config().moe.has_value());
  // Without a shared expert there is no base to take differences from.
  auto vanilla = tiny_moe_config();
  vanilla.shared_expert = false;
  vanilla.routing = RoutingMode::kVanilla;
  CausalLM base(tiny_dense());
  base->init_weights(0.1, 1);
  const auto up = upcycle(tiny_dense(), model_tensors(*base), vanilla, 2);
  save_model_tensors(up.config, up.tensors, dir + "/vanilla");
  expect_error([&] { export_task_vector_merge(dir + "/vanilla", dir + "/bad", c, torch::kFloat32); },
               {"vanilla", "shared_expert", "ties"});
}

TEST(TaskVectorMerge, ConfigNamesTheMethodsAndRefusesBadParameters) {
  auto read = [](const nlohmann::json& j) { return MergeConfig::from_json(j, "cfg.json"); };
  const auto c = read({{"method", "dare"}, {"density", 0.1}, {"scaling", 2.0}, {"seed", 5u}});
  EXPECT_EQ(c.method, MergeMethod::kDare);
  EXPECT_EQ(c.density, 0.1);
  EXPECT_EQ(c.seed, 5u);
  EXPECT_EQ(read(nlohmann::json::object()).method, MergeMethod::kLearned);  // the paper's, by default
  EXPECT_EQ(read(nlohmann::json::object()).density, 1.0);                   // mergekit's defaults
  EXPECT_EQ(read(nlohmann::json::object()).scaling, 1.0);
  EXPECT_EQ(read(c.to_json()).to_json(), c.to_json());
  expect_error([&] { read({{"method", "slerp"}}); }, {"cfg.json", "merge.method", "task_arithmetic", "ties", "dare"});
  expect_error([&] { read({{"density", 0.0}}); }, {"cfg.json", "merge.density", "(0, 1]"});
  expect_error([&] { read({{"density", 1.5}}); }, {"merge.density"});
}
