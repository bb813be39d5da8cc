// An xft MoE directory loads in transformers: AutoModelForCausalLM with trust_remote_code builds
// the model from the modeling file xft saves beside it (src/model/modeling_xft_moe.py), and its
// logits equal xft's eval forward for every routing rule, router kind and base architecture.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/methods/upcycle.h"
#include "xft/model/hf_names.h"
#include "xft/model/model_io.h"
#include "xft/moe/moe_layer.h"

using namespace xft;
using xft::test::fixture;

namespace {

struct Case {
  std::string name;
  std::string base;  // "tiny" (tiny_dense(), Llama) or a StableLM fixture
  std::string routing;
  std::string router;
  bool renormalize = true;
  bool noise = false;
};

// The dense base: tiny_dense() with random weights, or a transformers-made StableLM fixture.
std::pair<ModelConfig, NamedTensors> dense_base(const std::string& base) {
  if (base == "tiny") {
    auto config = xft::test::tiny_dense();
    CausalLM dense(config);
    dense->init_weights(0.1, 1);
    return {config, model_tensors(*dense)};
  }
  const auto dir = fixture(base) + "/model";
  auto files = TensorDirectory::open(dir);
  NamedTensors tensors;
  for (const auto& n : files.names()) tensors.emplace_back(n, files.get(n));
  return {ModelConfig::load(dir), tensors};
}

// An upcycled MoE whose experts have drifted apart and whose routers are far from uniform (std
// 1: the top-k differs from token to token), saved by xft to `dir`.
void save_routed_moe(const Case& c, const std::string& dir) {
  MoeConfig moe = xft::test::config(c.routing, 5, 3, c.renormalize);
  moe.router = xft::test::router_kind(c.router);
  moe.router_noise = c.noise;
  moe.router_init_std = 1.0;
  auto [config, dense] = dense_base(c.base);
  auto up = upcycle(config, dense, moe, 7);
  torch::manual_seed(11);
  for (auto& [n, t] : up.tensors)
    if (n.find(".experts.") != std::string::npos) t = t + 0.05 * torch::randn_like(t);
  save_model_tensors(up.config, up.tensors, dir);
}

std::string remote_class(const ModelConfig& config) {
  return config.architecture == Architecture::kStableLm ? "remote:XftMoeStableLmForCausalLM"
                                                        : "remote:XftMoeLlamaForCausalLM";
}

// gtest prints a parameter by this (its bytes otherwise).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class HfMoe : public ::testing::TestWithParam<Case> {};

TEST_P(HfMoe, LoadsInTransformersWithXftLogits) {
  const auto& c = GetParam();
  const auto dir = xft::test::scratch_dir("hf");
  save_routed_moe(c, dir + "/moe");
  EXPECT_TRUE(std::filesystem::exists(dir + "/moe/modeling_xft_moe.py"));
  auto model = load_model(dir + "/moe");  // xft reads the directory as before
  model->eval();
  torch::manual_seed(5);
  auto ids = torch::randint(3, model->config().vocab_size, {2, 9});
  torch::NoGradGuard ng;
  auto logits = model->forward(ids).logits;
  // The routing is not trivial: every layer sends the tokens to at least 3 of its 4 routed
  // experts, so a wrong top-k or weight would show in the logits.
  for (const auto& layer : moe_layers(*model, "test")) {
    auto counts = layer->last_expert_counts();
    const auto routed = c.routing == "vanilla" ? counts : counts.narrow(0, 1, counts.size(0) - 1);
    EXPECT_GE(routed.gt(0).sum().item<int64_t>(), 3) << counts;
  }
  EXPECT_EQ(xft::test::check_hf_load(dir + "/moe", ids, logits, remote_class(model->config()), dir), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Routing, HfMoe,
    ::testing::Values(Case{"xft_linear", "tiny", "xft", "linear"}, Case{"xft_mlp", "tiny", "xft", "mlp"},
                      Case{"xft_noise", "tiny", "xft", "linear", true, true},
                      Case{"shared_no_norm", "tiny", "shared_no_norm", "mlp"},
                      Case{"vanilla_renormalized", "tiny", "vanilla", "linear", true},
                      Case{"vanilla_raw", "tiny", "vanilla", "mlp", false},
                      Case{"stablelm_xft", "stablelm", "xft", "mlp"},
                      Case{"stablelm_parallel_vanilla", "stablelm_parallel", "vanilla", "linear", false}),
    [](const auto& info) { return info.param.name; });

// The comparison can fail: the same checkpoint read with another routing rule gives other logits.
TEST(HfMoeCheck, FailsWhenTheConfigNamesAnotherRouting) {
  const auto dir = xft::test::scratch_dir("other");
  save_routed_moe(Case{"xft", "tiny", "xft", "linear"}, dir + "/moe");
  auto model = load_model(dir + "/moe");
  model->eval();
  auto ids = torch::randint(3, model->config().vocab_size, {2, 9});
  torch::NoGradGuard ng;
  auto logits = model->forward(ids).logits;
  auto j = xft::read_json_file(dir + "/moe/config.json");
  j["moe"]["routing"] = "shared_no_norm";
  std::ofstream(dir + "/moe/config.json") << j.dump(2);
  EXPECT_NE(xft::test::check_hf_load(dir + "/moe", ids, logits, "remote:XftMoeLlamaForCausalLM", dir), 0);
}

// A moe field the modeling file does not know is an error naming it, not a silent load.
TEST(HfMoeCheck, UnknownMoeFieldIsAnErrorNamingIt) {
  const auto dir = xft::test::scratch_dir("unknown");
  save_routed_moe(Case{"xft", "tiny", "xft", "linear"}, dir + "/moe");
  auto j = xft::read_json_file(dir + "/moe/config.json");
  j["moe"]["expert_capacity"] = 2;
  std::ofstream(dir + "/moe/config.json") << j.dump(2);
  const auto py = xft::test::env_or_empty("XFT_PYTHON");
  const auto log = dir + "/load.log";
  EXPECT_NE(xft::test::run("HF_MODULES_CACHE=" + dir + "/modules " + py +
                           " -c \"import transformers; transformers.AutoModelForCausalLM.from_pretrained('" + dir +
                           "/moe', trust_remote_code=True)\" > " + log + " 2>&1"),
            0);
  EXPECT_NE(xft::test::read_all(log).find("expert_capacity"), std::string::npos) << xft::test::read_all(log);
}

// config.json names the modeling file only while the model is an MoE: its dense export (merge,
// EWA) carries neither the auto_map entry nor the file.
TEST(HfMoeCheck, DenseExportDropsTheRemoteCode) {
  const auto dir = xft::test::scratch_dir("dense");
  save_routed_moe(Case{"xft", "tiny", "xft", "linear"}, dir + "/moe");
  const auto moe = xft::read_json_file(dir + "/moe/config.json");
  EXPECT_EQ(moe["auto_map"]["AutoModelForCausalLM"], "modeling_xft_moe.XftMoeLlamaForCausalLM");
  EXPECT_EQ(moe["architectures"][0], "LlamaForCausalLM");  // xft's loader and transformers' class
  const auto config = ModelConfig::load(dir + "/moe");
  auto files = TensorDirectory::open(dir + "/moe");
  NamedTensors tensors;
  for (const auto& n : files.names())
    if (!hf::is_ffn(n)) tensors.emplace_back(n, files.get(n));
  const auto dense = config.dense();
  for (int64_t l = 0; l < dense.num_hidden_layers; ++l)
    for (const char* p : hf::kProjections)
      tensors.emplace_back(hf::dense_ffn(l, p), files.get(hf::expert_stack(l, p))[0]);
  save_model_tensors(dense, tensors, dir + "/dense");
  EXPECT_FALSE(xft::read_json_file(dir + "/dense/config.json").contains("auto_map"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/dense/modeling_xft_moe.py"));
}

}  // namespace
