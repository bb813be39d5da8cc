// xft-demo: the whole method on real code, on a CPU, in minutes, with nothing downloaded.
//   1. data: documented functions of this machine's Python standard library (scripts/make_demo_data.py),
//      every 5th held out
//   2. a sentencepiece tokenizer and a tiny Llama base, pretrained on the training functions' source
//      until its held-out loss stops improving (a real base is trained to convergence too)
//   3. SFT, XFT (upcycle -> MoE tuning -> learnable merge) and EWA at the paper's budget ratio
//   4. a study (xft-study's): held-out loss of base, SFT, MoE, XFT (INIT), XFT and EWA per seed, and
//      paired comparisons over the held-out functions with bootstrap intervals and Wilcoxon p-values
// Every number in the table comes from this run. Settings: the embedded config below, changed
// with --set key=value (e.g. --set sft_train.epochs=3); --seeds 1,2,3 runs every arm per seed;
// --resume continues an interrupted demo.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/data/tokenizer.h"
#include "xft/model/model_io.h"
#include "xft/pipelines/pipelines.h"
#include "xft/study/study.h"
#include "xft/train/early_stopping.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;
using namespace xft;

namespace {

// The demo's experiment. Paths are filled in from --run-dir. The budgets follow the paper's A.1
// and A.5: SFT and EWA 5 epochs, XFT 4 epochs of MoE tuning + 1 of merging (the same 5); the
// learning rates are the demo's from before this ratio was set (not tuned on the results).
const char* kDemoConfig = R"({
  "run_dir": "",
  "base_model": "",
  "data": {"path": "", "response_field": "response", "max_length": 192},
  "eval_data": "",
  "save_dtype": "float32",
  "moe": {"num_experts": 8, "top_k": 6, "routing": "xft", "router": "linear", "aux_loss": "cv2", "aux_loss_coef": 0.01},
  "merge": {"shared_rate": 0.75, "fixed_shared_rate": true},
  "ewa": {"beta": 0.3, "schedule": "constant"},
  "sft_train":   {"epochs": 5, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20},
  "moe_train":   {"epochs": 4, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20},
  "merge_train": {"epochs": 1, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 5e-2, "warmup": 5, "save_every": 20},
  "ewa_train":   {"epochs": 5, "global_batch": 32, "micro_batch": 32, "optimizer": "adamw", "lr": 1e-3, "warmup": 10, "save_every": 20}
})";

// The tiny base: a Llama with DeepSeek-Coder's rope settings (theta 1e5, linear factor 4).
nlohmann::json base_config(int64_t vocab) {
  return {{"model_type", "llama"},
          {"architectures", {"LlamaForCausalLM"}},
          {"vocab_size", vocab},
          {"hidden_size", 128},
          {"intermediate_size", 344},
          {"num_hidden_layers", 4},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 100000.0},
          {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}},
          {"max_position_embeddings", 1024},
          {"tie_word_embeddings", false}};
}

std::string read_all_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void run_or_fail(const std::string& cmd) {
  std::cerr << "$ " << cmd << "\n";
  XFT_CHECK(std::system(cmd.c_str()) == 0, "command failed: ", cmd);
}

// Next-token pretraining chunks of the corpus, as pre-tokenised records (no prompt: every token
// carries loss); every 20th chunk goes to `heldout_out`, the base's early-stopping set.
void write_pretraining_chunks(const Tokenizer& tok, const std::string& corpus, const std::string& out,
                              const std::string& heldout_out, int64_t len) {
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
  std::ofstream o(out), h(heldout_out);
  for (size_t s = 0, n = 0; s + len <= ids.size(); s += len, ++n) {
    (n % 20 == 19 ? h : o) << nlohmann::json(
                                  {{"prompt_ids", nlohmann::json::array()},
                                   {"response_ids", std::vector<int64_t>(ids.begin() + s, ids.begin() + s + len)}})
                                  .dump()
                           << "\n";
  }
}

InstructionDataset pretokenized(const std::string& path, const Tokenizer& tok) {
  DataConfig dc;
  dc.path = path;
  dc.format = xft::DataFormat::kPretokenized;
  dc.bos_id = tok.bos_id();
  dc.eos_id = tok.eos_id();
  dc.max_length = 192;
  return InstructionDataset::load(dc, nullptr);
}

