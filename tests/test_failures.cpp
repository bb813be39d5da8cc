// Hostile inputs and failures: config.json against the tensors it describes.
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/methods/upcycle.h"
#include "xft/model/model_io.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::expect_error;
using xft::test::tiny_dense;

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
}

}  // namespace

// ---- 1. config.json against the tensors ----

TEST(ConfigCheck, AbsurdSizesAreRefusedBeforeAnyAllocation) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("absurd") + "/m");
  const auto cfg = dir + "/config.json";
  edit_config(dir, [](nlohmann::json& j) { j["hidden_size"] = 1000000000000; });
  expect_error([&] { load_model(dir); },
               {cfg, "hidden_size", "model.embed_tokens.weight", "[61, 1000000000000]", "[61, 32]", "model.safetensors"});
  edit_config(dir, [](nlohmann::json& j) { j["hidden_size"] = 32; j["num_hidden_layers"] = 100000000; });
  expect_error([&] { load_model(dir); }, {cfg, "num_hidden_layers is 100000000", "2 decoder layers"});
  edit_config(dir, [](nlohmann::json& j) { j["num_hidden_layers"] = 2; j["vocab_size"] = 4000000000000; });
  expect_error([&] { load_model(dir); }, {cfg, "vocab_size", "model.embed_tokens.weight", "[4000000000000, 32]"});
  edit_config(dir, [](nlohmann::json& j) { j["vocab_size"] = 61; j["intermediate_size"] = 1000000000000000; });
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
  edit_config(dir, [&](nlohmann::json& j) { j = good; j["hidden_size"] = 32.5; });
  expect_error([&] { load_model(dir); }, {"config.json", "hidden_size", "must be an integer", "32.5"});
  edit_config(dir, [&](nlohmann::json& j) { j = good; j["head_dim"] = -8; });
  expect_error([&] { load_model(dir); }, {"config.json", "head_dim"});
}

TEST(ConfigCheck, ShapeMismatchNamesFieldTensorAndBothShapes) {
  const auto dir = tiny_checkpoint(xft::test::scratch_dir("mismatch") + "/m");
  edit_config(dir, [](nlohmann::json& j) { j["num_key_value_heads"] = 4; });
  expect_error([&] { load_model(dir); },
               {"config.json", "num_key_value_heads x head_dim", "model.layers.0.self_attn.k_proj.weight", "[32, 32]",
                "[16, 32]", "model.safetensors"});
  edit_config(dir, [](nlohmann::json& j) { j["num_key_value_heads"] = 2; j["tie_word_embeddings"] = false; j["num_hidden_layers"] = 1; });
  EXPECT_THROW(load_model(dir), xft::Error);  // a second layer's tensors are unexpected
  // An MoE config against a dense checkpoint: the expert stacks it implies are missing.
  edit_config(dir, [](nlohmann::json& j) { j["num_hidden_layers"] = 2; j["moe"] = {{"num_experts", 4}, {"top_k", 2}}; });
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
  expect_error([&] { load_model(moe_dir); },
               {"config.json", "moe.num_experts", "model.layers.0.mlp.experts.gate_proj", "[7, 40, 32]", "[5, 40, 32]"});
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
      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 1.0},
                        {"original_max_position_embeddings", 64}}, "high_freq_factor"},
      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 0.0}, {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 64}}, "low_freq_factor"},
      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 0}}, "original_max_position_embeddings"},
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
  std::ofstream(dir + "/config.json") << std::string(text).replace(text.find(theta), theta.size(), "\"rope_theta\": 1e400");
  expect_error([&] { ModelConfig::load(dir); }, {dir + "/config.json", "invalid JSON", "1e400"});
  std::ofstream(dir + "/config.json") << good.dump(2);
  EXPECT_NO_THROW(load_model(dir));
}

