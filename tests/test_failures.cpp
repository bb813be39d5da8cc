// Hostile inputs and failures: config.json against the tensors it describes, checksummed
// checkpoints and exports, a full disk during a save, and SIGTERM / SIGINT during training.
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "test_util.h"
#include "tiny_training.h"
#include "tiny_world.h"
#include "xft/core/manifest.h"
#include "xft/methods/upcycle.h"
#include "xft/model/model_io.h"
#include "xft/train/resume_state.h"
#include "xft/train/stop_signal.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::expect_error;
using xft::test::read_all;
using xft::test::tiny_data;
using xft::test::tiny_dense;
using xft::test::tiny_train;

namespace {

// A real tiny checkpoint written by xft itself: 2 layers, hidden 32, vocabulary 61.
std::string tiny_checkpoint(const std::string& dir, uint64_t seed = 1) {
  CausalLM model(tiny_dense());
  model->init_weights(0.05, seed);
  save_model(*model, dir);
  return dir;
}

// Rewrites dir/config.json with `edit` applied (the tensors stay as they are).
void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = read_json_file(dir + "/config.json");
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(2);
  fs::remove(dir + "/" + kManifestFile);  // the edit is deliberate: test the config, not the checksum
}

void flip_byte(const std::string& path, int64_t from_end) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-from_end, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  f.seekp(-from_end, std::ios::end);
  c = static_cast<char>(c ^ 0x10);
  f.write(&c, 1);
}

void truncate_by(const std::string& path, uintmax_t bytes) { fs::resize_file(path, fs::file_size(path) - bytes); }

void expect_same_tensors(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// RLIMIT_FSIZE lowered for this process while it lives, with SIGXFSZ ignored so that a write
// past the limit fails with EFBIG (as the drivers arrange) instead of killing the test.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = saved_;
    lim.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = SIG_DFL;
};

}  // namespace

// ---- 1. config.json against the tensors ----

TEST(ConfigCheck, AbsurdSizesAreRefusedBeforeAnyAllocation) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("absurd") + "/m");
  const auto cfg = dir + "/config.json";
  edit_config(dir, [](nlohmann::json& j) { j["hidden_size"] = 1000000000000; });
  expect_error([&] { load_model(dir); }, {cfg, "hidden_size", "model.embed_tokens.weight", "[61, 1000000000000]",
                                          "[61, 32]", "model.safetensors"});
  edit_config(dir, [](nlohmann::json& j) {
    j["hidden_size"] = 32;
    j["num_hidden_layers"] = 100000000;
  });
  expect_error([&] { load_model(dir); }, {cfg, "num_hidden_layers is 100000000", "2 decoder layers"});
  edit_config(dir, [](nlohmann::json& j) {
    j["num_hidden_layers"] = 2;
    j["vocab_size"] = 4000000000000;
  });
  expect_error([&] { load_model(dir); }, {cfg, "vocab_size", "model.embed_tokens.weight", "[4000000000000, 32]"});
  edit_config(dir, [](nlohmann::json& j) {
    j["vocab_size"] = 61;
    j["intermediate_size"] = 1000000000000000;
  });
  expect_error([&] { load_model(dir); }, {cfg, "intermediate_size", "gate_proj.weight", "[40, 32]"});
  // head_dim x heads past int64: an overflow, not a wrapped-around small size.
  edit_config(dir, [](nlohmann::json& j) {
    j["intermediate_size"] = 40;
    j["head_dim"] = 4611686018427387904;
  });
  expect_error([&] { load_model(dir); }, {cfg, "num_attention_heads x head_dim", "overflows"});
}

TEST(ConfigCheck, NegativeZeroAndFractionalSizesNameTheField) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("sizes") + "/m");
  const nlohmann::json good = read_json_file(dir + "/config.json");
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "num_key_value_heads"}) {
    for (int64_t bad : {0, -1}) {
      edit_config(dir, [&](nlohmann::json& j) {
        j = good;
        j[field] = bad;
      });
      expect_error([&] { load_model(dir); }, {dir + "/config.json", field, "positive integer"});
    }
  }
  edit_config(dir, [&](nlohmann::json& j) {
    j = good;
    j["hidden_size"] = 32.5;
  });
  expect_error([&] { load_model(dir); }, {"config.json", "hidden_size", "must be an integer", "32.5"});
  edit_config(dir, [&](nlohmann::json& j) {
    j = good;
    j["head_dim"] = -8;
  });
  expect_error([&] { load_model(dir); }, {"config.json", "head_dim"});
}

