// The drivers end to end on a tiny model and tokenizer made here, and the shipped configs.
#include <filesystem>
#include <fstream>
#include <tuple>

#include "test_util.h"
#include "tiny_world.h"
#include "xft/data/tokenizer.h"
#include "xft/model/model_io.h"
#include "xft/pipelines/experiment.h"

namespace fs = std::filesystem;
using namespace xft;

using xft::test::driver;
using xft::test::read_all;

TEST(Configs, EveryShippedConfigParses) {
  const auto dir = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    EXPECT_NO_THROW(ExperimentConfig::load(e.path().string())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 5);
  auto c = ExperimentConfig::load(dir + "/deepseek-coder-1.3b.json");
  EXPECT_EQ(c.moe.num_experts, 8);  // paper A.1
  EXPECT_EQ(c.moe.top_k, 6);
  EXPECT_DOUBLE_EQ(c.merge.shared_rate, 0.75);
  EXPECT_EQ(c.moe_train.global_batch, 64);
  EXPECT_EQ(c.moe_train.warmup, 500);
  EXPECT_EQ(c.sft_train.epochs, 5);
  EXPECT_DOUBLE_EQ(c.merge_train.lr, 1e-5);
}

TEST(Configs, OverridesAndBadFields) {
  const auto dir = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs";
  auto c = ExperimentConfig::load(dir + "/tiny.json", {"moe_train.lr=0.5", "moe.top_k=3", "run_dir=elsewhere"});
  EXPECT_DOUBLE_EQ(c.moe_train.lr, 0.5);
  EXPECT_EQ(c.moe.top_k, 3);
  EXPECT_EQ(c.run_dir, "elsewhere");
  xft::test::expect_error([&] { ExperimentConfig::load(dir + "/tiny.json", {"moe_train.lrr=1"}); },
                          {"tiny.json", "moe_train", "lrr"});
  xft::test::expect_error([&] { ExperimentConfig::load(dir + "/tiny.json", {"moe.top_k=9"}); }, {"top_k"});
  xft::test::expect_error([&] { ExperimentConfig::load(dir + "/tiny.json", {"novalue"}); }, {"key=value"});
}

