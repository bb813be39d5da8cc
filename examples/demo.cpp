// xft-demo: the whole method on real code, on a CPU, in minutes, with nothing downloaded.
//   1. data: documented functions of this machine's Python standard library (scripts/make_demo_data.py)
//   2. a sentencepiece tokenizer and a tiny Llama base, pretrained on the training functions' source
//   3. SFT, XFT (upcycle -> MoE tuning -> learnable merge) and EWA, with equal training budgets
//   4. one table of held-out losses: base, SFT, MoE, XFT (INIT), XFT, EWA
// Every number in the table comes from this run. Settings: the embedded config below, changed
// with --set key=value (e.g. --set sft_train.epochs=3); --resume continues an interrupted demo.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "xft/model/model_io.h"
#include "xft/core/error.h"
#include "xft/pipelines/pipelines.h"
#include "xft/train/trainer.h"
#include "xft/data/tokenizer.h"

namespace fs = std::filesystem;
using namespace xft;

namespace {

// The demo's experiment. Paths are filled in from --run-dir. XFT's budget (moe + merge epochs)
// equals SFT's and EWA's, as in the paper's A.1 (4 + 1 = 5 epochs; here 2 + 1 = 3, so the whole
// demo fits in about ten minutes on two cores).
const char* kDemoConfig = R"({
  "run_dir": "",
  "base_model": "",
  "data": {"path": "", "response_field": "response", "max_length": 192},
  "eval_data": "",
  "save_dtype": "float32",
  "moe": {"num_experts": 8, "top_k": 6, "routing": "xft", "router": "linear", "aux_loss": "cv2", "aux_loss_coef": 0.01},
  "merge": {"shared_rate": 0.75, "fixed_shared_rate": true},
  "ewa": {"beta": 0.3, "schedule": "constant"},
  "sft_train":   {"epochs": 3, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20},
  "moe_train":   {"epochs": 2, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20},
  "merge_train": {"epochs": 1, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 5e-2, "warmup": 5, "save_every": 20},
  "ewa_train":   {"epochs": 3, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20}
})";

// The tiny base: a Llama with DeepSeek-Coder's rope settings (theta 1e5, linear factor 4).
nlohmann::json base_config(int64_t vocab) {
  return {{"model_type", "llama"},     {"architectures", {"LlamaForCausalLM"}},
          {"vocab_size", vocab},       {"hidden_size", 128},
          {"intermediate_size", 344},  {"num_hidden_layers", 4},
          {"num_attention_heads", 4},  {"num_key_value_heads", 2},
          {"rms_norm_eps", 1e-6},      {"rope_theta", 100000.0},
          {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}},
          {"max_position_embeddings", 1024}, {"tie_word_embeddings", false}};
}

void run_or_fail(const std::string& cmd) {
  std::cerr << "$ " << cmd << "\n";
  XFT_CHECK(std::system(cmd.c_str()) == 0, "command failed: ", cmd);
}

// Next-token pretraining chunks of the corpus, as pre-tokenised records (no prompt: every token
// carries loss).
void write_pretraining_chunks(const Tokenizer& tok, const std::string& corpus, const std::string& out, int64_t len) {
  std::ifstream in(corpus);
  XFT_CHECK(in.good(), corpus, ": cannot open");
  std::vector<int64_t> ids;
  std::string line, block;
  auto flush = [&] {
    auto piece = tok.encode(block);
    ids.insert(ids.end(), piece.begin(), piece.end());
    block.clear();
  };
  while (std::getline(in, line)) {
    block += line + "\n";
    if (block.size() > 4096 && line.empty()) flush();
  }
  flush();
  std::ofstream o(out);
  for (size_t s = 0; s + len <= ids.size(); s += len) {
    o << nlohmann::json({{"prompt_ids", nlohmann::json::array()},
                         {"response_ids", std::vector<int64_t>(ids.begin() + s, ids.begin() + s + len)}})
             .dump()
      << "\n";
  }
}

