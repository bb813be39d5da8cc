#include "xft/pipelines/pipelines.h"

#include <unistd.h>
#include <filesystem>
#include <functional>
#include <iostream>

#include "xft/core/error.h"
#include "xft/eval/chat_template.h"
#include "xft/methods/task_vector_merge.h"
#include "xft/methods/upcycle.h"
#include "xft/moe/expert_parallel.h"
#include "xft/pipelines/run_layout.h"
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
  // Chat data renders through the model's own chat template (the evaluation's chat prompts' path).
  ConversationRenderer render;
  if (c.data.format == DataFormat::kMessages) {
    SandboxLimits limits;
    limits.python = c.code_eval.python;
    render = chat_renderer(load_chat_template(c.tokenizer), limits);
  }
  auto all = InstructionDataset::load(c.data, ws.tokenizer.get(), render);
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
    eval.files.clear();
    ws.heldout.emplace(InstructionDataset::load(eval, ws.tokenizer.get(), render));
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

// True when the stage finished earlier (its final/ exists): it is not redone. Rank 0 then
// repeats the stage's tokenizer copy, which a run killed after the export may have missed.
bool reuse_if_finished(const ExperimentConfig& c, const Workspace& ws, const fs::path& final_dir,
                       const std::string& stage) {
  if (!fs::exists(final_dir / "config.json")) return false;
  if (ws.dist->is_lead()) {
    copy_tokenizer_files(c, final_dir);
    std::cerr << "[" << stage << "] finished earlier (" << final_dir.string() << "); not redone\n";
  }
  return true;
}

// The stage's training config with this rank's device (LOCAL_RANK's GPU under torchrun).
// `stage` names a training stage, whose collectives need a device the backend carries.
TrainConfig train_config_for_rank(const Workspace& ws, TrainConfig t, const std::string& stage = "") {
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
    const auto t = train_config_for_rank(ws, train);
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

// The end of every stage: its model written to `dir` (by rank 0, or by every rank when the export
// is collective: a sharded merge), rank 0 adds the tokenizer files, and the others wait for it.
void export_stage(const ExperimentConfig& c, const Workspace& ws, const fs::path& dir, const std::string& stage,
                  bool collective, const std::function<void()>& write) {
  if (ws.dist->is_lead() || collective) write();
  if (ws.dist->is_lead()) copy_tokenizer_files(c, dir);
  ws.dist->barrier(stage + " export");
}

// What a stage that trains every parameter may add to the plain loop (SFT's and the MoE stage's):
// the MoE's routed experts split over the expert group, a hook after each optimizer step, and
// another export than the model itself (EWA pulls its experts together and exports their average).
struct FullStage {
  bool expert_parallel = false;
  std::function<void(CausalLMImpl& model, int64_t step, int64_t total)> after_step;
  std::function<void(CausalLMImpl& model, const std::string& dir, torch::Dtype dtype)> write =
      [](CausalLMImpl& model, const std::string& dir, torch::Dtype dtype) { save_model(model, dir, dtype); };
};

// Trains every parameter of the model in `in_dir` and writes it to <stage_dir>/final.
std::string train_full(const std::string& name, const std::string& in_dir, const fs::path& stage_dir,
                       const TrainConfig& train, const ExperimentConfig& c, Workspace& ws, bool resume,
                       const FullStage& stage = {}) {
  const fs::path final_dir = stage_dir / "final";
  if (reuse_if_finished(c, ws, final_dir, name)) return final_dir.string();
  const auto t = train_config_for_rank(ws, train, name);
  auto model = load_model(in_dir);
  prepare_model(*model, t);
  auto sharding = stage.expert_parallel ? shard_experts(*model, ws.dist) : nullptr;
  Trainer trainer(name, model, model_tensors(*model), *ws.train, t, stage_dir.string(), ws.pad_id);
  if (c.data.packing) trainer.set_packing(c.data.max_length);
  trainer.set_parallel(ws.dist, sharding);
  trainer.set_tensorboard(c.logging.tensorboard_dir(c.run_dir, stage_dir.string()));
  if (stage.after_step)
    trainer.set_after_step([&](int64_t step, int64_t total) { stage.after_step(*model, step, total); });
  if (model->config().moe) trainer.set_telemetry([&] { return moe_telemetry(*model, *ws.dist); });
  trainer.run(resume);
  if (sharding) unshard_experts(*model, *sharding);  // whole stacks for the export
  export_stage(c, ws, final_dir, name, /*collective=*/false,
               [&] { stage.write(*model, final_dir.string(), dtype_from_name(c.save_dtype)); });
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

// The learnable merge (Eq. 5-6) of the tuned MoE in `moe_final`: only the mixing logits train.
// Writes <merge_dir>/init (the INIT ablation: the initial coefficients), <merge_dir>/final (the
// XFT model) and coefficients.json.
void train_merge(const std::string& moe_final, const fs::path& mdir, const ExperimentConfig& c, Workspace& ws,
                 bool resume) {
  const fs::path final_dir = mdir / "final";
  if (reuse_if_finished(c, ws, final_dir, "merge")) return;
  switch (c.merge.method) {
    case MergeMethod::kLearned:
    case MergeMethod::kInit: break;
    case MergeMethod::kTaskArithmetic:
    case MergeMethod::kTies:
    case MergeMethod::kDare:
      // The baselines compute W directly from the tuned experts: nothing trains.
      if (ws.dist->is_lead())
        std::cerr << "[merge] " << to_string(c.merge.method) << " of " << moe_final << " (density " << c.merge.density
                  << ", scaling " << c.merge.scaling << ")\n";
      export_stage(c, ws, final_dir, "merge", /*collective=*/false, [&] {
        export_task_vector_merge(moe_final, final_dir.string(), c.merge, dtype_from_name(c.save_dtype));
      });
      return;
  }
  const auto t = train_config_for_rank(ws, c.merge_train, "merge");
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
    if (init_missing)
      export_merged(*model, (mdir / "init").string(), dtype_from_name(c.save_dtype));  // the INIT ablation
    if (ws.dist->is_lead()) copy_tokenizer_files(c, mdir / "init");
  }
  if (c.merge.method == MergeMethod::kLearned) {  // init: W at the initial coefficients, untrained
    Trainer trainer("merge", model, logits, *ws.train, t, mdir.string(), ws.pad_id);
    if (c.data.packing) trainer.set_packing(c.data.max_length);
    trainer.set_parallel(ws.dist);
    trainer.set_tensorboard(c.logging.tensorboard_dir(c.run_dir, mdir.string()));
    trainer.set_lockstep(sharded);
    trainer.set_telemetry([&] {
      return nlohmann::json{{"coefficients", merge_coefficients_json(*model, c.merge)["layers"]}};
    });
    trainer.run(resume);
  }
  if (ws.dist->is_lead())
    write_file_atomic((mdir / "coefficients.json").string(), merge_coefficients_json(*model, c.merge).dump(2) + "\n");
  export_stage(c, ws, final_dir, "merge", sharded,
               [&] { export_merged(*model, final_dir.string(), dtype_from_name(c.save_dtype)); });
}

}  // namespace