TEST(ConfigCheck, ShapeMismatchNamesFieldTensorAndBothShapes) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("mismatch") + "/m");
  edit_config(dir, [](nlohmann::json& j) { j["num_key_value_heads"] = 4; });
  expect_error([&] { load_model(dir); },
               {"config.json", "num_key_value_heads x head_dim", "model.layers.0.self_attn.k_proj.weight", "[32, 32]",
                "[16, 32]", "model.safetensors"});
  edit_config(dir, [](nlohmann::json& j) {
    j["num_key_value_heads"] = 2;
    j["tie_word_embeddings"] = false;
    j["num_hidden_layers"] = 1;
  });
  EXPECT_THROW(load_model(dir), xft::Error);  // a second layer's tensors are unexpected
  // An MoE config against a dense checkpoint: the expert stacks it implies are missing.
  edit_config(dir, [](nlohmann::json& j) {
    j["num_hidden_layers"] = 2;
    j["moe"] = {{"num_experts", 4}, {"top_k", 2}};
  });
  expect_error([&] { load_model(dir); }, {dir, "missing", "model.layers.0.mlp.experts.gate_proj"});
  // An MoE checkpoint whose config claims another expert count.
  const auto moe_dir = xft::test::scratch_dir("moe") + "/m";
  CausalLM dense(tiny_dense());
  MoeConfig m;
  m.num_experts = 5;
  m.top_k = 3;
  auto up = upcycle(tiny_dense(), model_tensors(*dense), m, 2);
  save_model_tensors(up.config, up.tensors, moe_dir);
  EXPECT_NO_THROW(load_model(moe_dir));
  edit_config(moe_dir, [](nlohmann::json& j) { j["moe"]["num_experts"] = 7; });
  expect_error([&] { load_model(moe_dir); }, {"config.json", "moe.num_experts", "model.layers.0.mlp.experts.gate_proj",
                                              "[7, 40, 32]", "[5, 40, 32]"});
}

TEST(ConfigCheck, RangesOfRopeNormAndPositions) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("ranges") + "/m");
  const nlohmann::json good = read_json_file(dir + "/config.json");
  struct Case {
    const char* field;
    nlohmann::json value;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"max_position_embeddings", 0, "max_position_embeddings"},
      {"max_position_embeddings", -5, "max_position_embeddings"},
      {"max_position_embeddings", int64_t(1) << 40, "max_position_embeddings"},
      {"max_position_embeddings", 2.5, "must be an integer"},
      {"rope_theta", 0.0, "rope_theta"},
      {"rope_theta", -10000.0, "rope_theta"},
      {"rope_theta", "10000", "rope_theta"},
      {"rms_norm_eps", 0.0, "rms_norm_eps"},
      {"rms_norm_eps", -1e-6, "rms_norm_eps"},
      {"rms_norm_eps", 1.0, "rms_norm_eps"},
      {"rope_scaling", {{"type", "linear"}, {"factor", 0.5}}, "factor"},
      {"rope_scaling",
       {{"rope_type", "llama3"},
        {"factor", 8.0},
        {"low_freq_factor", 4.0},
        {"high_freq_factor", 1.0},
        {"original_max_position_embeddings", 64}},
       "high_freq_factor"},
      {"rope_scaling",
       {{"rope_type", "llama3"},
        {"factor", 8.0},
        {"low_freq_factor", 0.0},
        {"high_freq_factor", 4.0},
        {"original_max_position_embeddings", 64}},
       "low_freq_factor"},
      {"rope_scaling",
       {{"rope_type", "llama3"},
        {"factor", 8.0},
        {"low_freq_factor", 1.0},
        {"high_freq_factor", 4.0},
        {"original_max_position_embeddings", 0}},
       "original_max_position_embeddings"},
  };
  for (const auto& c : cases) {
    edit_config(dir, [&](nlohmann::json& j) {
      j = good;
      j[c.field] = c.value;
    });
    expect_error([&] { ModelConfig::load(dir); }, {dir + "/config.json", c.field, c.says});
  }
  // A number past double's range is refused by the reader, naming the file (edited as text:
  // nlohmann cannot hold it).
  const std::string text = good.dump(2);
  const std::string theta = "\"rope_theta\": 100000.0";
  ASSERT_NE(text.find(theta), std::string::npos) << text;
  std::ofstream(dir + "/config.json") << std::string(text).replace(text.find(theta), theta.size(),
                                                                   "\"rope_theta\": 1e400");
  expect_error([&] { ModelConfig::load(dir); }, {dir + "/config.json", "invalid JSON", "1e400"});
  std::ofstream(dir + "/config.json") << good.dump(2);
  EXPECT_NO_THROW(load_model(dir));
}