TEST(Drivers, SftXftEwaRunEndToEndAndDoNotRedoFinishedStages) {
  const auto dir = xft::test::scratch_dir("world");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string sets = " --config " + config + " --set run_dir=" + dir + "/run --set base_model=" + dir +
                           "/base --set data.path=" + dir + "/data.jsonl --set eval_data=" + dir + "/data.jsonl" +
                           " --set data.max_length=512" +  // a 300-token vocabulary makes the template long
                           " --set logging.tensorboard=" + dir + "/tb";
  for (const auto* name : {"sft", "xft", "ewa"}) {
    const auto log = dir + "/" + name + ".log";
    ASSERT_EQ(driver(name, sets, log), 0) << read_all(log);
    EXPECT_NE(read_all(log).find("1 skipped"), std::string::npos) << "the malformed record is reported\n"
                                                                  << read_all(log);
  }
  for (const auto* final_dir :
       {"/run/sft/final", "/run/xft/moe/final", "/run/xft/merge/init", "/run/xft/merge/final", "/run/ewa/final"}) {
    ASSERT_TRUE(fs::exists(dir + final_dir + "/config.json")) << final_dir;
    auto m = load_model(dir + final_dir);  // loads: names and shapes consistent
    EXPECT_EQ(m->config().moe.has_value(), std::string(final_dir) == "/run/xft/moe/final") << final_dir;
  }
  EXPECT_TRUE(fs::exists(dir + "/run/xft/merge/coefficients.json"));
  auto coeffs = read_json_file(dir + "/run/xft/merge/coefficients.json");
  EXPECT_EQ(coeffs["layers"].size(), 2u);
  EXPECT_TRUE(fs::exists(dir + "/run/sft/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/run/xft/merge/eval.json"));
  // Telemetry: routing statistics per MoE layer and the merge coefficients in the metrics rows,
  // summarised in eval.json; load fractions are fractions, expert 0 (shared) takes every token.
  std::ifstream moe_metrics(dir + "/run/xft/moe/metrics.jsonl");
  std::string first;
  std::getline(moe_metrics, first);
  const auto row = nlohmann::json::parse(first);
  ASSERT_TRUE(row.contains("moe")) << first;
  ASSERT_EQ(row["moe"].size(), 2u);
  EXPECT_DOUBLE_EQ(row["moe"][0]["load"][0].get<double>(), 1.0);
  double routed = 0.0;
  for (size_t e = 1; e < row["moe"][0]["load"].size(); ++e) routed += row["moe"][0]["load"][e].get<double>();
  EXPECT_NEAR(routed, 1.0, 1e-9);  // tiny.json: top-2 with the shared one, so one routed slot per token
  EXPECT_GT(row["moe"][0]["entropy"].get<double>(), 0.0);
  auto moe_eval = read_json_file(dir + "/run/xft/moe/eval.json");
  EXPECT_TRUE(moe_eval["telemetry"].contains("moe")) << moe_eval.dump();
  auto merge_eval = read_json_file(dir + "/run/xft/merge/eval.json");
  EXPECT_EQ(merge_eval["telemetry"]["coefficients"].size(), 2u) << merge_eval.dump();
  // EWA's upcycled model carries the tokenizer files too, as XFT's does.
  EXPECT_EQ(fs::exists(dir + "/base/tokenizer.model"), fs::exists(dir + "/run/ewa/moe-init/tokenizer.model"));
  // Each stage's TensorBoard run, as tensorboard reads it, equals its metrics.jsonl
  // (tests/test_tensorboard.cpp checks the live writing and the resume).
  const auto py = xft::test::env_or_empty("XFT_PYTHON"), src = xft::test::env_or_empty("XFT_SOURCE_DIR");
  const std::tuple<const char*, const char*, const char*> tensorboard_runs[] = {
      {"sft", "sft", "loss"},
      {"xft_moe", "xft/moe", "moe/layer1/load_expert1"},
      {"xft_merge", "xft/merge", "merge/layer1/expert0"},
      {"ewa", "ewa", "moe/layer0/entropy"}};
  for (const auto& [run, stage, tag] : tensorboard_runs) {
    const auto log = dir + "/tb-" + run + ".log";
    EXPECT_EQ(
        xft::test::run(py + " " + src + "/tests/python/check_tensorboard_events.py " + dir + "/tb/" + run + " " + dir +
                       "/run/" + stage + "/metrics.jsonl " + src + " --require " + tag + " > " + log + " 2>&1"),
        0)
        << read_all(log);
  }
  // The pictures of the run.
  const auto plots = dir + "/plots";
  ASSERT_EQ(xft::test::run(xft::test::env_or_empty("XFT_PYTHON") + " " + xft::test::env_or_empty("XFT_SOURCE_DIR") +
                           "/scripts/plot_run.py " + dir + "/run --out " + plots + " > " + dir + "/plot.log 2>&1"),
            0)
      << read_all(dir + "/plot.log");
  for (const auto* png : {"loss.png", "lr_grad_norm.png", "expert_load.png", "merge_coefficients.png"})
    EXPECT_GT(fs::exists(plots + "/" + png) ? fs::file_size(plots + "/" + png) : 0u, 1000u) << png;
  // A second run redoes nothing.
  const auto log = dir + "/xft2.log";
  ASSERT_EQ(driver("xft", sets, log), 0) << read_all(log);
  EXPECT_NE(read_all(log).find("not redone"), std::string::npos) << read_all(log);
  // The exported XFT model carries its tokenizer: generate and the HumanEval loop run on it.
  const auto tool = xft::test::env_or_empty("XFT_TOOL");
  EXPECT_EQ(xft::test::run(tool + " generate --model " + dir + "/run/xft/merge/final --prompt 'def f(x):' " +
                           "--max-new-tokens 5 > " + dir + "/gen.log 2>&1"),
            0)
      << read_all(dir + "/gen.log");
  const auto eval_log = dir + "/eval.log";
  ASSERT_EQ(xft::test::run(tool + " eval --model " + dir + "/run/xft/merge/final --problems " +
                           xft::test::fixture("humaneval") + "/HumanEval.jsonl.gz --limit 2 --max-new-tokens 6 --out " +
                           dir + "/he.jsonl > " + eval_log + " 2>&1"),
            0)
      << read_all(eval_log);
  EXPECT_NE(read_all(eval_log).find("pass@1"), std::string::npos) << read_all(eval_log);
  const auto per_problem = read_all(dir + "/he.jsonl");
  EXPECT_EQ(std::count(per_problem.begin(), per_problem.end(), '\n'), 2);
  // A bad config is a clear error, not a crash.
  EXPECT_EQ(driver("sft", sets + " --set sft_train.optimizer=sgd", dir + "/bad.log"), 1);
  EXPECT_NE(read_all(dir + "/bad.log").find("sft_train.optimizer must be one of adafactor, adamw"), std::string::npos)
      << read_all(dir + "/bad.log");
}

