// The dense model and checkpoint I/O against transformers, Llama and StableLM (fixtures made by
// tests/python/make_llama_fixtures.py and make_stablelm_fixtures.py), round trips back into
// transformers, and bad input.
#include <filesystem>
#include <fstream>

#include "cuda/cuda_ops.h"
#include "test_util.h"
#include "xft/model/model_io.h"
#include "xft/model/rms_norm.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::expect_error;
using xft::test::fixture;
using xft::test::max_abs_diff;

namespace {

// Max |xft - transformers| over the non-padded positions of a fixture's batch.
double parity(const std::string& name) {
  const auto dir = fixture(name);
  auto model = load_model(dir + "/model");
  model->eval();
  auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ids = expected->get("input_ids");
  auto mask = expected->get("attention_mask");
  auto want = expected->get("logits");
  torch::NoGradGuard ng;
  const bool padded = mask.min().item<int64_t>() == 0;
  auto got = model->forward(ids, padded ? mask : torch::Tensor()).logits;
  auto keep = mask.to(torch::kBool).unsqueeze(-1).expand_as(want);
  return max_abs_diff(got.masked_select(keep), want.masked_select(keep));
}

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = read_json_file(dir + "/config.json");
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(2);
}

}  // namespace

class TransformersParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformersParity, LogitsMatchWithin1e4) { EXPECT_LE(parity(GetParam()), 1e-4); }

INSTANTIATE_TEST_SUITE_P(Fixtures, TransformersParity,
                         ::testing::Values("gqa", "linear_rope", "llama3_rope", "tied", "bf16", "padded", "sharded"));
// StableLmForCausalLM: each option on and off (make_stablelm_fixtures.py lists what each has).
INSTANTIATE_TEST_SUITE_P(StableLmFixtures, TransformersParity,
                         ::testing::Values("stablelm", "stablelm_full_rotary", "stablelm_qk_norm", "stablelm_parallel",
                                           "stablelm_linear_rope", "stablelm_bf16", "stablelm_padded"),
                         [](const auto& info) { return std::string(info.param); });

TEST(Config, StableLmDefaultsAreTransformersDefaults) {
  // A config.json with only the required fields, and the StableLmConfig transformers made of it.
  const auto dir = fixture("stablelm_defaults");
  const auto c = ModelConfig::load(dir);
  const auto hf = read_json_file(dir + "/transformers.json");
  EXPECT_EQ(c.architecture, Architecture::kStableLm);
  EXPECT_EQ(c.norm_kind(), NormKind::kLayerNorm);
  EXPECT_EQ(c.num_key_value_heads, hf.at("num_key_value_heads").get<int64_t>());
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, hf.at("layer_norm_eps").get<double>());
  EXPECT_DOUBLE_EQ(c.norm_eps(), hf.at("layer_norm_eps").get<double>());
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, hf.at("partial_rotary_factor").get<double>());
  EXPECT_DOUBLE_EQ(c.rope_theta, hf.at("rope_theta").get<double>());
  EXPECT_EQ(c.max_position_embeddings, hf.at("max_position_embeddings").get<int64_t>());
  EXPECT_EQ(c.use_qkv_bias, hf.at("use_qkv_bias").get<bool>());
  EXPECT_EQ(c.qk_layernorm, hf.at("qk_layernorm").get<bool>());
  EXPECT_EQ(c.use_parallel_residual, hf.at("use_parallel_residual").get<bool>());
  EXPECT_EQ(c.tie_word_embeddings, hf.at("tie_word_embeddings").get<bool>());
  EXPECT_EQ(c.bos_token_id.value_or(-1), hf.at("bos_token_id").get<int64_t>());
  EXPECT_EQ(c.eos_token_id.value_or(-1), hf.at("eos_token_id").get<int64_t>());
  EXPECT_EQ(c.rotary_dim(), static_cast<int64_t>(c.head_dim * hf.at("partial_rotary_factor").get<double>()));
}

