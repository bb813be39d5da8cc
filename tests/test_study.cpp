// The study's paired tests against scipy on fixed vectors (tests/python/scipy_stats.py writes
// scipy's numbers at test time): the Wilcoxon signed-rank statistic and p-value, exact and
// normal-approximated with ties and zeros, and the percentile bootstrap interval of the mean;
// the study's table (held-out losses and per-task pass/fail), its ablation arms, the arms
// table of pipelines/run_layout.h and its code evaluation settings by hand.
#include <cmath>
#include <fstream>
#include <map>

#include "study/study_table.h"
#include "test_util.h"
#include "xft/eval/code_eval_config.h"
#include "xft/pipelines/run_layout.h"
#include "xft/study/ablation.h"
#include "xft/study/statistics.h"

TEST(Statistics, WilcoxonAndBootstrapMatchScipy) {
  std::ifstream in(xft::test::fixture("stats") + "/stats.json");
  ASSERT_TRUE(in) << "stats.json (made by tests/python/scipy_stats.py)";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 6u);
  for (const auto& [name, c] : cases.items()) {
    SCOPED_TRACE(name);
    const auto d = c.at("d").get<std::vector<double>>();
    const auto w = xft::wilcoxon_signed_rank(d);
    EXPECT_EQ(w.exact, c.at("method") == "exact");
    EXPECT_NEAR(w.statistic, c.at("statistic").get<double>(), 1e-9);
    EXPECT_NEAR(w.p_value, c.at("p_value").get<double>(), 1e-9 + 1e-7 * c.at("p_value").get<double>());
    // Different generators: the intervals agree to a small part of the mean's standard error.
    const auto ci = xft::bootstrap_mean_ci(d, 20000, 0.95, 3);
    const double sem = c.at("sem").get<double>();
    EXPECT_NEAR(ci.low, c.at("ci_low").get<double>(), 0.08 * sem);
    EXPECT_NEAR(ci.high, c.at("ci_high").get<double>(), 0.08 * sem);
  }
}

TEST(Statistics, EdgeCasesByHand) {
  // All differences zero: nothing to test.
  const auto none = xft::wilcoxon_signed_rank({0.0, 0.0});
  EXPECT_EQ(none.n, 0);
  EXPECT_EQ(none.p_value, 1.0);
  // n = 3, all positive: W- = 0, P(W <= 0) = 1/8, two-sided p = 1/4.
  const auto three = xft::wilcoxon_signed_rank({1.0, 2.0, 3.0});
  EXPECT_TRUE(three.exact);
  EXPECT_DOUBLE_EQ(three.statistic, 0.0);
  EXPECT_DOUBLE_EQ(three.p_value, 0.25);
  xft::test::expect_error([] { xft::wilcoxon_signed_rank({1.0, std::nan("")}); }, {"not finite"});
  const auto one = xft::bootstrap_mean_ci({2.0}, 100);
  EXPECT_EQ(one.low, 2.0);
  EXPECT_EQ(one.high, 2.0);
}