// xft-study over two seeds: per-arm means and stds, paired comparisons with a bootstrap
// interval around their mean and a Wilcoxon p-value, budgets from the metrics; ablation arms
// (one that only changes the merge shares the MoE, one that changes the MoE gets its own run);
// a rerun reuses every finished stage and cached score.
TEST(Study, TwoSeedsGiveArmsComparisonsAblationsAndBudgets) {
  const auto dir = xft::test::scratch_dir("study");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string args = " --config " + config + " --set base_model=" + dir + "/base --set data.path=" + dir +
                           "/data.jsonl --set eval_data=" + dir + "/data.jsonl --set data.max_length=512" +
                           " --seeds 1,2 --arms base,sft,xft,xft_init --bootstrap 2000 --out " + dir + "/study" +
                           " --ablation lam:merge.shared_rate=0.5 --ablation top3@moe:moe.top_k=3";
  ASSERT_EQ(driver("xft-study", args, dir + "/study.log"), 0) << read_all(dir + "/study.log");
  const auto r = read_json_file(dir + "/study/results.json");
  // The ablation on the MoE brings in the arm it is compared with.
  EXPECT_EQ(r["order"], nlohmann::json({"base", "sft", "xft", "xft_init", "moe", "lam", "top3"}));
  for (const auto* arm : {"sft", "xft", "xft_init", "moe", "lam", "top3"}) {
    const auto& a = r["arms"][arm];
    ASSERT_EQ(a["per_seed"].size(), 2u) << arm;
    EXPECT_GT(a["heldout_loss_mean"].get<double>(), 0.0);
    EXPECT_GE(a["heldout_loss_std"].get<double>(), 0.0);
    EXPECT_GT(a["budget"][0]["tokens"].get<double>(), 0.0) << arm;
    EXPECT_GT(a["budget"][0]["flops"].get<double>(), 0.0) << arm;
  }
  EXPECT_EQ(r["arms"]["base"]["budget"].size(), 0u);                    // trained elsewhere
  EXPECT_EQ(r["arms"]["base"]["heldout_loss_std"].get<double>(), 0.0);  // the same model for every seed
  EXPECT_EQ(r["arms"]["xft"]["budget"].size(), 2u);                     // the MoE stage and the merge
  EXPECT_EQ(r["arms"]["xft"]["params"], r["arms"]["sft"]["params"]);    // merged back to the dense size
  EXPECT_GT(r["arms"]["moe"]["params"].get<double>(), r["arms"]["sft"]["params"].get<double>());
  // An MoE stage's FLOPs count the experts a token goes through: top-3 costs more than top-2.
  EXPECT_GT(r["arms"]["top3"]["budget"][0]["flops"].get<double>(),
            r["arms"]["moe"]["budget"][0]["flops"].get<double>());
  // The seeds differ: different data orders and routers give different losses.
  EXPECT_NE(r["arms"]["sft"]["per_seed"][0].get<double>(), r["arms"]["sft"]["per_seed"][1].get<double>());
  // The lambda ablation merged the seed's own MoE again; the top-3 one trained its own MoE.
  EXPECT_TRUE(fs::exists(dir + "/study/seed-1/xft/merge-lam/final/config.json"));
  EXPECT_FALSE(fs::exists(dir + "/study/seed-1/ablation-lam"));
  EXPECT_TRUE(fs::exists(dir + "/study/seed-2/ablation-top3/xft/moe/final/config.json"));
  EXPECT_NE(r["arms"]["lam"]["per_seed"][0], r["arms"]["xft"]["per_seed"][0]);
  EXPECT_EQ(r["arms"]["lam"]["ablation"]["shares_moe"], true);
  // xft vs sft, xft vs moe, xft vs xft_init, moe vs sft, sft vs base, lam vs xft, top3 vs moe.
  ASSERT_EQ(r["comparisons"].size(), 7u);
  EXPECT_EQ(r["comparisons"][4]["a"], "sft");
  EXPECT_EQ(r["comparisons"][4]["b"], "base");
  EXPECT_EQ(r["comparisons"][5]["a"], "lam");
  EXPECT_EQ(r["comparisons"][5]["b"], "xft");
  EXPECT_EQ(r["comparisons"][6]["b"], "moe");
  for (const auto& c : r["comparisons"]) {
    const double mean = c["mean_difference"].get<double>();
    EXPECT_LE(c["ci95"][0].get<double>(), mean);
    EXPECT_GE(c["ci95"][1].get<double>(), mean);
    EXPECT_GE(c["wilcoxon_p"].get<double>(), 0.0);
    EXPECT_LE(c["wilcoxon_p"].get<double>(), 1.0);
    // The mean difference is the difference of the arms' seed-averaged means.
    const double want = r["arms"][c["a"].get<std::string>()]["heldout_loss_mean"].get<double>() -
                        r["arms"][c["b"].get<std::string>()]["heldout_loss_mean"].get<double>();
    EXPECT_NEAR(mean, want, 1e-9);
  }
  EXPECT_TRUE(fs::exists(dir + "/study/results.md"));
  EXPECT_TRUE(fs::exists(dir + "/study/seed-2/losses-xft.json"));
  // The study's picture: arms per seed, comparisons with their intervals.
  const auto py = xft::test::env_or_empty("XFT_PYTHON") + " " + xft::test::env_or_empty("XFT_SOURCE_DIR");
  ASSERT_EQ(xft::test::run(py + "/scripts/plot_run.py " + dir + "/study > " + dir + "/plot.log 2>&1"), 0)
      << read_all(dir + "/plot.log");
  EXPECT_GT(fs::file_size(dir + "/study/plots/study.png"), 1000u);
  ASSERT_EQ(driver("xft-study", args, dir + "/again.log"), 0) << read_all(dir + "/again.log");
  EXPECT_NE(read_all(dir + "/again.log").find("not redone"), std::string::npos);
  EXPECT_EQ(read_json_file(dir + "/study/results.json"), r);
  // A bad ablation spec is a clear error before anything runs.
  ASSERT_NE(driver("xft-study", args + " --ablation oops", dir + "/bad.log"), 0);
  EXPECT_NE(read_all(dir + "/bad.log").find("NAME[@ARM]:ITEM"), std::string::npos) << read_all(dir + "/bad.log");
}

