// The standard merge baselines as study arms: task arithmetic, TIES, DARE and the untrained
// init merge, each an ablation of the xft arm that merges the seed's own tuned MoE again.
#include <filesystem>

#include "test_util.h"
#include "tiny_world.h"
#include "xft/core/files.h"
#include "xft/core/safetensors.h"
#include "xft/methods/task_vector_merge.h"
#include "xft/model/model_io.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::driver;
using xft::test::read_all;

TEST(Study, MergeBaselinesRunAsArmsBesideTheLearnedMerge) {
  const auto dir = xft::test::scratch_dir("merge_baselines");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string args =
      " --config " + config + " --set base_model=" + dir + "/base --set data.path=" + dir +
      "/data.jsonl --set eval_data=" + dir + "/data.jsonl --set data.max_length=512 --seeds 1 --arms xft,xft_init" +
      " --bootstrap 200 --out " + dir + "/study" + " --ablation ta:merge.method=task_arithmetic,merge.scaling=0.5" +
      " --ablation ties:merge.method=ties,merge.density=0.5 --ablation dare:merge.method=dare,merge.density=0.5" +
      " --ablation init:merge.method=init --set logging.tensorboard=" + dir + "/tb";
  ASSERT_EQ(driver("xft-study", args, dir + "/study.log"), 0) << read_all(dir + "/study.log");
  const auto r = read_json_file(dir + "/study/results.json");
  for (const auto* arm : {"ta", "ties", "dare", "init"}) {
    ASSERT_TRUE(r["arms"].contains(arm)) << arm;
    EXPECT_GT(r["arms"][arm]["heldout_loss_mean"].get<double>(), 0.0) << arm;
    EXPECT_EQ(r["arms"][arm]["ablation"]["shares_moe"], true) << arm;  // one MoE, merged five ways
    EXPECT_TRUE(fs::exists(dir + "/study/seed-1/xft/merge-" + std::string(arm) + "/final/config.json")) << arm;
  }
  // The untrained init merge is XFT (INIT): the same W, the same losses.
  EXPECT_NEAR(r["arms"]["init"]["heldout_loss_mean"].get<double>(),
              r["arms"]["xft_init"]["heldout_loss_mean"].get<double>(), 1e-6);
  // The baselines train nothing in the merge stage (no tokens), and have no initial point.
  EXPECT_EQ(r["arms"]["ties"]["budget"][1]["tokens"].get<double>(), 0.0);
  EXPECT_FALSE(fs::exists(dir + "/study/seed-1/xft/merge-ties/init"));
  // What the TIES arm scored is TIES of the seed's tuned MoE, layer by layer.
  MergeConfig ties;
  ties.method = MergeMethod::kTies;
  ties.density = 0.5;
  auto moe = TensorDirectory::open(dir + "/study/seed-1/xft/moe/final");
  auto out = TensorDirectory::open(dir + "/study/seed-1/xft/merge-ties/final");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto want = merge_task_vectors(moe.get("model.layers.0.mlp.experts.up_proj"), ties, gen);
  EXPECT_LE(xft::test::max_abs_diff(out.get("model.layers.0.mlp.up_proj.weight"), want), 1e-6);
  // The study draws DARE's drops from the seed: merge.seed follows --seeds.
  EXPECT_EQ(read_json_file(dir + "/study/seed-1/experiment.json")["merge"]["seed"], 1);
  // TensorBoard runs per seed: the stages' names repeat across seeds and ablations.
  EXPECT_TRUE(fs::exists(dir + "/tb/seed-1/xft_moe")) << read_all(dir + "/study.log");
  EXPECT_TRUE(fs::exists(dir + "/tb/seed-1/xft_merge"));
  EXPECT_FALSE(fs::exists(dir + "/tb/xft_moe"));
  // Each baseline is compared with the learned merge.
  bool compared = false;
  for (const auto& c : r["comparisons"]) compared = compared || (c["a"] == "ties" && c["b"] == "xft");
  EXPECT_TRUE(compared);
}