// The base: trained on the corpus until the held-out chunks' loss has not improved for 3
// evaluations 25 steps apart (the best model is kept), or for exactly `fixed_steps` when > 0
// (a weaker base, for studies across base strengths).
std::string pretrain_base(const fs::path& run, const Tokenizer& tok, TrainConfig t, int64_t fixed_steps, bool resume) {
  const fs::path final_dir = run / "base" / "final";
  if (fs::exists(final_dir / "config.json")) return final_dir.string();
  const auto chunks = (run / "data" / "pretrain.jsonl").string(),
             held = (run / "data" / "pretrain-heldout.jsonl").string();
  write_pretraining_chunks(tok, (run / "data" / "corpus.txt").string(), chunks, held, 190);
  const auto data = pretokenized(chunks, tok), heldout = pretokenized(held, tok);
  auto cfg = base_config(tok.vocab_size());
  cfg["bos_token_id"] = tok.bos_id();
  cfg["eos_token_id"] = tok.eos_id();
  CausalLM model(ModelConfig::from_json(cfg, "demo base"));
  model->init_weights(0.02, t.seed);
  prepare_model(*model, t);
  EarlyStopping stop;
  if (fixed_steps > 0) stop.eval_every = stop.max_steps = fixed_steps;  // one round, kept
  const fs::path best = run / "base" / "best";
  auto r = train_until_plateau(model, data, heldout, t, stop, (run / "base").string(), tok.pad_id(), resume,
                               [&](CausalLMImpl& m) { save_model(m, best.string(), torch::kFloat32); });
  std::cerr << "[pretrain] base: step " << r.best_step << " of " << r.steps << ", held-out loss " << r.best_loss
            << (r.plateaued ? " (stopped improving)" : "") << "\n";
  fs::copy_file(run / "tokenizer" / "tokenizer.model", best / "tokenizer.model", fs::copy_options::overwrite_existing);
  fs::rename(best, final_dir);
  return final_dir.string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xft-demo: SFT vs XFT vs EWA on this machine's Python standard library, CPU only"};
  std::string run_dir = "runs/demo", python = "python3", source_dir = XFT_SOURCE_DIR;
  std::vector<std::string> overrides;
  std::vector<uint64_t> seeds = {1};
  bool resume = false;
  int64_t examples = 600, vocab = 2000, pretrain_steps = 0;
  app.add_option("--run-dir", run_dir, "where everything goes")->capture_default_str();
  app.add_option("--examples", examples, "documented functions to use (every 5th held out)")->capture_default_str();
  app.add_option("--vocab", vocab, "tokenizer vocabulary size")->capture_default_str();
  app.add_option("--pretrain-steps", pretrain_steps,
                 "optimizer steps of base pretraining (0: until its held-out loss stops improving)")
      ->capture_default_str();
  app.add_option("--seeds", seeds, "training seeds, e.g. 1,2,3: every arm runs once per seed")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--python", python, "python3 used to read the standard library")->capture_default_str();
  app.add_option("--set", overrides, "override the embedded config: --set sft_train.epochs=3");
  app.add_flag("--resume", resume, "continue an interrupted demo");
  CLI11_PARSE(app, argc, argv);
  try {
    const fs::path run = fs::absolute(run_dir);
    XFT_CHECK(resume || !fs::exists(run), run.string(),
              " exists: pass --resume to continue it, or choose another --run-dir");
    fs::create_directories(run / "data");
    if (!fs::exists(run / "data" / "train.jsonl")) {
      run_or_fail(python + " " + source_dir + "/scripts/make_demo_data.py " + (run / "data").string() +
                  " --max-examples " + std::to_string(examples) + " --heldout-every 5");
    }
    fs::create_directories(run / "tokenizer");
    if (!fs::exists(run / "tokenizer" / "tokenizer.model")) {
      train_sentencepiece((run / "data" / "corpus.txt").string(), (run / "tokenizer" / "tokenizer").string(), vocab);
    }
    auto tok = Tokenizer::load((run / "tokenizer" / "tokenizer.model").string());

    auto j = nlohmann::json::parse(kDemoConfig);
    j["base_model"] = (run / "base" / "final").string();
    j["data"]["path"] = (run / "data" / "train.jsonl").string();
    j["eval_data"] = (run / "data" / "heldout.jsonl").string();
    for (const auto& o : overrides) apply_override(j, o);
    const auto config_path = (run / "demo-config.json").string();
    write_file_atomic(config_path, j.dump(2) + "\n");
    auto config = ExperimentConfig::load(config_path);  // validated before hours of training

    TrainConfig pre = config.sft_train;
    pre.lr = 2e-3;
    pre.warmup = 20;
    pre.schedule = ScheduleKind::kConstantWithWarmup;
    pretrain_base(run, *tok, pre, pretrain_steps, resume);

    StudyOptions study;
    study.config_path = config_path;
    study.seeds = seeds;
    study.arms = {"base", "sft", "moe", "xft_init", "xft", "ewa"};
    study.out_dir = run.string();
    study.resume = resume;
    run_study(study);
    std::cout << "\nHeld-out loss (mean cross-entropy per response token of the held-out functions):\n\n"
              << read_all_text((run / "results.md").string()) << "\nwritten to " << (run / "results.md").string()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "xft-demo: error: " << e.what() << "\n";
    return 1;
  }
}