std::string run_sft(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const RunLayout run(c);
  auto out = train_full("sft", c.base_model, run.sft, c.sft_train, c, ws, resume);
  write_eval(ws, out, run.sft / "eval.json", c.sft_train);
  return out;
}

std::string run_xft(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const RunLayout run(c);
  // 1. Upcycle (paper 3.1).
  upcycle_once(c, ws, run.xft_moe_init);
  // 2. Instruction-tune the MoE (expert parallel when configured).
  FullStage moe;
  moe.expert_parallel = true;
  const auto moe_final = train_full("moe", run.xft_moe_init.string(), run.moe, c.moe_train, c, ws, resume, moe);
  write_eval(ws, moe_final, run.moe / "eval.json", c.moe_train);
  // 3. Learnable merge (Eq. 5-6): only the mixing logits train.
  train_merge(moe_final, run.merge, c, ws, resume);
  if (fs::exists(run.merge / "init" / "config.json"))  // the task-vector methods have no initial point
    write_eval(ws, (run.merge / "init").string(), run.merge / "eval_init.json", c.merge_train);
  write_eval(ws, (run.merge / "final").string(), run.merge / "eval.json", c.merge_train);
  return (run.merge / "final").string();
}

std::string run_ewa(const ExperimentConfig& c, Workspace& ws, bool resume) {
  XFT_CHECK(!c.base_model.empty(), c.source, ": 'base_model' is required");
  const RunLayout run(c);
  upcycle_once(c, ws, run.ewa_moe_init);
  FullStage ewa;
  // After every optimizer update, pull each expert toward the experts' mean (paper A.2); the
  // ranks hold identical parameters after the all-reduced step, so they pull identically.
  ewa.after_step = [&](CausalLMImpl& model, int64_t step, int64_t total) {
    ewa_pull(model, ewa_beta(c.ewa, step, total));
  };
  ewa.write = [](CausalLMImpl& model, const std::string& dir, torch::Dtype dtype) {
    export_averaged(model, dir, dtype);
  };
  auto out = train_full("ewa", run.ewa_moe_init.string(), run.ewa, c.ewa_train, c, ws, resume, ewa);
  write_eval(ws, out, run.ewa / "eval.json", c.ewa_train);
  return out;
}

}  // namespace xft
