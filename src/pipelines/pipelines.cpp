#include "xft/pipelines/pipelines.h"

#include <filesystem>
#include <iostream>
#include <unistd.h>

#include "xft/core/error.h"
#include "xft/moe/expert_parallel.h"
#include "xft/methods/upcycle.h"
#include "xft/train/moe_telemetry.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;

namespace xft {

Workspace load_workspace(const ExperimentConfig& c) {
  Workspace ws;
  bool cuda = false;
  for (const auto* t : {&c.sft_train, &c.moe_train, &c.merge_train, &c.ewa_train})
    cuda = cuda || t->device.rfind("cuda", 0) == 0;
  ws.dist = Distributed::from_environment(c.distributed, cuda ? "cuda" : "cpu");
  const bool lead = ws.dist->is_lead();
  if (ws.dist->active() && lead)
    std::cerr << "[distributed] " << ws.dist->world() << " ranks, " << ws.dist->backend() << ", expert_parallel "
              << ws.dist->expert_size() << "\n";
  if (c.data.format != DataFormat::kPretokenized) {
    XFT_CHECK(!c.tokenizer.empty(), c.source, ": no tokenizer (set 'tokenizer' or 'base_model')");
    ws.tokenizer = Tokenizer::load(c.tokenizer);
    ws.pad_id = ws.tokenizer->pad_id() >= 0 ? ws.tokenizer->pad_id() : 0;
  }
  auto all = InstructionDataset::load(c.data, ws.tokenizer.get());
  if (lead) std::cerr << all.report().summary() << "\n";
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
    if (lead) std::cerr << ws.heldout->report().summary() << "\n";
  }
  if (lead) {
    fs::create_directories(c.run_dir);
    write_file_atomic((fs::path(c.run_dir) / "experiment.json").string(), c.raw.dump(2) + "\n");
  }
  ws.dist->barrier("run directory");
  return ws;
}

namespace {

// Exported models carry their tokenizer, so generate/eval work on them as they are. Each file
// goes through a temporary and a rename, and a finished stage repeats the (idempotent) copy:
// a run killed between the export and the copy, or during it, leaves no partial tokenizer.
void copy_tokenizer_files(const ExperimentConfig& c, const fs::path& to) {
  if (c.tokenizer.empty() || !fs::is_directory(c.tokenizer)) return;
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = fs::path(c.tokenizer) / f;
    if (!fs::exists(from) || fs::exists(to / f)) continue;
    const fs::path tmp = (to / f).string() + ".tmp." + std::to_string(::getpid());
    fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, to / f);
  }
}

bool finished(const ExperimentConfig& c, const Workspace& ws, const fs::path& final_dir, const std::string& stage) {
  if (!fs::exists(final_dir / "config.json")) return false;
  if (ws.dist->is_lead()) {
    copy_tokenizer_files(c, final_dir);
    std::cerr << "[" << stage << "] finished earlier (" << final_dir.string() << "); not redone\n";
  }
  return true;
}

// The stage's training config with this rank's device (LOCAL_RANK's GPU under torchrun).
// `stage` names a training stage, whose collectives need a device the backend carries.
TrainConfig on_rank(const Workspace& ws, TrainConfig t, const std::string& stage = "") {
  // NCCL carries GPU tensors only: a stage on the CPU would fail at its first collective.
  XFT_CHECK(stage.empty() || ws.dist->backend() != "nccl" || t.device.rfind("cuda", 0) == 0, stage,
            ": the stage's device is '", t.device, "' but the run's distributed backend is nccl, which needs it on ",
            "a GPU (set its device to cuda, or distributed.backend to gloo)");
  t.device = ws.dist->device_for(t.device);
  return t;
}

// Rank 0 evaluates; the others wait for it.
void write_eval(const Workspace& ws, const std::string& model_dir, const fs::path& out, const TrainConfig& train) {
  if (ws.heldout && ws.dist->is_lead()) {
    const auto t = on_rank(ws, train);
    auto model = load_model(model_dir);
    prepare_model(*model, t);
    const double loss = evaluate_loss(*model, *ws.heldout, t.micro_batch, ws.pad_id, t.precision);
    nlohmann::json report = {{"model", model_dir}, {"heldout_loss", loss}};
    // What the routers (or the merge) did during the stage that made it, from its metrics.
    const auto metrics = fs::path(model_dir).parent_path() / "metrics.jsonl";
    if (fs::path(model_dir).filename() == "final" && fs::exists(metrics))
      report["telemetry"] = summarize_telemetry(metrics.string());
    write_file_atomic(out.string(), report.dump(2) + "\n");
    std::cerr << "held-out loss of " << model_dir << ": " << loss << "\n";
  }
  ws.dist->barrier("evaluation of " + model_dir);
}

// Trains every parameter of the model in `in_dir` and saves it to <stage_dir>/final. With
// `expert_parallel`, the MoE's routed experts are split over the expert group while training.
std::string train_full(const std::string& name, const std::string& in_dir, const fs::path& stage_dir,
                       const TrainConfig& train, const ExperimentConfig& c, Workspace& ws, bool resume,
                       bool expert_parallel = false) {
  const fs::path final_dir = stage_dir / "final";
  if (finished(c, ws, final_dir, name)) return final_dir.string();
  const auto t = on_rank(ws, train, name);
  auto model = load_model(in_dir);
  prepare_model(*model, t);
  auto sharding = expert_parallel ? shard_experts(*model, ws.dist) : nullptr;
  Trainer trainer(name, model, model_tensors(*model), *ws.train, t, stage_dir.string(), ws.pad_id);
  if (c.data.packing) trainer.set_packing(c.data.max_length);
  trainer.set_parallel(ws.dist, sharding);
  if (model->config().moe) trainer.set_telemetry([&] { return moe_telemetry(*model, *ws.dist); });
  trainer.run(resume);
  if (sharding) unshard_experts(*model, *sharding);  // whole stacks for the export
  if (ws.dist->is_lead()) {
    save_model(*model, final_dir.string(), dtype_from_name(c.save_dtype));
    copy_tokenizer_files(c, final_dir);
  }
  ws.dist->barrier(name + " export");
  return final_dir.string();
}

