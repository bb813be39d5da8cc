#include "xft/train/resume_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/core/manifest.h"
#include "xft/core/safetensors.h"
#include "xft/model/model_io.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

std::string checkpoint_name(int64_t step) {
  std::ostringstream os;
  os << "step-" << std::setw(8) << std::setfill('0') << step;
  return os.str();
}

}  // namespace

ResumeState::ResumeState(std::string stage, std::string stage_dir, TrainConfig config, int64_t total_steps,
                         std::shared_ptr<const Distributed> dist, std::shared_ptr<const ExpertSharding> sharding)
    : stage_(std::move(stage)),
      dir_(std::move(stage_dir)),
      config_(std::move(config)),
      total_steps_(total_steps),
      dist_(std::move(dist)),
      sharding_(std::move(sharding)) {}

std::string ResumeState::path_of(int64_t step) const {
  return (fs::path(dir_) / "checkpoints" / checkpoint_name(step)).string();
}

std::vector<std::string> ResumeState::checkpoints() const {
  std::vector<std::string> out;
  const fs::path root = fs::path(dir_) / "checkpoints";
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const auto n = e.path().filename().string();
    // Only whole checkpoints: write_directory_atomic's temporaries carry a suffix.
    if (e.is_directory() && n.rfind("step-", 0) == 0 && n.size() == 13) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void ResumeState::refuse_overwrite(bool resume) const {
  const auto existing = checkpoints();
  XFT_CHECK(resume || existing.empty(), stage_, ": ", dir_, " already holds checkpoints (",
            fs::path(existing.empty() ? "" : existing.back()).filename().string(),
            "); pass --resume to continue that run, or use another run directory");
}

void ResumeState::save(int64_t step, const NamedTensors& trainable, const Optimizer& opt, const BatchSampler& sampler,
                       double elapsed_s) const {
  // Whole tensors whatever the layout: expert shards are gathered (every rank takes part).
  NamedTensors params;
  for (const auto& [n, t] : trainable) params.emplace_back(n, t.detach());
  NamedTensors opt_state = opt.state();
  if (sharding_) {
    params = sharding_->gather_all(params);
    opt_state = sharding_->gather_all(opt_state);
  }
  // Every rank's RNG, so that a resumed run with the same world size draws what it would have.
  auto own = at::detail::getDefaultCPUGenerator().get_state();
  auto all_rng = dist_->all_gather_cat(own.to(dist_->comm_device()).unsqueeze(0), Distributed::Group::kWorld,
                                       "gathering RNG states for checkpoint step " + std::to_string(step));
  if (!dist_->is_lead()) return;
  for (auto& [n, t] : params) t = t.cpu();
  NamedTensors rng = {{"cpu", all_rng[0].cpu()}};
  for (int r = 1; r < dist_->world(); ++r) rng.emplace_back("cpu.rank" + std::to_string(r), all_rng[r].cpu());
  nlohmann::json state = {{"stage", stage_},
                          {"step", step},
                          {"epoch", sampler.epoch()},
                          {"position", sampler.position()},
                          {"elapsed_s", elapsed_s},
                          {"total_steps", total_steps_},
                          {"config", config_.to_json()},
                          {"world_size", dist_->world()},
                          {"expert_parallel", dist_->expert_size()}};
  const std::string name = checkpoint_name(step);
  try {
    write_directory_atomic(path_of(step), [&](const std::string& tmp) {
      save_safetensors(tmp + "/trainable.safetensors", params);
      save_safetensors(tmp + "/optimizer.safetensors", opt_state);
      save_safetensors(tmp + "/rng.safetensors", rng);
      write_file_atomic(tmp + "/trainer.json", state.dump(2) + "\n");
    });
  } catch (const Error& e) {
    const auto whole = checkpoints();
    fail(stage_, ": saving checkpoint ", name, " failed: ", e.what(), ". ",
         whole.empty() ? std::string("There is no earlier checkpoint")
                       : "The newest earlier checkpoint, " + whole.back() + ", is intact",
         "; free some space and rerun with --resume");
  }
  prune(name);
}

void ResumeState::prune(const std::string& saved) const {
  auto all = checkpoints();
  // Newer than the one just saved: checkpoints that restore() found damaged and skipped.
  while (!all.empty() && fs::path(all.back()).filename().string() > saved) {
    std::cerr << "[" << stage_ << "] removing " << all.back() << ", superseded by " << saved << "\n";
    remove_tree(all.back());
    all.pop_back();
  }
  for (size_t i = 0; i + config_.keep_last < all.size(); ++i) remove_tree(all[i]);
}

std::string ResumeState::damage(const std::string& checkpoint) {
  try {
    return manifest_damage(checkpoint);
  } catch (const Error& e) {  // a file that cannot even be read is damage too
    return e.what();
  }
}

int64_t ResumeState::restore(const NamedTensors& trainable, Optimizer& opt, BatchSampler& sampler,
                             double* elapsed_s) const {
  const auto all = checkpoints();
  if (all.empty()) return 0;
  // Newest first; a damaged one (truncated, bit-flipped: its checksums disagree) is skipped
  // for the previous one, which costs the steps between them but never loads garbage.
  std::string damages;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string d = damage(*it);
    if (d.empty()) return restore_from(*it, trainable, opt, sampler, elapsed_s);
    if (dist_->is_lead())
      std::cerr << "[" << stage_ << "] checkpoint " << *it << " is damaged: " << d
                << (std::next(it) != all.rend() ? "; falling back to the previous one" : "") << "\n";
    damages += "\n  " + d;
  }
  fail(stage_, ": every checkpoint under ", dir_, "/checkpoints is damaged:", damages,
       "\nmove them away to start the stage over");
}