std::string pretrain_base(const fs::path& run, const Tokenizer& tok, const TrainConfig& t, bool resume) {
  const fs::path final_dir = run / "base" / "final";
  if (fs::exists(final_dir / "config.json")) return final_dir.string();
  const auto chunks = (run / "data" / "pretrain.jsonl").string();
  write_pretraining_chunks(tok, (run / "data" / "corpus.txt").string(), chunks, 190);
  DataConfig dc;
  dc.path = chunks;
  dc.format = xft::DataFormat::kPretokenized;
  dc.bos_id = tok.bos_id();
  dc.eos_id = tok.eos_id();
  dc.max_length = 192;
  auto data = InstructionDataset::load(dc, nullptr);
  auto cfg = base_config(tok.vocab_size());
  cfg["bos_token_id"] = tok.bos_id();
  cfg["eos_token_id"] = tok.eos_id();
  CausalLM model(ModelConfig::from_json(cfg, "demo base"));
  model->init_weights(0.02, t.seed);
  prepare_model(*model, t);
  Trainer trainer("pretrain", model, model_tensors(*model), data, t, (run / "base").string(), tok.pad_id());
  trainer.run(resume);
  save_model(*model, final_dir.string(), torch::kFloat32);
  fs::copy_file(run / "tokenizer" / "tokenizer.model", final_dir / "tokenizer.model",
                fs::copy_options::overwrite_existing);
  return final_dir.string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xft-demo: SFT vs XFT vs EWA on this machine's Python standard library, CPU only"};
  std::string run_dir = "runs/demo", python = "python3", source_dir = XFT_SOURCE_DIR;
  std::vector<std::string> overrides;
  bool resume = false;
  int64_t examples = 1600, vocab = 2000, pretrain_steps = 150;
  app.add_option("--run-dir", run_dir, "where everything goes")->capture_default_str();
  app.add_option("--examples", examples, "documented functions to use (10% held out)")->capture_default_str();
  app.add_option("--vocab", vocab, "tokenizer vocabulary size")->capture_default_str();
  app.add_option("--pretrain-steps", pretrain_steps, "optimizer steps of base pretraining")->capture_default_str();
  app.add_option("--python", python, "python3 used to read the standard library")->capture_default_str();
  app.add_option("--set", overrides, "override the embedded config: --set sft_train.epochs=3");
  app.add_flag("--resume", resume, "continue an interrupted demo");
  CLI11_PARSE(app, argc, argv);
  try {
    const fs::path run = fs::absolute(run_dir);
    XFT_CHECK(resume || !fs::exists(run), run.string(), " exists: pass --resume to continue it, or choose another --run-dir");
    fs::create_directories(run / "data");
    if (!fs::exists(run / "data" / "train.jsonl")) {
      run_or_fail(python + " " + source_dir + "/scripts/make_demo_data.py " + (run / "data").string() +
                  " --max-examples " + std::to_string(examples));
    }
    fs::create_directories(run / "tokenizer");
    if (!fs::exists(run / "tokenizer" / "tokenizer.model")) {
      train_sentencepiece((run / "data" / "corpus.txt").string(), (run / "tokenizer" / "tokenizer").string(), vocab);
    }
    auto tok = Tokenizer::load((run / "tokenizer" / "tokenizer.model").string());

    auto j = nlohmann::json::parse(kDemoConfig);
    j["run_dir"] = run.string();
    j["base_model"] = (run / "base" / "final").string();
    j["data"]["path"] = (run / "data" / "train.jsonl").string();
    j["eval_data"] = (run / "data" / "heldout.jsonl").string();
    for (const auto& o : overrides) apply_override(j, o);
    auto config = ExperimentConfig::from_json(j, "xft-demo config");

    TrainConfig pre = config.sft_train;
    pre.epochs = 1000;
    pre.max_steps = pretrain_steps;
    pre.lr = 2e-3;
    pre.warmup = 20;
    const auto base = pretrain_base(run, *tok, pre, resume);

    auto ws = load_workspace(config);
    run_sft(config, ws, resume);
    run_xft(config, ws, resume);
    run_ewa(config, ws, resume);

    // The table: every model scored on the same held-out functions.
    const std::vector<std::pair<std::string, fs::path>> rows = {
        {"base (pretrained only)", base},
        {"SFT", run / "sft" / "final"},
        {"MoE (upcycled, tuned)", run / "xft" / "moe" / "final"},
        {"XFT (INIT)", run / "xft" / "merge" / "init"},
        {"XFT", run / "xft" / "merge" / "final"},
        {"EWA", run / "ewa" / "final"}};
    std::ostringstream table;
    nlohmann::json results = nlohmann::json::array();
    table << "| model | held-out loss | params |\n|---|---|---|\n";
    for (const auto& [name, dir] : rows) {
      auto model = load_model(dir.string());
      const double loss = evaluate_loss(*model, *ws.heldout, 32, ws.pad_id);
      int64_t params = 0;
      for (const auto& p : model->parameters()) params += p.numel();
      table << "| " << name << " | " << std::fixed << std::setprecision(4) << loss << " | " << params << " |\n";
      results.push_back({{"model", name}, {"dir", dir.string()}, {"heldout_loss", loss}, {"params", params}});
    }
    write_file_atomic((run / "results.json").string(), results.dump(2) + "\n");
    write_file_atomic((run / "results.md").string(), table.str());
    std::cout << "\nHeld-out loss (mean cross-entropy per response token, " << ws.heldout->size()
              << " held-out functions):\n\n" << table.str() << "\nwritten to " << (run / "results.md").string() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "xft-demo: error: " << e.what() << "\n";
    return 1;
  }
}