// ---- 2. checksums ----

TEST(Checksums, ExportedModelRecordsEveryFileAndDamageIsNamed) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("export") + "/m");
  const auto manifest = read_json_file(dir + "/" + kManifestFile);
  EXPECT_TRUE(manifest["files"].contains("model.safetensors"));
  EXPECT_TRUE(manifest["files"].contains("config.json"));
  EXPECT_NO_THROW(load_model(dir));
  const auto weights = dir + "/model.safetensors";
  const auto copy = dir + ".orig";
  fs::copy_file(weights, copy);
  // A flipped bit in the last weight: the safetensors header still parses; only the checksum sees it.
  flip_byte(weights, 1);
  EXPECT_NO_THROW(SafetensorsFile::open(weights));
  expect_error([&] { load_model(dir); }, {weights, "CRC32", "damaged"});
  fs::copy_file(copy, weights, fs::copy_options::overwrite_existing);
  truncate_by(weights, 100);
  expect_error([&] { load_model(dir); }, {weights, "truncated"});
  fs::copy_file(copy, weights, fs::copy_options::overwrite_existing);
  flip_byte(dir + "/config.json", 3);
  expect_error([&] { load_model(dir); }, {dir + "/config.json", "CRC32"});
}

TEST(Checksums, ADirectoryWrittenBeforeChecksumsStillLoads) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("legacy") + "/m");
  fs::remove(dir + "/" + kManifestFile);
  EXPECT_NO_THROW(load_model(dir));
  EXPECT_EQ(manifest_damage(dir), "");
}

class DamagedCheckpoint : public ::testing::TestWithParam<std::string> {};

// The newest checkpoint damaged (a bit flipped / a file cut short): --resume says so on stderr,
// falls back to the previous one, and still ends exactly where the uninterrupted run ends.
TEST_P(DamagedCheckpoint, ResumeFallsBackToTheNewestIntactOne) {
  const auto dir = xft::test::scratch_dir("damaged");
  auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(7);
  cfg.save_every = 2;
  cfg.keep_last = 10;  // step-00000004 survives to be looked at again
  CausalLM a(tiny_dense());
  a->init_weights(0.05, 4);
  Trainer(" run", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);

  CausalLM b(tiny_dense());
  b->init_weights(0.05, 4);
  Trainer crashing(" run", b, model_tensors(*b), data, cfg, dir + "/b", 0);
  crashing.set_after_step([](int64_t step, int64_t) {
    if (step == 5) throw std::runtime_error("simulated crash");
  });
  EXPECT_THROW(crashing.run(false), std::runtime_error);
  const auto newest = dir + "/b/checkpoints/step-00000004";
  ASSERT_TRUE(fs::exists(newest + "/" + kManifestFile));
  if (GetParam() == "flip")
    flip_byte(newest + "/trainable.safetensors", 7);
  else
    truncate_by(newest + "/optimizer.safetensors", 64);

  CausalLM c(tiny_dense());
  c->init_weights(0.05, 4);
  ::testing::internal::CaptureStderr();
  Trainer(" run", c, model_tensors(*c), data, cfg, dir + "/b", 0).run(true);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("step-00000004 is damaged"), std::string::npos) << err;
  EXPECT_NE(err.find(GetParam() == "flip" ? "trainable.safetensors" : "optimizer.safetensors"), std::string::npos)
      << err;
  EXPECT_NE(err.find("falling back"), std::string::npos) << err;
  EXPECT_NE(err.find("resumed at step 2/7"), std::string::npos) << err;
  expect_same_tensors(model_tensors(*a), model_tensors(*c));
  ASSERT_TRUE(fs::exists(newest + "/" + kManifestFile));
  EXPECT_EQ(ResumeState::damage(newest), "") << "the damaged checkpoint is rewritten whole";
}

INSTANTIATE_TEST_SUITE_P(Kinds, DamagedCheckpoint, ::testing::Values("flip", "truncate"));