int64_t ResumeState::restore_from(const std::string& ck, const NamedTensors& trainable, Optimizer& opt,
                                  BatchSampler& sampler, double* elapsed_s) const {
  auto state = read_json_file(ck + "/trainer.json");
  XFT_CHECK(state.value("stage", "") == stage_, ck, ": checkpoint of stage '", state.value("stage", ""), "', not '",
            stage_, "'");
  auto saved = TrainConfig::from_json(state.at("config"), ck + "/trainer.json", "config");
  XFT_CHECK(saved.global_batch == config_.global_batch && saved.seed == config_.seed, ck,
            ": global_batch and seed must equal the interrupted run's to resume it exactly");
  const int saved_world = state.value("world_size", 1);
  XFT_CHECK(saved_world == dist_->world(), ck, ": written by a run of ", saved_world,
            " processes; resume it with the same world size (this run has ", dist_->world(), ")");
  auto local = [&](const std::string& n, torch::Tensor t) {
    return sharding_ && sharding_->is_sharded(n, t) ? sharding_->slice(t) : t;
  };
  auto params = SafetensorsFile::open(ck + "/trainable.safetensors");
  torch::NoGradGuard ng;
  for (const auto& [n, t] : trainable) {
    XFT_CHECK(params->contains(n), ck, "/trainable.safetensors: missing tensor '", n, "'");
    auto v = local(n, params->get(n));
    XFT_CHECK(v.sizes() == t.sizes(), ck, "/trainable.safetensors: tensor '", n, "' has the wrong shape");
    torch::Tensor(t).copy_(v);
  }
  auto opt_state = SafetensorsFile::open(ck + "/optimizer.safetensors");
  NamedTensors os;
  for (const auto& n : opt_state->names()) os.emplace_back(n, local(n, opt_state->get(n)));
  opt.load_state(os);
  auto rng = SafetensorsFile::open(ck + "/rng.safetensors");
  const std::string key = dist_->rank() == 0 ? "cpu" : "cpu.rank" + std::to_string(dist_->rank());
  XFT_CHECK(rng->contains(key), ck, "/rng.safetensors: missing tensor '", key, "'");
  at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  cpu_gen.set_state(rng->get(key).clone());
  sampler.set_position(state.at("epoch").get<int64_t>(), state.at("position").get<int64_t>());
  *elapsed_s = state.value("elapsed_s", 0.0);
  return state.at("step").get<int64_t>();
}

}  // namespace xft