// xft-study with a problems file (code_eval): every arm's per-task pass/fail per seed. What a
// study records for a task is what `xft-tool eval` gets from the same model and settings; with
// no generated tokens the answer is the prompt's own function, so which tasks pass is known by
// hand; changing the code evaluation rescores the tasks without retraining.
TEST(Study, CodeProblemsGivePerTaskPassFailPerArm) {
  const auto dir = xft::test::scratch_dir("study_tasks");
  xft::test::make_tiny_world(dir);
  // Four HumanEval-style tasks; their prompts alone return None.
  {
    std::ofstream p(dir + "/tasks.jsonl");
    for (int i = 0; i < 4; ++i) {
      const bool passes = i % 2 == 0;
      p << nlohmann::json({{"task_id", "T/" + std::to_string(i)},
                           {"prompt", "def f" + std::to_string(i) + "(x):\n    \"\"\"Return x.\"\"\"\n"},
                           {"entry_point", "f" + std::to_string(i)},
                           {"test", std::string("def check(candidate):\n    assert candidate(1) ") +
                                        (passes ? "is None" : "== 1") + "\n"}})
               .dump()
        << "\n";
    }
  }
  const auto limits = xft::test::test_limits();
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string args = " --config " + config + " --set base_model=" + dir + "/base --set data.path=" + dir +
                           "/data.jsonl --set eval_data=" + dir + "/data.jsonl --set data.max_length=512" +
                           " --set code_eval.problems=" + dir + "/tasks.jsonl --set code_eval.python=" + limits.python +
                           " --set code_eval.unsafe_no_isolation=" + (limits.unsafe_no_isolation ? "true" : "false") +
                           " --seeds 1,2 --arms base,sft --bootstrap 500 --out " + dir + "/study";
  ASSERT_EQ(driver("xft-study", args + " --set code_eval.max_new_tokens=6", dir + "/study.log"), 0)
      << read_all(dir + "/study.log");
  auto r = read_json_file(dir + "/study/results.json");
  for (const auto* arm : {"base", "sft"}) {
    ASSERT_TRUE(r["arms"][arm].contains("pass_at_1_mean")) << arm;
    EXPECT_EQ(r["arms"][arm]["pass_at_1_per_seed"].size(), 2u);
    EXPECT_EQ(r["arms"][arm]["tasks"].size(), 4u);
  }
  ASSERT_EQ(r["task_comparisons"].size(), 1u);  // sft vs base
  EXPECT_EQ(r["task_comparisons"][0]["a"], "sft");
  EXPECT_EQ(r["task_comparisons"][0]["examples"], 4);
  EXPECT_EQ(r["code_eval"]["max_new_tokens"], 6);
  // The study's per-task records for seed 2's SFT model equal xft-tool eval's on that model.
  const auto tool = xft::test::env_or_empty("XFT_TOOL");
  ASSERT_EQ(xft::test::run(tool + " eval --model " + dir + "/study/seed-2/sft/final --problems " + dir +
                           "/tasks.jsonl --max-new-tokens 6 --python " + limits.python +
                           (limits.unsafe_no_isolation ? " --unsafe-no-isolation" : "") + " --out " + dir +
                           "/tool.jsonl > " + dir + "/tool.log 2>&1"),
            0)
      << read_all(dir + "/tool.log");
  const auto tool_records = xft::test::read_json_lines(dir + "/tool.jsonl");
  const auto study_records = xft::test::read_json_lines(dir + "/study/seed-2/tasks-sft.jsonl");
  ASSERT_EQ(tool_records.size(), 4u);
  ASSERT_EQ(study_records.size(), 4u);
  double passed = 0.0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(study_records[i]["task_id"], tool_records[i]["task_id"]);
    EXPECT_EQ(study_records[i]["completions"], tool_records[i]["completions"]) << i;
    EXPECT_EQ(study_records[i]["correct"], tool_records[i]["correct"]) << i;
    passed += study_records[i]["correct"].get<double>();
  }
  EXPECT_DOUBLE_EQ(r["arms"]["sft"]["pass_at_1_per_seed"][1].get<double>(), passed / 4.0);
  // No generated tokens: tasks 0 and 2 pass and 1 and 3 fail for every arm and seed, so every
  // paired difference is 0. Only the tasks are scored again; nothing is retrained. Records a
  // killed evaluation left under the old settings (here one claiming T/1 passed) are not reused.
  std::ofstream(dir + "/study/seed-1/tasks-sft.jsonl.partial")
      << nlohmann::json({{"task_id", "T/1"}, {"n", 1}, {"correct", 1}, {"statuses", {"passed"}}}).dump() << "\n";
  ASSERT_EQ(driver("xft-study", args + " --set code_eval.max_new_tokens=0", dir + "/zero.log"), 0)
      << read_all(dir + "/zero.log");
  EXPECT_NE(read_all(dir + "/zero.log").find("not redone"), std::string::npos);
  r = read_json_file(dir + "/study/results.json");
  for (const auto* arm : {"base", "sft"}) {
    EXPECT_EQ(r["arms"][arm]["pass_at_1_per_seed"], nlohmann::json({0.5, 0.5})) << arm;
    EXPECT_EQ(r["arms"][arm]["tasks"], nlohmann::json({{"T/0", 1.0}, {"T/1", 0.0}, {"T/2", 1.0}, {"T/3", 0.0}}));
  }
  const auto md = read_all(dir + "/study/results.md");
  EXPECT_NE(md.find("| sft | 0.5000 +- 0.0000 | 0.5000 0.5000 |"), std::string::npos) << md;
  const auto& c = r["task_comparisons"][0];
  EXPECT_EQ(c["mean_difference"].get<double>(), 0.0);
  EXPECT_EQ(c["wilcoxon_p"].get<double>(), 1.0);
  EXPECT_EQ(c["a_better_fraction"].get<double>(), 0.0);
  // The held-out losses were reused, not recomputed with another result.
  EXPECT_EQ(read_json_file(dir + "/study/seed-1/losses-sft.json")["code_eval"]["max_new_tokens"], 0);
}