// Ablation arms: the spec's grammar, what each error names, and which variants share the MoE.
TEST(Ablation, ParsesNamesArmsOverlaysAndSets) {
  const auto dir = xft::test::scratch_dir("ablation");
  {
    std::ofstream(dir + "/merge.json")
        << R"({"include": "../x.json", "run_dir": "elsewhere", "merge": {"shared_rate": 0.5}})";
    std::ofstream(dir + "/moe.json") << R"({"comment": "c", "moe": {"top_k": 2}})";
  }
  auto lam = xft::Ablation::parse("lambda-0.5:" + dir + "/merge.json,merge_train.lr=0.1");
  EXPECT_EQ(lam.name, "lambda-0.5");
  EXPECT_EQ(lam.arm, "xft");
  EXPECT_EQ(lam.overlays.size(), 1u);
  EXPECT_EQ(lam.sets, std::vector<std::string>{"merge_train.lr=0.1"});
  EXPECT_TRUE(lam.merge_only());
  const auto j = lam.overlay_json().at(0);
  EXPECT_FALSE(j.contains("include"));  // the study's config is the base, not the overlay's
  EXPECT_FALSE(j.contains("run_dir"));
  EXPECT_EQ(j["merge"]["shared_rate"], 0.5);

  auto top2 = xft::Ablation::parse("top2@moe:" + dir + "/moe.json");
  EXPECT_EQ(top2.arm, "moe");
  EXPECT_FALSE(top2.merge_only());
  EXPECT_FALSE(xft::Ablation::parse("lr@xft:moe_train.lr=1").merge_only());
  EXPECT_TRUE(xft::Ablation::parse("soup@xft_init:merge.fixed_shared_rate=false").merge_only());

  using xft::test::expect_error;
  expect_error([] { xft::Ablation::parse("nocolon"); }, {"nocolon", "NAME[@ARM]:ITEM"});
  expect_error([] { xft::Ablation::parse("a@nope:x=1"); }, {"unknown arm 'nope'"});
  expect_error([] { xft::Ablation::parse("sft:x=1"); }, {"main arms"});
  expect_error([] { xft::Ablation::parse("bad name:x=1"); }, {"bad name", "letters"});
  expect_error([] { xft::Ablation::parse("a:x=1,,y=2"); }, {"empty item"});
  expect_error([] { xft::Ablation::parse("a:notanitem"); }, {"notanitem", ".json overlay nor key=value"});
  expect_error([] { xft::Ablation::parse("a@moe:merge.shared_rate=0.5"); }, {"only the merge", "xft"});
  expect_error([&] { xft::Ablation::parse("a:" + dir + "/missing.json"); }, {"missing.json"});
}

