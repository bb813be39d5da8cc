// Live TensorBoard curves (logging.tensorboard): the CRC-32C of the event files against published
// vectors, and tiny training stages whose event files tensorboard's own reader loads while the
// stage trains, after it, and after a crash and resume, each compared with metrics.jsonl as torch's
// SummaryWriter writes it (tests/python/check_tensorboard_events.py). The pipelines' stage
// directories: tests/test_drivers.cpp.
#include <filesystem>
#include <string>

#include "test_util.h"
#include "tiny_training.h"
#include "train/crc32c.h"
#include "xft/distributed/distributed.h"
#include "xft/pipelines/experiment.h"
#include "xft/train/moe_telemetry.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace xft;
using namespace xft::test;

namespace {

// check_tensorboard_events.py on `events` against `metrics`; its output goes to `log`.
int check_events(const std::string& events, const std::string& metrics, const std::string& options,
                 const std::string& log) {
  const auto py = env_or_empty("XFT_PYTHON"), src = env_or_empty("XFT_SOURCE_DIR");
  if (py.empty() || src.empty()) {
    ADD_FAILURE() << "run through ctest (XFT_PYTHON, XFT_SOURCE_DIR)";
    return -1;
  }
  return run(py + " " + src + "/tests/python/check_tensorboard_events.py " + events + " " + metrics + " " + src + " " +
             options + " > " + log + " 2>&1");
}

// The tiny MoE's Trainer, with its routing telemetry, writing TensorBoard events to `events`.
struct MoeStage {
  CausalLM model;
  Distributed dist;
  Trainer trainer;
  MoeStage(const std::string& moe_dir, const InstructionDataset& data, const TrainConfig& cfg, const std::string& out,
           const std::string& events)
      : model(load_model(moe_dir)), trainer("moe", model, model_tensors(*model), data, cfg, out, 0) {
    trainer.set_telemetry([this] { return moe_telemetry(*model, dist); });
    trainer.set_tensorboard(events);
  }
};

}  // namespace

// RFC 3720 B.4 (iSCSI's CRC-32C examples) and the "123456789" check value of the CRC catalogue.
TEST(Crc32c, PublishedVectors) {
  std::string zeros(32, '\0'), ones(32, '\xFF'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) up[i] = static_cast<char>(i), down[i] = static_cast<char>(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(up.data(), up.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down.data(), down.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

// While the stage trains (from its after-step hook, before step 3 is logged) tensorboard already
// reads steps 1 and 2; at the end every step, with the MoE load per layer and expert.
TEST(Tensorboard, EventsAreReadableWhileTheStageTrainsAndEqualTheMetrics) {
  const auto dir = scratch_dir("live");
  tiny_moe(dir + "/moe");
  const auto data = tiny_data(dir, 29, 2);
  const auto events = dir + "/tb/moe", metrics = dir + "/out/metrics.jsonl";
  MoeStage stage(dir + "/moe", data, tiny_train(5), dir + "/out", events);
  int live_rc = -1;
  stage.trainer.set_after_step([&](int64_t step, int64_t) {
    if (step == 3) live_rc = check_events(events, metrics, "--steps 2", dir + "/live.log");
  });
  stage.trainer.run(false);
  EXPECT_EQ(live_rc, 0) << read_all(dir + "/live.log");
  EXPECT_EQ(check_events(events, metrics,
                         "--steps 5 --require moe/layer1/load_expert4 --require moe/layer0/entropy --require lr",
                         dir + "/end.log"),
            0)
      << read_all(dir + "/end.log");
}

// A stage that crashed after logging step 5 with its checkpoint at step 4 resumes from step 4:
// its curves then hold every step once, the retrained step 5 in place of the lost one, as
// metrics.jsonl does.
TEST(Tensorboard, AResumedStageWritesEveryStepOnce) {
  const auto dir = scratch_dir("resume");
  tiny_moe(dir + "/moe");
  const auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(7);
  cfg.save_every = 2;
  const auto events = dir + "/tb/moe", metrics = dir + "/out/metrics.jsonl";
  {
    MoeStage crashing(dir + "/moe", data, cfg, dir + "/out", events);
    crashing.trainer.set_after_step([](int64_t step, int64_t) {
      if (step == 6) throw std::runtime_error("simulated crash");
    });
    EXPECT_THROW(crashing.trainer.run(false), std::runtime_error);
  }
  ASSERT_EQ(check_events(events, metrics, "--steps 5", dir + "/crashed.log"), 0) << read_all(dir + "/crashed.log");
  MoeStage resumed(dir + "/moe", data, cfg, dir + "/out", events);
  resumed.trainer.run(true);
  EXPECT_EQ(check_events(events, metrics, "--steps 7 --require moe/layer0/load_expert1", dir + "/resumed.log"), 0)
      << read_all(dir + "/resumed.log");
}

// Each stage its own TensorBoard run, named after its directory under run_dir.
TEST(Tensorboard, TheLoggingSectionNamesOneDirectoryPerStage) {
  json j = {{"run_dir", "runs/x"}, {"data", {{"path", "d.jsonl"}}}, {"logging", {{"tensorboard", "tb"}}}};
  const auto c = ExperimentConfig::from_json(j, "e.json");
  EXPECT_EQ(c.logging.tensorboard_dir(c.run_dir, "runs/x/sft"), (fs::path("tb") / "sft").string());
  EXPECT_EQ(c.logging.tensorboard_dir(c.run_dir, "runs/x/xft/merge-l1"), (fs::path("tb") / "xft_merge-l1").string());
  EXPECT_EQ(c.to_json()["logging"]["tensorboard"], "tb");
  EXPECT_EQ(ExperimentConfig::from_json({{"run_dir", "r"}, {"data", {{"path", "d"}}}}, "e.json")
                .logging.tensorboard_dir("r", "r/sft"),
            "");
  j["logging"] = {{"tensorboard", 3}};
  expect_error([&] { ExperimentConfig::from_json(j, "e.json"); }, {"e.json", "logging.tensorboard"});
}