TEST(Checksums, EveryCheckpointDamagedIsAnErrorNotAFreshStart) {
  const auto dir = xft::test::scratch_dir("alldamaged");
  auto data = tiny_data(dir, 16, 2);
  auto cfg = tiny_train(2);
  cfg.save_every = 1;
  CausalLM a(tiny_dense());
  Trainer(" run", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);
  for (const char* s : {"step-00000001", "step-00000002"})
    flip_byte(dir + "/a/checkpoints/" + s + "/rng.safetensors", 2);
  CausalLM b(tiny_dense());
  ::testing::internal::CaptureStderr();
  expect_error([&] { Trainer(" run", b, model_tensors(*b), data, cfg, dir + "/a", 0).run(true); },
               {"every checkpoint", "damaged", "step-00000001/rng.safetensors", "step-00000002/rng.safetensors"});
  ::testing::internal::GetCapturedStderr();
}

// ---- 3. a full disk ----

TEST(FullDisk, AWriteThatFailsNamesTheFileAndTheFullDisk) {
  const auto dir = xft::test::scratch_dir("devfull");
  // The writer's temporary is a link to /dev/full, whose every write fails with ENOSPC.
  const auto path = dir + "/trainer.json";
  fs::create_symlink("/dev/full", path + ".tmp." + std::to_string(::getpid()));
  expect_error([&] { write_file_atomic(path, std::string(1000, 'x')); }, {path, "the disk is full"});
  EXPECT_EQ(entries(dir), std::vector<std::string>{}) << "the temporary is removed";
  const auto st = dir + "/w.safetensors";
  fs::create_symlink("/dev/full", st + ".tmp." + std::to_string(::getpid()));
  expect_error([&] { save_safetensors(st, {{"w", torch::ones({64})}}); }, {st, "the disk is full"});
  EXPECT_EQ(entries(dir), std::vector<std::string>{});
}

TEST(FullDisk, AFailedExportLeavesThePreviousExportWholeAndNoPartialFiles) {
  const auto root = xft::test::scratch_dir("export");
  const auto dir = tiny_checkpoint(root + "/m", 1);
  const auto before = model_tensors(*load_model(dir));
  CausalLM other(tiny_dense());
  other->init_weights(0.05, 2);
  {
    const FileSizeLimit limit(4096);  // the embedding alone is 61 x 32 x 4 bytes
    expect_error([&] { save_model(*other, dir); },
                 {"cannot write", dir, "model.safetensors", "file size limit", "the previous m is left as it was"});
  }
  EXPECT_EQ(entries(root), std::vector<std::string>{"m"});
  EXPECT_EQ(manifest_damage(dir), "");
  expect_same_tensors(before, model_tensors(*load_model(dir)));
}

// A checkpoint save hits the limit: the stage stops with the cause and the intact earlier
// checkpoint named, nothing partial is left, and --resume (space freed) loses no work.
TEST(FullDisk, AFailedCheckpointKeepsThePreviousOneAndResumeLosesNothing) {
  const auto dir = xft::test::scratch_dir("ckpt");
  auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(6);
  cfg.save_every = 2;
  CausalLM a(tiny_dense());
  a->init_weights(0.05, 4);
  Trainer(" run", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);

  CausalLM b(tiny_dense());
  b->init_weights(0.05, 4);
  std::unique_ptr<FileSizeLimit> limit;
  Trainer full(" run", b, model_tensors(*b), data, cfg, dir + "/b", 0);
  full.set_after_step([&](int64_t step, int64_t) {
    if (step == 3) limit = std::make_unique<FileSizeLimit>(4096);  // metrics.jsonl stays below it
  });
  expect_error([&] { full.run(false); }, {"saving checkpoint step-00000004 failed", "trainable.safetensors",
                                          "file size limit", "step-00000002, is intact", "--resume"});
  limit.reset();
  EXPECT_EQ(entries(dir + "/b/checkpoints"), std::vector<std::string>{"step-00000002"});
  EXPECT_EQ(ResumeState::damage(dir + "/b/checkpoints/step-00000002"), "");

  CausalLM c(tiny_dense());
  c->init_weights(0.05, 4);
  Trainer(" run", c, model_tensors(*c), data, cfg, dir + "/b", 0).run(true);
  expect_same_tensors(model_tensors(*a), model_tensors(*c));
}

// ---- 4. signals ----