TEST(Config, StableLmWritesBackAsStableLm) {
  const auto c = ModelConfig::load(fixture("stablelm_parallel") + "/model");
  const auto j = c.to_json();
  EXPECT_EQ(j.at("model_type"), "stablelm");
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"StableLmForCausalLM"}));
  EXPECT_FALSE(j.contains("rms_norm_eps"));
  EXPECT_FALSE(j.contains("attention_bias"));
  const auto back = ModelConfig::from_json(j, "round trip");
  EXPECT_EQ(back.architecture, Architecture::kStableLm);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_TRUE(back.use_parallel_residual && back.qk_layernorm && back.use_qkv_bias && back.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(back.partial_rotary_factor, c.partial_rotary_factor);
  EXPECT_DOUBLE_EQ(back.layer_norm_eps, c.layer_norm_eps);
  // Llama writes Llama's fields, not StableLM's.
  const auto llama = ModelConfig::load(fixture("gqa") + "/model").to_json();
  EXPECT_EQ(llama.at("model_type"), "llama");
  EXPECT_FALSE(llama.contains("partial_rotary_factor"));
  EXPECT_FALSE(llama.contains("use_parallel_residual"));
}

TEST(Config, RejectsInconsistentStableLmConfigs) {
  const auto dir = xft::test::scratch_dir("cfg");
  copy_dir(fixture("stablelm") + "/model", dir);
  const auto file = dir + "/config.json";
  edit_config(dir, [](nlohmann::json& j) { j["architectures"] = {"LlamaForCausalLM"}; });
  expect_error([&] { ModelConfig::load(dir); }, {file, "LlamaForCausalLM", "StableLmForCausalLM"});
  edit_config(dir, [](nlohmann::json& j) {
    j["architectures"] = {"StableLmForCausalLM"};
    j["head_dim"] = 32;
  });
  expect_error([&] { ModelConfig::load(dir); }, {file, "head_dim (32)", "hidden_size / num_attention_heads (16)"});
  // int(16 * 0.1) = 1 rotary dim: not a whole number of rotated pairs.
  edit_config(dir, [](nlohmann::json& j) {
    j.erase("head_dim");
    j["partial_rotary_factor"] = 0.1;
  });
  expect_error([&] { ModelConfig::load(dir); }, {file, "partial_rotary_factor", "expected an even number"});
  edit_config(dir, [](nlohmann::json& j) { j["partial_rotary_factor"] = 1.5; });
  expect_error([&] { ModelConfig::load(dir); }, {file, "partial_rotary_factor must be in (0, 1]"});
  edit_config(dir, [](nlohmann::json& j) {
    j["partial_rotary_factor"] = 0.25;
    j["use_qkv_bias"] = "yes";
  });
  expect_error([&] { ModelConfig::load(dir); }, {file, "use_qkv_bias", "wrong type"});
}

