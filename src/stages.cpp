#include "xft/stages.h"

#include <filesystem>
#include <iostream>

#include "xft/error.h"
#include "xft/upcycle.h"

namespace fs = std::filesystem;

namespace xft {

Workspace load_workspace(const ExperimentConfig& c) {
  Workspace ws;
  if (c.data.format != "pretokenized") {
    XFT_CHECK(!c.tokenizer.empty(), c.source, ": no tokenizer (set 'tokenizer' or 'base_model')");
    ws.tokenizer = Tokenizer::load(c.tokenizer);
    ws.pad_id = ws.tokenizer->pad_id() >= 0 ? ws.tokenizer->pad_id() : 0;
  }
  auto all = InstructionDataset::load(c.data, ws.tokenizer.get());
  std::cerr << all.report().summary() << "\n";
  if (c.heldout > 0) {
    XFT_CHECK(static_cast<size_t>(c.heldout) < all.size(), c.source, ": heldout (", c.heldout,
              ") must be smaller than the data set (", all.size(), " usable examples)");
    auto [train, held] = all.split(static_cast<size_t>(c.heldout), c.sft_train.seed);
    ws.train.emplace(std::move(train));
    ws.heldout.emplace(std::move(held));
  } else {
    ws.train.emplace(std::move(all));
  }
  if (!c.eval_data.empty()) {
    DataConfig eval = c.data;
    eval.path = c.eval_data;
    ws.heldout.emplace(InstructionDataset::load(eval, ws.tokenizer.get()));
    std::cerr << ws.heldout->report().summary() << "\n";
  }
  fs::create_directories(c.run_dir);
  write_file_atomic((fs::path(c.run_dir) / "experiment.json").string(), c.raw.dump(2) + "\n");
  return ws;
}

namespace {

// Exported models carry their tokenizer, so generate/eval work on them as they are.
void copy_tokenizer_files(const ExperimentConfig& c, const fs::path& to) {
  if (c.tokenizer.empty() || !fs::is_directory(c.tokenizer)) return;
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = fs::path(c.tokenizer) / f;
    if (fs::exists(from) && !fs::exists(to / f)) fs::copy_file(from, to / f);
  }
}

bool finished(const fs::path& final_dir, const std::string& stage) {
  if (!fs::exists(final_dir / "config.json")) return false;
  std::cerr << "[" << stage << "] finished earlier (" << final_dir.string() << "); not redone\n";
  return true;
}

void write_eval(const Workspace& ws, const std::string& model_dir, const fs::path& out, const TrainConfig& t) {
  if (!ws.heldout) return;
  auto model = load_model(model_dir);
  prepare_model(*model, t);
  const double loss = evaluate_loss(*model, *ws.heldout, t.micro_batch, ws.pad_id, t.precision);
  write_file_atomic(out.string(), nlohmann::json({{"model", model_dir}, {"heldout_loss", loss}}).dump(2) + "\n");
  std::cerr << "held-out loss of " << model_dir << ": " << loss << "\n";
}

// Trains every parameter of the model in `in_dir` and saves it to <stage_dir>/final.
std::string train_full(const std::string& name, const std::string& in_dir, const fs::path& stage_dir,
                       const TrainConfig& t, const ExperimentConfig& c, Workspace& ws, bool resume) {
  const fs::path final_dir = stage_dir / "final";
  if (finished(final_dir, name)) return final_dir.string();
  auto model = load_model(in_dir);
  prepare_model(*model, t);
  Trainer trainer(name, model, model_tensors(*model), *ws.train, t, stage_dir.string(), ws.pad_id);
  trainer.run(resume);
  save_model(*model, final_dir.string(), dtype_from_name(c.save_dtype));
  copy_tokenizer_files(c, final_dir);
  return final_dir.string();
}

}  // namespace

std::string run_sft(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const fs::path dir = fs::path(c.run_dir) / "sft";
  auto out = train_full("sft", c.base_model, dir, c.sft_train, c, ws, resume);
  write_eval(ws, out, dir / "eval.json", c.sft_train);
  return out;
}

std::string run_xft(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const fs::path root = fs::path(c.run_dir) / "xft";
  // 1. Upcycle (paper 3.1).
  const fs::path moe_init = root / "moe-init";
  if (!fs::exists(moe_init / "config.json")) {
    std::cerr << "[upcycle] " << c.base_model << " -> " << moe_init.string() << " (" << c.moe.num_experts
              << " experts, top-" << c.moe.top_k << ", " << c.moe.routing << " routing)\n";
    upcycle_directory(c.base_model, moe_init.string(), c.moe, c.upcycle_seed);
    copy_tokenizer_files(c, moe_init);
  }
  // 2. Instruction-tune the MoE.
  const auto moe_final = train_full("moe", moe_init.string(), root / "moe", c.moe_train, c, ws, resume);
  write_eval(ws, moe_final, root / "moe" / "eval.json", c.moe_train);
  // 3. Learnable merge (Eq. 5-6): only the mixing logits train.
  const fs::path mdir = root / "merge";
  const fs::path final_dir = mdir / "final";
  if (!finished(final_dir, "merge")) {
    auto model = load_model(moe_final);
    prepare_model(*model, c.merge_train);
    // The frozen expert stacks stay in the checkpoint's dtype: the values on disk, half of fp32.
    auto logits = attach_merge(*model, c.merge, dtype_from_name(c.save_dtype));
    if (!fs::exists(mdir / "init" / "config.json")) {
      export_merged(*model, (mdir / "init").string(), dtype_from_name(c.save_dtype));  // the INIT ablation
      copy_tokenizer_files(c, mdir / "init");
    }
    Trainer trainer("merge", model, logits, *ws.train, c.merge_train, mdir.string(), ws.pad_id);
    trainer.run(resume);
    write_file_atomic((mdir / "coefficients.json").string(), merge_coefficients_json(*model, c.merge).dump(2) + "\n");
    export_merged(*model, final_dir.string(), dtype_from_name(c.save_dtype));
    copy_tokenizer_files(c, final_dir);
  }
  write_eval(ws, (mdir / "init").string(), mdir / "eval_init.json", c.merge_train);
  write_eval(ws, final_dir.string(), mdir / "eval.json", c.merge_train);
  return final_dir.string();
}

std::string run_ewa(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const fs::path root = fs::path(c.run_dir) / "ewa";
  const fs::path moe_init = root / "moe-init";
  if (!fs::exists(moe_init / "config.json")) upcycle_directory(c.base_model, moe_init.string(), c.moe, c.upcycle_seed);
  const fs::path final_dir = root / "final";
  if (!finished(final_dir, "ewa")) {
    auto model = load_model(moe_init.string());
    prepare_model(*model, c.ewa_train);
    Trainer trainer("ewa", model, model_tensors(*model), *ws.train, c.ewa_train, root.string(), ws.pad_id);
    // After every optimizer update, pull each expert toward the experts' mean (paper A.2).
    trainer.set_after_step([&](int64_t step, int64_t total) { ewa_pull(*model, ewa_beta(c.ewa, step, total)); });
    trainer.run(resume);
    export_averaged(*model, final_dir.string(), dtype_from_name(c.save_dtype));
    copy_tokenizer_files(c, final_dir);
  }
  write_eval(ws, final_dir.string(), root / "eval.json", c.ewa_train);
  return final_dir.string();
}

}  // namespace xft