// SIGTERM in the middle of step 3: step 3 completes, is checkpointed, and the stage stops with
// Stopped; --resume then ends exactly where the uninterrupted run ends.
TEST(StopSignal, SigtermFinishesTheStepCheckpointsItAndResumesExactly) {
  const auto dir = xft::test::scratch_dir("sigterm");
  auto data = tiny_data(dir, 29, 2);
  auto cfg = tiny_train(6);
  cfg.save_every = 4;
  CausalLM a(tiny_dense());
  a->init_weights(0.05, 4);
  Trainer(" run", a, model_tensors(*a), data, cfg, dir + "/a", 0).run(false);

  CausalLM b(tiny_dense());
  b->init_weights(0.05, 4);
  Trainer stopped(" run", b, model_tensors(*b), data, cfg, dir + "/b", 0);
  stopped.set_after_step([](int64_t step, int64_t) {
    if (step == 3) ::raise(SIGTERM);  // the handler only records it: step 3 goes on to the end
  });
  ::testing::internal::CaptureStderr();
  try {
    stopped.run(false);
    ADD_FAILURE() << "expected Stopped";
  } catch (const Stopped& e) {
    EXPECT_EQ(e.signal(), SIGTERM);
    const std::string msg = e.what();
    for (const char* part : {"stopped by SIGTERM after step 3 of 6", "step-00000003", "--resume"})
      EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(entries(dir + "/b/checkpoints"), std::vector<std::string>{"step-00000003"});
  // The handler is gone with the stage: SIGTERM's previous disposition is back.
  struct sigaction now {};
  sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);

  CausalLM c(tiny_dense());
  c->init_weights(0.05, 4);
  Trainer(" run", c, model_tensors(*c), data, cfg, dir + "/b", 0).run(true);
  expect_same_tensors(model_tensors(*a), model_tensors(*c));
}

namespace {

// Starts `driver args` with its output in `log`; returns its pid.
pid_t spawn_driver(const std::string& name, const std::string& args, const std::string& log) {
  const std::string cmd =
      "exec " + xft::test::env_or_empty("XFT_BIN_DIR") + "/" + name + " " + args + " > " + log + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ), 0);
  return pid;
}