// The study's table by hand: three examples, two seeds, two arms.
TEST(StudyTable, MeansStdsAndPairedDifferencesByHand) {
  std::map<std::string, xft::ArmScores> arms;
  arms["a"].losses = {{1.0, 2.0, 3.0}, {3.0, 2.0, 1.0}};  // seed means 2, 2; per example 2, 2, 2
  arms["b"].losses = {{2.0, 2.5, 1.0}, {2.0, 3.5, 1.0}};  // seed means 11/6, 13/6; per example 2, 3, 1
  arms["b"].about = {{"name", "b"}};
  const auto t = xft::study_table("cfg", {1, 2}, {"a", "b"}, arms, {{"a", "b"}, {"a", "missing"}}, 2000);
  EXPECT_DOUBLE_EQ(t["arms"]["a"]["heldout_loss_mean"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(t["arms"]["a"]["heldout_loss_std"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(t["arms"]["b"]["heldout_loss_mean"].get<double>(), 2.0);
  EXPECT_NEAR(t["arms"]["b"]["heldout_loss_std"].get<double>(), std::sqrt(2.0) / 6.0, 1e-12);  // |11/6 - 13/6| / sqrt 2
  EXPECT_TRUE(t["arms"]["b"].contains("ablation"));
  ASSERT_EQ(t["comparisons"].size(), 1u);  // the pair with a missing arm is left out
  const auto& c = t["comparisons"][0];
  // Differences per example 0, -1, 1: mean 0, a better on one of three, Wilcoxon over the two
  // non-zero ones (ranks tie) gives W = 1.5.
  EXPECT_DOUBLE_EQ(c["mean_difference"].get<double>(), 0.0);
  EXPECT_NEAR(c["a_better_fraction"].get<double>(), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(c["examples"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(c["wilcoxon_p"].get<double>(), xft::wilcoxon_signed_rank({0.0, -1.0, 1.0}).p_value);
  const auto md = xft::study_markdown(t);
  EXPECT_NE(md.find("| a vs b | 0.0000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("33.3% of 3"), std::string::npos) << md;
  // Seeds that scored different held-out sets cannot be paired.
  arms["a"].losses[1].pop_back();
  xft::test::expect_error([&] { xft::study_table("cfg", {1, 2}, {"a", "b"}, arms, {}, 10); }, {"different numbers"});
}

// Per-task pass/fail by hand: two arms, two seeds, four tasks.
TEST(StudyTable, PassRatesAndPairedTaskDifferencesByHand) {
  std::map<std::string, xft::ArmScores> arms;
  for (const auto* name : {"a", "b"}) {
    arms[name].losses = {{1.0}, {1.0}};
    arms[name].task_ids = {"T/0", "T/1", "T/2", "T/3"};
  }
  arms["a"].passes = {{1, 0, 1, 0}, {1, 1, 1, 0}};  // seed pass@1 0.5, 0.75; per task 1, 0.5, 1, 0
  arms["b"].passes = {{0, 0, 1, 0}, {0, 0, 1, 1}};  // seed pass@1 0.25, 0.5; per task 0, 0, 1, 0.5
  const auto t = xft::study_table("cfg", {1, 2}, {"a", "b"}, arms, {{"a", "b"}}, 2000);
  const auto& a = t["arms"]["a"];
  EXPECT_DOUBLE_EQ(a["pass_at_1_mean"].get<double>(), 0.625);
  EXPECT_NEAR(a["pass_at_1_std"].get<double>(), 0.25 / std::sqrt(2.0), 1e-12);
  EXPECT_EQ(a["pass_at_1_per_seed"], nlohmann::json({0.5, 0.75}));
  EXPECT_EQ(a["tasks"], nlohmann::json({{"T/0", 1.0}, {"T/1", 0.5}, {"T/2", 1.0}, {"T/3", 0.0}}));
  EXPECT_DOUBLE_EQ(t["arms"]["b"]["pass_at_1_mean"].get<double>(), 0.375);
  ASSERT_EQ(t["task_comparisons"].size(), 1u);
  const auto& c = t["task_comparisons"][0];
  // Differences per task 1, 0.5, 0, -0.5: mean 0.25; a better on two tasks, b on one.
  EXPECT_DOUBLE_EQ(c["mean_difference"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(c["a_better_fraction"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(c["b_better_fraction"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(c["wilcoxon_p"].get<double>(), xft::wilcoxon_signed_rank({1.0, 0.5, 0.0, -0.5}).p_value);
  EXPECT_LE(c["ci95"][0].get<double>(), 0.25);
  EXPECT_GE(c["ci95"][1].get<double>(), 0.25);
  const auto md = xft::study_markdown(t);
  EXPECT_NE(md.find("| a | 0.6250 +- 0.1768 | 0.5000 0.7500 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| a vs b | 0.2500 |"), std::string::npos) << md;
  EXPECT_NE(md.find("50.0% | 25.0% of 4"), std::string::npos) << md;
  // Arms scored on different problems cannot be paired.
  arms["b"].task_ids[3] = "T/9";
  xft::test::expect_error(
      [&] {
        xft::study_table("cfg", {1, 2}, {"a", "b"}, arms, {}, 10);
      },
      {"arm b", "other problems"});
  // Without passes there is no task table.
  for (auto& [n, arm] : arms) arm.passes.clear();
  EXPECT_FALSE(xft::study_table("cfg", {1, 2}, {"a", "b"}, arms, {{"a", "b"}}, 10).contains("task_comparisons"));
}

// The code_eval section: defaults, the options it makes, and errors naming the field.
TEST(CodeEvalConfig, ReadsChecksAndMakesOptions) {
  using xft::CodeEvalConfig;
  const auto c = CodeEvalConfig::from_json({{"problems", "he.jsonl"}, {"limit", 3}, {"timeout_s", 2.5}}, "x.json");
  EXPECT_TRUE(c.enabled());
  const auto o = c.eval_options();
  EXPECT_EQ(o.limit, 3);
  EXPECT_EQ(o.samples, 1);
  EXPECT_EQ(o.ks, std::vector<int64_t>({1}));
  EXPECT_DOUBLE_EQ(o.limits.timeout_s, 2.5);
  EXPECT_EQ(o.limits.memory_bytes, 1024LL * 1024 * 1024);
  EXPECT_EQ(c.generation(c.prompt_mode(false)).temperature, 0.0);
  // The prompt modes: the paper's instruction prompt for every arm unless the base gets its own.
  EXPECT_EQ(c.prompt_mode(true), xft::PromptMode::kInstruction);
  EXPECT_EQ(c.generation(xft::PromptMode::kInstruction).stop, std::vector<std::string>({"\n```"}));
  const auto chat_base = CodeEvalConfig::from_json({{"problems", "he.jsonl"}, {"base_prompt", "chat"}}, "x.json");
  EXPECT_EQ(chat_base.prompt_mode(true), xft::PromptMode::kChat);
  EXPECT_EQ(chat_base.prompt_mode(false), xft::PromptMode::kInstruction);
  EXPECT_EQ(CodeEvalConfig::from_json({{"prompt", "completion"}}, "x").generation(xft::PromptMode::kCompletion).stop,
            xft::stop_sequences(xft::PromptMode::kCompletion));
  EXPECT_EQ(CodeEvalConfig::from_json(c.to_json(), "again").to_json(), c.to_json());
  EXPECT_FALSE(CodeEvalConfig::from_json(nlohmann::json::object(), "x.json").enabled());
  EXPECT_EQ(CodeEvalConfig::from_json({{"samples", 5}, {"temperature", 0.8}}, "x").eval_options().ks,
            std::vector<int64_t>({1, 5}));
  using xft::test::expect_error;
  expect_error(
      [] {
        CodeEvalConfig::from_json({{"samples", 5}}, "x.json");
      },
      {"x.json", "code_eval.samples", "temperature"});
  expect_error([] { CodeEvalConfig::from_json({{"limit", -1}}, "x.json"); }, {"x.json", "code_eval.limit"});
  expect_error([] { CodeEvalConfig::from_json({{"batch", 0}}, "x.json"); }, {"code_eval.batch"});
  expect_error([] { CodeEvalConfig::from_json({{"problem", "a"}}, "x.json"); }, {"x.json", "problem", "problems"});
  expect_error([] { CodeEvalConfig::from_json({{"timeout_s", "10"}}, "x.json"); }, {"code_eval.timeout_s"});
  expect_error(
      [] {
        CodeEvalConfig::from_json({{"prompt", "plain"}}, "x.json");
      },
      {"x.json", "code_eval.prompt", "'plain'"});
  expect_error([] { CodeEvalConfig::from_json({{"base_prompt", "x"}}, "x.json"); }, {"code_eval.base_prompt"});
}

// Each arm's model, the stages whose budget it counts and the section that scores it, for a run
// directory with a renamed merge stage (a lambda sweep's): the layout pipelines.h documents.
TEST(RunLayout, ArmsNameTheirModelsStagesAndSections) {
  xft::ExperimentConfig c;
  c.run_dir = "/r";
  c.base_model = "/base";
  c.merge_name = "merge-l5";
  const xft::RunLayout run(c);
  auto model = [&](const char* arm) { return xft::find_arm(arm, "t").model(c, run).string(); };
  EXPECT_EQ(model("base"), "/base");
  EXPECT_EQ(model("sft"), "/r/sft/final");
  EXPECT_EQ(model("moe"), "/r/xft/moe/final");
  EXPECT_EQ(model("xft"), "/r/xft/merge-l5/final");
  EXPECT_EQ(model("xft_init"), "/r/xft/merge-l5/init");
  EXPECT_EQ(model("ewa"), "/r/ewa/final");
  const auto xft_stages = xft::find_arm("xft", "t").stages(run);
  ASSERT_EQ(xft_stages.size(), 2u);
  EXPECT_EQ(xft_stages[0].first.string(), "/r/xft/moe");
  EXPECT_EQ(xft_stages[1].second.string(), "/r/xft/merge-l5/final");
  EXPECT_EQ(xft::find_arm("ewa", "t").stages(run).at(0).second.string(), "/r/ewa/moe-init");
  EXPECT_TRUE(xft::find_arm("base", "t").stages(run).empty());
  EXPECT_EQ(xft::find_arm("moe", "t").train, &xft::ExperimentConfig::moe_train);
  EXPECT_EQ(xft::arm_list(), "base, sft, moe, xft, xft_init, ewa");
  EXPECT_EQ(xft::arm_names(/*with_base=*/false), (std::vector<std::string>{"sft", "moe", "xft", "xft_init", "ewa"}));
  xft::test::expect_error([] { xft::find_arm("xtf", "study"); }, {"study", "unknown arm 'xtf'", "base, sft"});
}