TEST(Model, StableLmModulesCarryTransformersNames) {
  // Parallel residual: one norm per layer; qk_layernorm: one bias-free LayerNorm per head.
  auto model = load_model(fixture("stablelm_parallel") + "/model");
  const auto params = model->named_parameters();
  EXPECT_EQ(params.find("model.layers.0.post_attention_layernorm.weight"), nullptr);
  EXPECT_NE(params.find("model.layers.1.input_layernorm.bias"), nullptr);
  EXPECT_NE(params.find("model.norm.bias"), nullptr);
  EXPECT_NE(params.find("model.layers.0.self_attn.k_layernorm.norms.0.weight"), nullptr);  // 1 kv head
  EXPECT_EQ(params.find("model.layers.0.self_attn.k_layernorm.norms.1.weight"), nullptr);
  EXPECT_NE(params.find("model.layers.0.self_attn.q_layernorm.norms.3.weight"), nullptr);
  EXPECT_EQ(params.find("model.layers.0.self_attn.q_layernorm.norms.0.bias"), nullptr);
  EXPECT_NE(params.find("model.layers.0.self_attn.v_proj.bias"), nullptr);
  EXPECT_EQ(params.find("model.layers.0.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);  // tied
  // A quarter of each 16-dim head rotates: 2 frequencies.
  EXPECT_EQ(RotaryEmbedding(model->config()).inv_freq().numel(), 2);
}

TEST(Config, ReadsLinearRopeScalingAndTheta) {
  auto c = ModelConfig::load(fixture("linear_rope") + "/model");
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  // Linear scaling divides every frequency by the factor: theta^(-2i/d) / 4.
  RotaryEmbedding rope(c);
  EXPECT_NEAR(rope.inv_freq()[0].item<double>(), 0.25, 1e-7);
  EXPECT_NEAR(rope.inv_freq()[1].item<double>(), std::pow(100000.0, -2.0 / 16) / 4, 1e-7);
}

TEST(Config, RejectsUnsupportedArchitectureAndMissingFields) {
  const auto dir = xft::test::scratch_dir("cfg");
  copy_dir(fixture("gqa") + "/model", dir);
  edit_config(dir, [](nlohmann::json& j) { j["model_type"] = "gpt2"; });
  expect_error([&] { ModelConfig::load(dir); },
               {dir + "/config.json", "model_type", "gpt2", "supported: llama, stablelm"});
  edit_config(dir, [](nlohmann::json& j) {
    j["model_type"] = "llama";
    j.erase("hidden_size");
  });
  expect_error([&] { ModelConfig::load(dir); }, {"config.json", "hidden_size"});
  edit_config(dir, [](nlohmann::json& j) {
    j["hidden_size"] = 64;
    j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  });
  expect_error([&] { ModelConfig::load(dir); }, {"config.json", "rope_scaling", "dynamic"});
  std::ofstream(dir + "/config.json") << "{\n  \"model_type\": \"llama\",\n  oops\n}";
  expect_error([&] { ModelConfig::load(dir); }, {"config.json:3", "invalid JSON"});
}

TEST(Checkpoint, ShapeThatDisagreesWithConfigNamesTensorAndFile) {
  const auto dir = xft::test::scratch_dir("shape");
  copy_dir(fixture("gqa") + "/model", dir);
  edit_config(dir, [](nlohmann::json& j) { j["intermediate_size"] = 80; });
  expect_error([&] { load_model(dir); },
               {"model.safetensors", "model.layers.0.mlp.gate_proj.weight", "[96, 64]", "[80, 64]"});
}

TEST(Checkpoint, MissingAndUnexpectedTensorsAreErrors) {
  auto src = TensorDirectory::open(fixture("gqa") + "/model");
  NamedTensors all;
  for (const auto& n : src.names()) all.emplace_back(n, src.get(n));
  const auto config = ModelConfig::load(fixture("gqa") + "/model");

  const auto missing = xft::test::scratch_dir("missing");
  NamedTensors fewer(all.begin() + 1, all.end());
  save_model_tensors(config, fewer, missing);
  expect_error([&] { load_model(missing); }, {missing, "missing", all.front().first});

  const auto extra = xft::test::scratch_dir("extra");
  NamedTensors more = all;
  more.emplace_back("model.layers.9.mlp.gate_proj.weight", torch::zeros({2, 2}));
  save_model_tensors(config, more, extra);
  expect_error([&] { load_model(extra); }, {"model.safetensors", "unexpected", "model.layers.9.mlp.gate_proj.weight"});
}

TEST(Checkpoint, LoadLeavesModuleUntouchedOnError) {
  const auto config = ModelConfig::load(fixture("gqa") + "/model");
  CausalLM model(config);
  auto before = model->model->embed_tokens->weight.clone();
  const auto dir = xft::test::scratch_dir("partial");
  auto src = TensorDirectory::open(fixture("gqa") + "/model");
  NamedTensors all;
  for (const auto& n : src.names()) all.emplace_back(n, src.get(n));
  all.pop_back();  // one tensor short: nothing may be copied
  save_model_tensors(config, all, dir);
  EXPECT_THROW(load_weights(*model, TensorDirectory::open(dir)), xft::Error);
  EXPECT_TRUE(torch::equal(before, model->model->embed_tokens->weight));
}

class RoundTrip : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

// Save with xft, reload with xft (same logits) and with transformers (same logits within 1e-4).
TEST_P(RoundTrip, SavedModelLoadsInTransformersWithSameLogits) {
  const auto [name, dtype] = GetParam();
  auto model = load_model(fixture(name) + "/model");
  model->eval();
  const auto out = xft::test::scratch_dir("rt");
  const auto saved = out + "/model";
  save_model(*model, saved, dtype_from_name(dtype), name == "sharded" ? 30000 : 0);
  auto reloaded = load_model(saved);
  reloaded->eval();
  auto ids = SafetensorsFile::open(fixture(name) + "/expected.safetensors")->get("input_ids").clone();
  torch::NoGradGuard ng;
  auto a = model->forward(ids).logits;
  auto b = reloaded->forward(ids).logits;
  if (dtype == "float32") {
    EXPECT_TRUE(torch::equal(a, b));
  }
  // The transformers class of the fixture's own architecture (StableLmForCausalLM for StableLM).
  EXPECT_EQ(xft::test::check_hf_load(saved, ids, b, architecture_class(model->config().architecture), out), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RoundTrip,
                         ::testing::Values(std::make_tuple("gqa", "float32"), std::make_tuple("tied", "float32"),
                                           std::make_tuple("linear_rope", "bfloat16"),
                                           std::make_tuple("sharded", "float32")));
INSTANTIATE_TEST_SUITE_P(StableLmFixtures, RoundTrip,
                         ::testing::Values(std::make_tuple("stablelm", "float32"),
                                           std::make_tuple("stablelm_parallel", "float32"),
                                           std::make_tuple("stablelm_qk_norm", "bfloat16"),
                                           std::make_tuple("stablelm_full_rotary", "float32")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

TEST(Checkpoint, SaveReplacesDirectoryWhole) {
  auto model = load_model(fixture("gqa") + "/model");
  const auto dir = xft::test::scratch_dir("atomic") + "/m";
  save_model(*model, dir, torch::kFloat32, 20000);  // sharded first
  ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  save_model(*model, dir);  // then a single file replaces it whole
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path())) {
    EXPECT_EQ(e.path().filename(), "m") << "left behind: " << e.path();
  }
}

TEST(Tool, ForwardWritesLogitsAsSafetensors) {
  const auto tool = xft::test::env_or_empty("XFT_TOOL");
  ASSERT_FALSE(tool.empty());
  const auto out = xft::test::scratch_dir("tool") + "/logits.safetensors";
  const auto dir = fixture("gqa");
  auto ids = SafetensorsFile::open(dir + "/expected.safetensors")->get("input_ids")[0];
  std::string list;
  for (int64_t i = 0; i < ids.size(0); ++i) list += (i ? "," : "") + std::to_string(ids[i].item<int64_t>());
  ASSERT_EQ(
      xft::test::run(tool + " forward --model " + dir + "/model --tokens " + list + " --out " + out + " > /dev/null"),
      0);
  auto logits = SafetensorsFile::open(out)->get("logits");
  auto want = SafetensorsFile::open(dir + "/expected.safetensors")->get("logits")[0];
  ASSERT_EQ(logits.scalar_type(), torch::kFloat32);
  ASSERT_EQ(logits.sizes(), want.sizes());
  EXPECT_LE(max_abs_diff(logits, want), 1e-4);
  EXPECT_NE(xft::test::run(tool + " forward --model " + dir + "/model --tokens 1,x,3 --out " + out + " 2> /dev/null"),
            0);
  EXPECT_NE(
      xft::test::run(tool + " forward --model " + dir + "/model --tokens 1,100000 --out " + out + " 2> /dev/null"), 0);
  EXPECT_EQ(xft::test::run(tool + " inspect " + dir + "/model > /dev/null"), 0);
}

TEST(RmsNorm, MatchesHandComputedValue) {
  auto x = torch::tensor({{3.0f, 4.0f}});
  auto w = torch::tensor({1.0f, 2.0f});
  // rms = sqrt((9 + 16) / 2) = 3.5355...
  auto y = rms_norm(x, w, 0.0);
  EXPECT_NEAR(y[0][0].item<float>(), 3.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 2 * 4.0 / std::sqrt(12.5), 1e-6);
}

TEST(RmsNormCuda, MatchesCpuReference) {
  if (!cuda_ops_available()) GTEST_SKIP() << "no CUDA device visible";
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    auto x = torch::randn({37, 1000}).to(dtype);
    auto w = (1 + 0.1 * torch::randn({1000})).to(dtype);
    auto want = rms_norm_reference(x, w, 1e-6).to(torch::kFloat32);
    auto got = rms_norm_cuda(x.cuda(), w.cuda(), 1e-6).cpu().to(torch::kFloat32);
    const double tol = dtype == torch::kFloat32 ? 1e-5 : 2e-2;
    EXPECT_LE(max_abs_diff(got, want), tol) << dtype;
  }
}
