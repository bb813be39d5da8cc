// The one config reader (src/core/config_reader.h) through every section of an experiment
// config: a typo anywhere is an error naming the file, the section and the known keys; a wrong
// type or an unknown enum value names section.field; what is written reads back the same.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "test_util.h"
#include "xft/pipelines/experiment.h"

using nlohmann::json;
using xft::ExperimentConfig;
using xft::test::expect_error;

namespace {

json minimal() { return {{"run_dir", "runs/x"}, {"base_model", "m"}, {"data", {{"path", "d.jsonl"}}}}; }

}  // namespace

TEST(Config, ATypoInEverySectionNamesTheSectionAndTheKnownKeys) {
  struct Case {
    const char* section;
    const char* typo;
    const char* known;  // one of the keys the message must list
  };
  const Case cases[] = {{"data", "max_lenght", "max_length"},
                        {"moe", "aux_loss_coeff", "aux_loss_coef"},
                        {"merge", "shared_rat", "shared_rate"},
                        {"ewa", "betta", "beta"},
                        {"sft_train", "lrr", "lr"},
                        {"moe_train", "warmpu", "warmup"},
                        {"merge_train", "precison", "precision"},
                        {"ewa_train", "epoch", "epochs"},
                        {"distributed", "expert_paralel", "expert_parallel"},
                        {"upcycle", "rope_teta", "rope_theta"},
                        {"logging", "tensorbord", "tensorboard"}};
  for (const auto& c : cases) {
    json j = minimal();
    if (std::string(c.section) == "moe") j["moe"] = {{"num_experts", 8}, {"top_k", 6}};
    if (!j.contains(c.section)) j[c.section] = json::object();
    j[c.section][c.typo] = 1;
    expect_error([&] { ExperimentConfig::from_json(j, "exp.json"); },
                 {"exp.json", std::string("unknown ") + c.section, std::string("'") + c.typo + "'", c.known});
  }
  json top = minimal();
  top["run_dri"] = "x";
  expect_error([&] { ExperimentConfig::from_json(top, "exp.json"); },
               {"exp.json", "experiment", "'run_dri'", "run_dir"});
}

TEST(Config, WrongTypesAndUnknownEnumValuesNameTheField) {
  auto with = [](const char* section, json fields) {
    json j = minimal();
    j[section] = std::move(fields);
    return j;
  };
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("sft_train", {{"lr", "fast"}}), "e.json");
      },
      {"e.json", "sft_train.lr", "number", "string"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("sft_train", {{"epochs", 1.5}}), "e.json");
      },
      {"e.json", "sft_train.epochs", "integer", "1.5"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("moe_train", {{"precision", "fp8"}}), "e.json");
      },
      {"e.json", "moe_train.precision", "fp32, bf16, bf16_autocast", "'fp8'"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("moe", {{"num_experts", 8}, {"top_k", 2}, {"routing", "topk"}}), "e.json");
      },
      {"e.json", "moe.routing", "xft, shared_no_norm, vanilla", "'topk'"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("moe", {{"top_k", 2}}), "e.json");
      },
      {"e.json", "moe.num_experts", "required"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("ewa", {{"schedule", "cosine"}}), "e.json");
      },
      {"e.json", "ewa.schedule", "constant, linear"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("merge", {{"fixed_shared_rate", 1}}), "e.json");
      },
      {"e.json", "merge.fixed_shared_rate", "boolean"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("distributed", {{"backend", "mpi"}}), "e.json");
      },
      {"e.json", "distributed.backend", "auto, gloo, nccl"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("data", {{"path", "d"}, {"format", "csv"}}), "e.json");
      },
      {"e.json", "data.format", "'csv'"});
  expect_error(
      [&] {
        ExperimentConfig::from_json(with("upcycle", {{"seed", -1}}), "e.json");
      },
      {"e.json", "upcycle.seed", "non-negative"});
}