size_t count_lines(const std::string& path) {
  const auto text = read_all(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

NamedTensors final_tensors(const std::string& dir) {
  auto files = TensorDirectory::open(dir);
  NamedTensors out;
  for (const auto& n : files.names()) out.emplace_back(n, files.get(n));
  return out;
}

}  // namespace

// The sft driver gets SIGTERM once training is under way: it exits with kExitStopped and a
// checkpoint of its last finished step; --resume ends with the same model, bit for bit, as a
// run never interrupted.
TEST(StopSignal, DriverStoppedBySigtermResumesToTheUninterruptedModel) {
  const auto dir = xft::test::scratch_dir("world");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string common = " --config " + config + " --set base_model=" + dir + "/base --set data.path=" + dir +
                             "/data.jsonl --set eval_data= --set data.max_length=512 --set sft_train.max_steps=40" +
                             " --set sft_train.save_every=0 --set sft_train.log_every=1";
  ASSERT_EQ(xft::test::driver("sft", common + " --set run_dir=" + dir + "/whole", dir + "/whole.log"), 0)
      << read_all(dir + "/whole.log");

  const std::string run = common + " --set run_dir=" + dir + "/cut";
  const pid_t pid = spawn_driver("sft", run, dir + "/cut.log");
  const auto metrics = dir + "/cut/sft/metrics.jsonl";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (count_lines(metrics) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GT(count_lines(metrics), 0u) << read_all(dir + "/cut.log");
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const auto log = read_all(dir + "/cut.log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_EQ(WEXITSTATUS(status), kExitStopped) << log;
  const size_t last = count_lines(metrics);
  ASSERT_LT(last, 40u) << "stopped before the end";
  char name[32];
  std::snprintf(name, sizeof name, "step-%08zu", last);
  EXPECT_NE(log.find("stopped by SIGTERM after step " + std::to_string(last) + " of 40"), std::string::npos) << log;
  EXPECT_EQ(entries(dir + "/cut/sft/checkpoints"), std::vector<std::string>{name}) << "the last finished step";
  EXPECT_FALSE(fs::exists(dir + "/cut/sft/final"));

  ASSERT_EQ(xft::test::driver("sft", run + " --resume", dir + "/resume.log"), 0) << read_all(dir + "/resume.log");
  EXPECT_NE(read_all(dir + "/resume.log").find("resumed at step " + std::to_string(last)), std::string::npos);
  expect_same_tensors(final_tensors(dir + "/whole/sft/final"), final_tensors(dir + "/cut/sft/final"));
  EXPECT_EQ(xft::test::losses(dir + "/whole/sft/metrics.jsonl"), xft::test::losses(metrics));
}

// Under `ulimit -f` the driver reports the limit, naming the file, instead of dying of SIGXFSZ.
TEST(FullDisk, DriverUnderAFileSizeLimitStopsWithAClearError) {
  const auto dir = xft::test::scratch_dir("world");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string args = " --config " + config + " --set run_dir=" + dir + "/run --set base_model=" + dir +
                           "/base --set data.path=" + dir + "/data.jsonl --set eval_data= --set data.max_length=512";
  const auto log = dir + "/sft.log";
  // 16 KiB: the experiment file and metrics fit; the first checkpoint (a 38 KB embedding) does not.
  const int rc = xft::test::run("ulimit -f 16; exec " + xft::test::env_or_empty("XFT_BIN_DIR") + "/sft" + args + " > " +
                                log + " 2>&1");
  EXPECT_EQ(rc, 1) << read_all(log);
  const auto text = read_all(log);
  for (const char* part : {"saving checkpoint step-00000002 failed", "trainable.safetensors", "file size limit",
                           "no earlier checkpoint", "--resume"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  EXPECT_EQ(entries(dir + "/run/sft/checkpoints"), std::vector<std::string>{});
}

// ---- 5. soak: kill -9 at random moments ----

namespace {

// Every file of two directories, byte for byte (names listed when they differ).
void expect_same_files(const std::string& a, const std::string& b) {
  ASSERT_EQ(entries(a), entries(b)) << a << " vs " << b;
  for (const auto& name : entries(a)) EXPECT_EQ(read_all(a + "/" + name), read_all(b + "/" + name)) << b << "/" << name;
}

int64_t env_int(const char* name, int64_t fallback) {
  const auto v = xft::test::env_or_empty(name);
  return v.empty() ? fallback : std::stoll(v);
}

}  // namespace

// The xft pipeline (upcycle, MoE training, merge) killed with SIGKILL at random moments, each
// time rerun with --resume, ends with exactly the files of an uninterrupted run. CTest runs 3
// rounds; scripts/soak.sh runs many (XFT_SOAK_ROUNDS, XFT_SOAK_SEED).
TEST(Soak, XftPipelineKilledAtRandomMomentsEndsWithTheUninterruptedModels) {
  const int64_t rounds = env_int("XFT_SOAK_ROUNDS", 3);
  const auto seed = static_cast<uint64_t>(env_int("XFT_SOAK_SEED", 1));
  const auto dir = xft::test::scratch_dir("world");
  xft::test::make_tiny_world(dir);
  const auto config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/tiny.json";
  const std::string common =
      " --config " + config + " --set base_model=" + dir + "/base --set data.path=" + dir +
      "/data.jsonl --set eval_data= --set data.max_length=512" +
      " --set moe_train.max_steps=8 --set merge_train.max_steps=4 --set merge_train.save_every=1";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(xft::test::driver("xft", common + " --set run_dir=" + dir + "/whole", dir + "/whole.log"), 0)
      << read_all(dir + "/whole.log");
  const double whole_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  const std::string run = common + " --set run_dir=" + dir + "/soak --resume";
  std::mt19937_64 rng(seed);
  int killed = 0;
  for (int64_t r = 0; r < rounds; ++r) {
    const auto delay = std::chrono::milliseconds(static_cast<int64_t>(whole_ms * (rng() % 1000) / 1000.0));
    const pid_t pid = spawn_driver("xft", run, dir + "/round-" + std::to_string(r) + ".log");
    std::this_thread::sleep_for(delay);
    killed += ::kill(pid, SIGKILL) == 0;
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // Killed, or already done: never an error exit.
    EXPECT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << "round " << r << " (seed " << seed << ", " << delay.count() << " ms)\n"
        << read_all(dir + "/round-" + std::to_string(r) + ".log");
  }
  ASSERT_EQ(xft::test::driver("xft", run, dir + "/last.log"), 0) << read_all(dir + "/last.log");
  std::cerr << "soak: " << rounds << " rounds, " << killed << " killed, seed " << seed << ", uninterrupted run "
            << whole_ms << " ms\n";
  for (const char* d : {"/xft/moe-init", "/xft/moe/final", "/xft/merge/init", "/xft/merge/final"})
    expect_same_files(dir + "/whole" + d, dir + "/soak" + d);
  EXPECT_EQ(read_all(dir + "/whole/xft/merge/coefficients.json"), read_all(dir + "/soak/xft/merge/coefficients.json"));
}