// The upcycled MoE of the base model (paper 3.1), written once by rank 0, with its tokenizer.
void upcycle_once(const ExperimentConfig& c, const Workspace& ws, const fs::path& moe_init) {
  if (ws.dist->is_lead() && fs::exists(moe_init / "config.json")) copy_tokenizer_files(c, moe_init);
  if (ws.dist->is_lead() && !fs::exists(moe_init / "config.json")) {
    std::cerr << "[upcycle] " << c.base_model << " -> " << moe_init.string() << " (" << c.moe.num_experts
              << " experts, top-" << c.moe.top_k << ", " << to_string(c.moe.routing) << " routing)\n";
    upcycle_directory(c.base_model, moe_init.string(), c.moe, c.upcycle);
    copy_tokenizer_files(c, moe_init);
  }
  ws.dist->barrier("upcycling");
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
  upcycle_once(c, ws, moe_init);
  // 2. Instruction-tune the MoE (expert parallel when configured).
  const auto moe_final = train_full("moe", moe_init.string(), root / "moe", c.moe_train, c, ws, resume,
                                    /*expert_parallel=*/true);
  write_eval(ws, moe_final, root / "moe" / "eval.json", c.moe_train);
  // 3. Learnable merge (Eq. 5-6): only the mixing logits train.
  const fs::path mdir = root / c.merge_name;
  const fs::path final_dir = mdir / "final";
  if (!finished(c, ws, final_dir, "merge")) {
    const auto t = on_rank(ws, c.merge_train, "merge");
    auto model = load_model(moe_final);
    prepare_model(*model, t);
    // The frozen expert stacks stay in the checkpoint's dtype: the values on disk, half of fp32.
    // distributed.shard_merge: each rank keeps its block of the experts (methods/merge.h), and
    // the exports become collective (rank 0 writes).
    const bool sharded = c.distributed.shard_merge && ws.dist->world() > 1;
    auto logits = attach_merge(*model, c.merge, dtype_from_name(c.save_dtype), sharded ? ws.dist : nullptr);
    if (sharded || ws.dist->is_lead())
      std::cerr << "[merge] rank " << ws.dist->rank() << " holds " << merge_stack_bytes(*model)
                << " bytes of expert stacks" << (sharded ? " (sharded)" : "") << "\n";
    // Every rank looks before any writes (a sharded export needs them all, so none can finish first).
    const bool init_missing = !fs::exists(mdir / "init" / "config.json");
    if (ws.dist->is_lead() || sharded) {
      if (init_missing) export_merged(*model, (mdir / "init").string(), dtype_from_name(c.save_dtype));  // the INIT ablation
      if (ws.dist->is_lead()) copy_tokenizer_files(c, mdir / "init");
    }
    Trainer trainer("merge", model, logits, *ws.train, t, mdir.string(), ws.pad_id);
    if (c.data.packing) trainer.set_packing(c.data.max_length);
    trainer.set_parallel(ws.dist);
    trainer.set_lockstep(sharded);
    trainer.set_telemetry([&] { return nlohmann::json{{"coefficients", merge_coefficients_json(*model, c.merge)["layers"]}}; });
    trainer.run(resume);
    if (ws.dist->is_lead())
      write_file_atomic((mdir / "coefficients.json").string(), merge_coefficients_json(*model, c.merge).dump(2) + "\n");
    if (ws.dist->is_lead() || sharded) export_merged(*model, final_dir.string(), dtype_from_name(c.save_dtype));
    if (ws.dist->is_lead()) copy_tokenizer_files(c, final_dir);
    ws.dist->barrier("merge export");
  }
  write_eval(ws, (mdir / "init").string(), mdir / "eval_init.json", c.merge_train);
  write_eval(ws, final_dir.string(), mdir / "eval.json", c.merge_train);
  return final_dir.string();
}

std::string run_ewa(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const fs::path root = fs::path(c.run_dir) / "ewa";
  const fs::path moe_init = root / "moe-init";
  upcycle_once(c, ws, moe_init);
  const fs::path final_dir = root / "final";
  if (!finished(c, ws, final_dir, "ewa")) {
    const auto t = on_rank(ws, c.ewa_train, "ewa");
    auto model = load_model(moe_init.string());
    prepare_model(*model, t);
    Trainer trainer("ewa", model, model_tensors(*model), *ws.train, t, root.string(), ws.pad_id);
    if (c.data.packing) trainer.set_packing(c.data.max_length);
    trainer.set_parallel(ws.dist);
    // After every optimizer update, pull each expert toward the experts' mean (paper A.2); the
    // ranks hold identical parameters after the all-reduced step, so they pull identically.
    trainer.set_after_step([&](int64_t step, int64_t total) { ewa_pull(*model, ewa_beta(c.ewa, step, total)); });
    trainer.set_telemetry([&] { return moe_telemetry(*model, *ws.dist); });
    trainer.run(resume);
    if (ws.dist->is_lead()) {
      export_averaged(*model, final_dir.string(), dtype_from_name(c.save_dtype));
      copy_tokenizer_files(c, final_dir);
    }
    ws.dist->barrier("ewa export");
  }
  write_eval(ws, final_dir.string(), root / "eval.json", c.ewa_train);
  return final_dir.string();
}

}  // namespace xft