TEST(Config, EnumsParseAndEverySectionReadsBackWhatItWrites) {
  json j = minimal();
  j["moe"] = {{"num_experts", 4}, {"top_k", 2}, {"router", "mlp"}, {"aux_loss", "switch"}};
  j["ewa"] = {{"schedule", "linear"}, {"beta", 0.25}};
  j["sft_train"] = {{"optimizer", "adamw"}, {"precision", "bf16_autocast"}, {"schedule", "constant"}};
  j["distributed"] = {{"backend", "gloo"}};
  const auto c = ExperimentConfig::from_json(j, "e.json");
  EXPECT_EQ(c.moe.router, xft::RouterKind::kMlp);
  EXPECT_EQ(c.moe.aux_loss, xft::AuxLossKind::kSwitch);
  EXPECT_EQ(c.moe.routing, xft::RoutingMode::kXft);
  EXPECT_EQ(c.ewa.schedule, xft::EwaSchedule::kLinear);
  EXPECT_EQ(c.sft_train.optimizer, xft::OptimizerKind::kAdamW);
  EXPECT_EQ(c.sft_train.precision, xft::Precision::kBf16Autocast);
  EXPECT_EQ(c.sft_train.schedule, xft::ScheduleKind::kConstant);
  EXPECT_EQ(c.moe_train.optimizer, xft::OptimizerKind::kAdafactor);  // the default
  EXPECT_EQ(c.distributed.backend, xft::BackendKind::kGloo);
  EXPECT_EQ(c.tokenizer, "m");  // defaults to base_model
  // Written and read again: the same config, field for field.
  const auto again = ExperimentConfig::from_json(c.to_json(), "again.json");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_EQ(c.to_json()["moe"]["router"], "mlp");
  EXPECT_EQ(c.to_json()["sft_train"]["precision"], "bf16_autocast");
  // Without a shared expert the routing defaults to vanilla (Eq. 1).
  const auto vanilla =
      xft::MoeConfig::from_json({{"num_experts", 4}, {"top_k", 2}, {"shared_expert", false}}, "m.json");
  EXPECT_EQ(vanilla.routing, xft::RoutingMode::kVanilla);
}

// Every shipped recipe and paper-row overlay loads as it is; the reference overlay turns on the
// authors' settings together.
TEST(Config, EveryShippedConfigLoadsAndTheReferenceSwitchSetsTheAuthorsCode) {
  namespace fs = std::filesystem;
  const fs::path configs = fs::path(XFT_TEST_SOURCE_DIR) / "configs";
  int loaded = 0;
  for (const auto& dir : {configs, configs / "paper"})
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".json") continue;
      SCOPED_TRACE(e.path().string());
      const auto c = ExperimentConfig::load(e.path().string());
      EXPECT_FALSE(c.run_dir.empty());
      ++loaded;
    }
  EXPECT_GE(loaded, 12);
  // A paper row: the base recipe with its own change.
  const auto soup = ExperimentConfig::load((configs / "paper" / "table5-learned-soup.json").string());
  EXPECT_FALSE(soup.merge.fixed_shared_rate);
  EXPECT_EQ(soup.merge_name, "merge-learned-soup");
  EXPECT_EQ(soup.moe_train.lr, 5e-5);  // from the base
  const auto lambda1 = ExperimentConfig::load((configs / "paper" / "table12-lambda-1.00.json").string());
  EXPECT_EQ(lambda1.merge.shared_rate, 1.0);
  // The reference switch, as an overlay file and as one --set.
  const auto dir = xft::test::scratch_dir("compat");
  std::ofstream(dir + "/ref.json") << json{{"include",
                                            {(configs / "deepseek-coder-1.3b.json").string(),
                                             (configs / "compat" / "reference.json").string()}}}
                                          .dump();
  for (const auto& c :
       {ExperimentConfig::load(dir + "/ref.json"),
        ExperimentConfig::load((configs / "deepseek-coder-1.3b.json").string(), {"compat=reference"})}) {
    EXPECT_EQ(c.compat, "reference");
    EXPECT_TRUE(c.moe.router_noise);
    EXPECT_EQ(c.moe.load_estimate, xft::LoadEstimate::kReference);
    EXPECT_TRUE(c.moe.aux_counts_padding);
    EXPECT_EQ(c.upcycle.rope_theta, 10000.0);
    for (const auto* t : {&c.sft_train, &c.moe_train, &c.merge_train, &c.ewa_train})
      EXPECT_EQ(t->loss_reduction, xft::LossReduction::kMicroBatch);
  }
  // Without it: the corrected method.
  const auto plain = ExperimentConfig::load((configs / "tiny.json").string());
  EXPECT_FALSE(plain.moe.router_noise);
  EXPECT_FALSE(plain.moe.aux_counts_padding);
  EXPECT_EQ(plain.upcycle.rope_theta, 0.0);
  // An explicit --set keeps the last word over the switch.
  const auto mixed =
      ExperimentConfig::load((configs / "tiny.json").string(), {"compat=reference", "upcycle.rope_theta=500000"});
  EXPECT_EQ(mixed.upcycle.rope_theta, 500000.0);
  EXPECT_TRUE(mixed.moe.router_noise);
  // Include errors name the file.
  std::ofstream(dir + "/bad.json") << R"({"include": "missing.json"})";
  expect_error([&] { ExperimentConfig::load(dir + "/bad.json"); }, {"bad.json", "missing.json", "not found"});
  std::ofstream(dir + "/loop.json") << R"({"include": "loop.json"})";
  expect_error([&] { ExperimentConfig::load(dir + "/loop.json"); }, {"loop.json", "deeper than 8"});
}
