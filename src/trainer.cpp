#include "xft/trainer.h"

#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "xft/config_section.h"
#include "xft/error.h"
#include "xft/grad_reducer.h"
#include "xft/lr_schedule.h"
#include "xft/optimizer.h"

namespace fs = std::filesystem;

namespace xft {

// ---------------------------------------------------------------- config

TrainConfig TrainConfig::from_json(const nlohmann::json& j, const std::string& source) {
  TrainConfig c;
  auto base = overlay_section(c.to_json(), j, source, "training");
  c.epochs = base["epochs"];
  c.max_steps = base["max_steps"];
  c.global_batch = base["global_batch"];
  c.micro_batch = base["micro_batch"];
  c.optimizer = base["optimizer"];
  c.lr = base["lr"];
  c.weight_decay = base["weight_decay"];
  c.schedule = base["schedule"];
  c.warmup = base["warmup"];
  c.max_grad_norm = base["max_grad_norm"];
  c.precision = base["precision"];
  c.device = base["device"];
  c.save_every = base["save_every"];
  c.keep_last = base["keep_last"];
  c.log_every = base["log_every"];
  c.group_by_length = base["group_by_length"];
  c.seed = base["seed"];
  XFT_CHECK(c.global_batch > 0 && c.micro_batch > 0 && c.global_batch % c.micro_batch == 0, source,
            ": global_batch (", c.global_batch, ") must be a positive multiple of micro_batch (", c.micro_batch, ")");
  XFT_CHECK(c.epochs > 0 || c.max_steps > 0, source, ": epochs or max_steps must be positive");
  XFT_CHECK(c.optimizer == "adafactor" || c.optimizer == "adamw", source, ": optimizer must be adafactor or adamw");
  XFT_CHECK(c.precision == "fp32" || c.precision == "bf16" || c.precision == "bf16_autocast", source,
            ": precision must be fp32, bf16 or bf16_autocast");
  XFT_CHECK(c.keep_last >= 1, source, ": keep_last must be >= 1");
  XFT_CHECK(c.log_every >= 1, source, ": log_every must be >= 1");
  return c;
}

nlohmann::json TrainConfig::to_json() const {
  return {{"epochs", epochs},         {"max_steps", max_steps},       {"global_batch", global_batch},
          {"micro_batch", micro_batch}, {"optimizer", optimizer},     {"lr", lr},
          {"weight_decay", weight_decay}, {"schedule", schedule},     {"warmup", warmup},
          {"max_grad_norm", max_grad_norm}, {"precision", precision}, {"device", device},
          {"save_every", save_every}, {"keep_last", keep_last},       {"log_every", log_every},
          {"group_by_length", group_by_length}, {"seed", seed}};
}

// ---------------------------------------------------------------- helpers

namespace {

// bf16 autocast for the forward pass (fp32 master weights), as the reference merge stage runs.
class AutocastScope {
 public:
  AutocastScope(bool on, torch::Device device) : on_(on), type_(device.type()) {
    if (!on_) return;
    prev_ = at::autocast::is_autocast_enabled(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, prev_);
  }

 private:
  bool on_, prev_ = false;
  at::DeviceType type_;
};

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, const NamedTensors& params) {
  // Biases and norms are exempt from weight decay, as in the Hugging Face Trainer.
  std::vector<std::string> no_decay;
  for (const auto& [n, _] : params)
    if (!hf_applies_weight_decay(n)) no_decay.push_back(n);
  if (c.optimizer == "adamw") {
    AdamWOptions o;
    o.lr = c.lr;
    o.weight_decay = c.weight_decay;
    o.no_decay = no_decay;
    return make_adamw(params, o);
  }
  AdafactorOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  o.no_decay = no_decay;
  return make_adafactor(params, o);
}

std::string checkpoint_name(int64_t step) {
  std::ostringstream os;
  os << "step-" << std::setw(8) << std::setfill('0') << step;
  return os.str();
}

std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto n = e.path().filename().string();
    // Only whole checkpoints: write_directory_atomic's temporaries carry a suffix.
    if (e.is_directory() && n.rfind("step-", 0) == 0 && n.size() == 13) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string format_eta(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", static_cast<long>(s / 3600), static_cast<long>((s / 60) % 60),
                static_cast<long>(s % 60));
  return buf;
}

// Keeps the metrics lines of steps <= `step` (a resumed run continues the same curve).
void truncate_metrics(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  write_file_atomic(file.string(), kept);
}

}  // namespace

void prepare_model(CausalLMImpl& model, const TrainConfig& c) {
  const torch::Device device(c.device);
  model.to(device, c.precision == "bf16" ? torch::kBFloat16 : torch::kFloat32);
}

std::pair<torch::Tensor, int64_t> language_model_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t V = logits.size(-1);
  auto pred = logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, V}).to(torch::kFloat32);
  auto target = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  const int64_t count = target.ne(-100).sum().item<int64_t>();
  auto sum = torch::nn::functional::cross_entropy(
      pred, target, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
  return {sum, count};
}

double evaluate_loss(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size, int64_t pad_id,
                     const std::string& precision) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.parameters().front().device();
  AutocastScope autocast(precision == "bf16_autocast", device);
  double sum = 0.0;
  int64_t count = 0;
  for (size_t start = 0; start < data.size(); start += batch_size) {
    std::vector<int64_t> idx;
    for (size_t i = start; i < std::min(data.size(), start + batch_size); ++i) idx.push_back(static_cast<int64_t>(i));
    auto b = collate(data, idx, pad_id);
    auto logits = model.forward(b.input_ids.to(device), b.attention_mask.to(device)).logits;
    auto [s, n] = language_model_loss(logits, b.labels.to(device));
    sum += s.item<double>();
    count += n;
  }
  model.train(was_training);
  XFT_CHECK(count > 0, "evaluate_loss: the data set has no response token to score");
  return sum / count;
}

// ---------------------------------------------------------------- trainer

Trainer::Trainer(std::string name, CausalLM model, NamedTensors trainable, const InstructionDataset& data,
                 TrainConfig config, std::string stage_dir, int64_t pad_id)
    : name_(std::move(name)), model_(std::move(model)), trainable_(std::move(trainable)), data_(data),
      config_(std::move(config)), dir_(std::move(stage_dir)), pad_id_(pad_id) {
  XFT_CHECK(!trainable_.empty(), name_, ": nothing to train");
  XFT_CHECK(data_.size() > 0, name_, ": the training data set is empty");
  const int64_t per_epoch =
      (static_cast<int64_t>(data_.size()) + config_.global_batch - 1) / config_.global_batch;  // last partial kept
  total_steps_ = config_.max_steps > 0 ? config_.max_steps : per_epoch * config_.epochs;
}

void Trainer::save_checkpoint(int64_t step, Optimizer& opt, BatchSampler& sampler, double elapsed) {
  const fs::path root = fs::path(dir_) / "checkpoints";
  // Whole tensors whatever the layout: expert shards are gathered (every rank takes part).
  NamedTensors params;
  for (const auto& [n, t] : trainable_) params.emplace_back(n, t.detach());
  NamedTensors opt_state = opt.state();
  if (sharding_) {
    params = sharding_->gather_all(params);
    opt_state = sharding_->gather_all(opt_state);
  }
  // Every rank's RNG, so that a resumed run with the same world size draws what it would have.
  auto own = at::detail::getDefaultCPUGenerator().get_state();
  auto all_rng = dist_->all_gather_cat(own.to(dist_->comm_device()).unsqueeze(0), Distributed::Group::kWorld,
                                       "gathering RNG states for checkpoint step " + std::to_string(step));
  if (!lead()) return;
  for (auto& [n, t] : params) t = t.cpu();
  NamedTensors rng = {{"cpu", all_rng[0].cpu()}};
  for (int r = 1; r < dist_->world(); ++r) rng.emplace_back("cpu.rank" + std::to_string(r), all_rng[r].cpu());
  nlohmann::json state = {{"stage", name_},          {"step", step},       {"epoch", sampler.epoch()},
                          {"position", sampler.position()}, {"elapsed_s", elapsed},
                          {"total_steps", total_steps_}, {"config", config_.to_json()},
                          {"world_size", dist_->world()}, {"expert_parallel", dist_->expert_size()}};
  write_directory_atomic((root / checkpoint_name(step)).string(), [&](const std::string& tmp) {
    save_safetensors(tmp + "/trainable.safetensors", params);
    save_safetensors(tmp + "/optimizer.safetensors", opt_state);
    save_safetensors(tmp + "/rng.safetensors", rng);
    write_file_atomic(tmp + "/trainer.json", state.dump(2) + "\n");
  });
  auto all = list_checkpoints(root);
  for (size_t i = 0; i + config_.keep_last < all.size(); ++i) remove_tree((all[i]).string());
}

int64_t Trainer::load_checkpoint(Optimizer& opt, BatchSampler& sampler, double* elapsed) {
  auto all = list_checkpoints(fs::path(dir_) / "checkpoints");
  if (all.empty()) return 0;
  const auto ck = all.back().string();
  auto state = read_json_file(ck + "/trainer.json");
  XFT_CHECK(state.value("stage", "") == name_, ck, ": checkpoint of stage '", state.value("stage", ""),
            "', not '", name_, "'");
  auto saved = TrainConfig::from_json(state.at("config"), ck + "/trainer.json");
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
  for (auto& [n, t] : trainable_) {
    XFT_CHECK(params->contains(n), ck, "/trainable.safetensors: missing tensor '", n, "'");
    auto v = local(n, params->get(n));
    XFT_CHECK(v.sizes() == t.sizes(), ck, "/trainable.safetensors: tensor '", n, "' has the wrong shape");
    t.copy_(v);
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
  *elapsed = state.value("elapsed_s", 0.0);
  return state.at("step").get<int64_t>();
}

void Trainer::broadcast_parameters() {
  // Rank 0's values everywhere: replicated tensors over the world, expert shards over the
  // ranks holding the same experts.
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> world, expert_dp;
  for (const auto& [n, t] : trainable_) {
    if (sharding_ && sharding_->is_sharded(n, t)) {
      if (sharding_->replicated() > 0) world.push_back(t.narrow(0, 0, sharding_->replicated()));
      expert_dp.push_back(t.narrow(0, sharding_->replicated(), t.size(0) - sharding_->replicated()));
    } else {
      world.push_back(t);
    }
  }
  dist_->broadcast(world, Distributed::Group::kWorld, "broadcast of the initial parameters");
  dist_->broadcast(expert_dp, Distributed::Group::kExpertDp, "broadcast of the initial expert parameters");
}

void Trainer::verify_replicas(int64_t step) {
  if (!dist_->active()) return;
  // Data parallelism keeps replicated parameters bitwise equal (the all-reduced sum is the same
  // everywhere, the update is deterministic); a difference is a bug worth stopping for.
  torch::NoGradGuard ng;
  double sum = 0.0, sq = 0.0;
  for (const auto& [n, t] : trainable_) {
    auto v = sharding_ && sharding_->is_sharded(n, t) ? t.narrow(0, 0, sharding_->replicated()) : t;
    auto d = v.to(torch::kDouble);
    sum += d.sum().item<double>();
    sq += d.square().sum().item<double>();
  }
  auto mine = torch::tensor({sum, sq}, torch::kDouble).to(dist_->comm_device()).unsqueeze(0);
  auto all = dist_->all_gather_cat(mine, Distributed::Group::kWorld, "replica check").cpu();
  for (int r = 1; r < dist_->world(); ++r)
    if (!all[r].equal(all[0])) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "%.17g vs %.17g", all[r][0].item<double>(), all[0][0].item<double>());
      fail(name_, ": after step ", step, " the replicated parameters of rank ", r, " differ from rank 0's (sums ",
           buf, ")");
    }
}

double Trainer::clip_and_norm() {
  if (!sharding_) return clip_grad_norm(trainable_, config_.max_grad_norm);
  // The norm over the whole model: rows every rank holds count once, each rank's own expert
  // rows are summed over the expert group.
  torch::NoGradGuard ng;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(dist_->comm_device());
  auto replicated = torch::zeros({}, opts), own = torch::zeros({1}, opts);
  auto sq = [&](const torch::Tensor& g) {
    return torch::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat).square().to(opts.device());
  };
  for (const auto& [n, t] : trainable_) {
    const auto& g = t.grad();
    if (!g.defined()) continue;
    if (sharding_->is_sharded(n, t)) {
      replicated = replicated + sq(g.narrow(0, 0, sharding_->replicated()));
      own = own + sq(g.narrow(0, sharding_->replicated(), g.size(0) - sharding_->replicated()));
    } else {
      replicated = replicated + sq(g);
    }
  }
  std::vector<torch::Tensor> v{own};
  dist_->all_reduce_sum(v, Distributed::Group::kExpert, "gradient norm");
  const auto total = (replicated + own[0]).sqrt();
  clip_grads_to_norm(trainable_, total, config_.max_grad_norm);
  return total.item<double>();
}

TrainResult Trainer::run(bool resume) {
  if (lead()) fs::create_directories(dir_);
  const auto existing = list_checkpoints(fs::path(dir_) / "checkpoints");
  XFT_CHECK(resume || existing.empty(), name_, ": ", dir_, " already holds checkpoints (", existing.back().filename().string(),
            "); pass --resume to continue that run, or use another run directory");
  const torch::Device device = trainable_.front().second.device();
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < data_.size(); ++i) lengths.push_back(static_cast<int64_t>(data_[i].input_ids.size()));
  BatchSampler sampler(lengths, config_.global_batch, config_.seed, config_.group_by_length, /*drop_last=*/false);
  auto opt = make_optimizer(config_, trainable_);
  LrSchedule schedule{config_.schedule, config_.warmup, total_steps_, config_.lr};
  schedule.validate();
  // Each rank its own stream of training-time randomness (noisy routing); rank 0's is the
  // single-process run's.
  if (existing.empty()) torch::manual_seed(config_.seed + static_cast<uint64_t>(dist_->rank()));

  double elapsed = 0.0;
  int64_t step = resume ? load_checkpoint(*opt, sampler, &elapsed) : 0;
  if (step == 0) broadcast_parameters();
  std::unique_ptr<GradReducer> reducer;
  if (dist_->active()) {
    std::vector<GradReducer::Slice> slices;
    for (const auto& [n, t] : trainable_) {
      if (sharding_ && sharding_->is_sharded(n, t)) {
        const int64_t rep = sharding_->replicated();
        if (rep > 0) slices.push_back({n, t, 0, rep, Distributed::Group::kWorld});
        slices.push_back({n, t, rep, t.size(0) - rep, Distributed::Group::kExpertDp});
      } else {
        slices.push_back({n, t, 0, -1, Distributed::Group::kWorld});
      }
    }
    reducer = std::make_unique<GradReducer>(std::move(slices), dist_, dist_->config().bucket_mb);
  }
  const fs::path metrics_path = fs::path(dir_) / "metrics.jsonl";
  if (step > 0) {
    if (lead()) std::cerr << "[" << name_ << "] resumed at step " << step << "/" << total_steps_ << "\n";
    if (lead()) truncate_metrics(metrics_path, step);
  } else if (lead()) {
    fs::remove(metrics_path);
  }
  std::ofstream metrics;
  if (lead()) metrics.open(metrics_path, std::ios::app);
  const bool tty = ::isatty(STDERR_FILENO);
  const bool autocast = config_.precision == "bf16_autocast";
  const int64_t micro_per_step = config_.global_batch / config_.micro_batch;
  const int64_t W = dist_->world(), R = dist_->rank();
  model_->train();
  TrainResult result;
  auto t_start = std::chrono::steady_clock::now();
  const double elapsed_before = elapsed;
  const int64_t first_step = step;

  while (step < total_steps_) {
    auto t0 = std::chrono::steady_clock::now();
    const int64_t epoch = sampler.epoch();
    auto indices = sampler.next();
    opt->set_lr(schedule.at(step));
    opt->zero_grad();
    // Loss = mean cross-entropy over the global batch's response tokens: each micro-batch adds
    // its token sum divided by the global count, so accumulation and the split over ranks
    // change nothing (the ranks' gradients are summed). Every rank holds the data, so each
    // counts the global tokens itself and collates only its own micro-batches.
    const int64_t global_tokens = count_loss_tokens(data_, indices);
    const int64_t M = (static_cast<int64_t>(indices.size()) + config_.micro_batch - 1) / config_.micro_batch;
    auto micro_batch = [&](int64_t m) {
      const auto first = indices.begin() + m * config_.micro_batch;
      const auto last = indices.begin() + std::min<int64_t>(static_cast<int64_t>(indices.size()), (m + 1) * config_.micro_batch);
      return collate(data_, std::vector<int64_t>(first, last), pad_id_);
    };
    // This rank's micro-batches: a contiguous block, so that each is the single-process run's.
    const int64_t m_begin = M * R / W, m_end = M * (R + 1) / W;
    // Expert parallelism exchanges tokens in every forward and backward: all ranks of a step
    // run as many passes, a rank short of micro-batches repeats one with zero weight.
    const int64_t passes = sharding_ ? (M + W - 1) / W : m_end - m_begin;
    double loss_sum = 0.0, aux_sum = 0.0, seen_tokens = 0.0;
    std::string bad;  // the first non-finite micro-batch of this rank
    for (int64_t k = 0; k < passes; ++k) {
      const int64_t m = m_begin + k;
      const bool dummy = m >= m_end;
      const Batch b = micro_batch(dummy ? m_begin % M : m);
      if (reducer && k + 1 == passes) reducer->arm();
      torch::Tensor loss, aux;
      {
        AutocastScope scope(autocast, device);
        auto out = model_->forward(b.input_ids.to(device), b.attention_mask.to(device));
        auto [sum, n] = language_model_loss(out.logits, b.labels.to(device));
        loss = sum / std::max<int64_t>(1, global_tokens);
        aux = out.aux_loss;
      }
      if (dummy) {
        loss = loss * 0.0;
        if (aux.defined()) aux = aux * 0.0;
      } else {
        seen_tokens += b.attention_mask.sum().item<double>();
      }
      const double lv = loss.item<double>();
      if (!std::isfinite(lv) && bad.empty()) {
        std::ostringstream ids;
        const auto first = static_cast<size_t>(m * config_.micro_batch);
        const auto last = std::min(indices.size(), static_cast<size_t>((m + 1) * config_.micro_batch));
        for (size_t s = first; s < last; ++s) ids << (s == first ? "" : ",") << indices[s];
        std::ostringstream os;
        os << "the loss is " << lv << " at step " << step + 1 << " (epoch " << epoch + 1 << ", micro-batch " << m + 1
           << "/" << M << ", examples " << ids.str() << ")";
        bad = os.str();
      }
      loss_sum += lv;
      auto total = loss;
      if (aux.defined()) {
        aux = aux / static_cast<double>(micro_per_step);
        aux_sum += aux.item<double>();
        total = total + aux;
      }
      // Single process: stop before a backward through a non-finite loss. Several: every rank
      // keeps in step with the others' collectives and all stop together below.
      if (!bad.empty() && !dist_->active()) break;
      total.backward();
    }
    int64_t overlapped = 0;
    if (reducer) {
      overlapped = reducer->launched_in_backward();
      reducer->finish();
    }
    // The step's numbers over all ranks (and whether any saw a non-finite loss).
    auto stats = torch::tensor({loss_sum, aux_sum, seen_tokens, bad.empty() ? 0.0 : 1.0}, torch::kDouble);
    if (dist_->active()) {
      std::vector<torch::Tensor> v{stats.to(dist_->comm_device())};
      dist_->all_reduce_sum(v, Distributed::Group::kWorld, "metrics of step " + std::to_string(step + 1));
      stats = v[0].cpu();
    }
    const auto* st = stats.data_ptr<double>();
    loss_sum = st[0];
    aux_sum = st[1];
    seen_tokens = st[2];
    if (st[3] > 0) {
      fail(name_, ": ", bad.empty() ? "another rank reported a non-finite loss at step " + std::to_string(step + 1) : bad,
           dist_->active() ? " (rank " + std::to_string(R) + ")" : "", "; stopped, the last checkpoint in ", dir_,
           "/checkpoints is intact");
    }
    const double grad_norm = clip_and_norm();
    opt->step();
    ++step;
    if (after_step_) after_step_(step, total_steps_);

    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    elapsed = elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double per_step = (elapsed - elapsed_before) / std::max<int64_t>(1, step - first_step);
    result.final_loss = loss_sum;
    if (lead() && (step % config_.log_every == 0 || step == total_steps_)) {
      nlohmann::json row = {{"step", step},         {"epoch", epoch + 1},          {"loss", loss_sum},
                            {"aux_loss", aux_sum},  {"lr", schedule.at(step - 1)}, {"grad_norm", grad_norm},
                            {"tokens_per_s", seen_tokens / std::max(dt, 1e-9)},   {"elapsed_s", elapsed}};
      if (dist_->active()) row["world_size"] = W;
      if (reducer) {  // how much of the gradient all-reduce overlapped this rank's backward
        row["buckets"] = reducer->num_buckets();
        row["buckets_overlapped"] = overlapped;
      }
      metrics << row.dump() << "\n" << std::flush;
      std::ostringstream line;
      line << "[" << name_ << "] step " << step << "/" << total_steps_ << " epoch " << epoch + 1 << " loss "
           << std::fixed << std::setprecision(4) << loss_sum;
      if (aux_sum != 0.0) line << " aux " << std::setprecision(4) << aux_sum;
      line << " lr " << std::scientific << std::setprecision(2) << schedule.at(step - 1) << std::fixed
           << std::setprecision(0) << " " << seen_tokens / std::max(dt, 1e-9) << " tok/s ETA "
           << format_eta(per_step * (total_steps_ - step));
      if (dist_->active()) line << " (" << W << " ranks)";
      std::cerr << (tty ? "\r" : "") << line.str() << (tty ? "   " : "\n") << std::flush;
    }
    if ((config_.save_every > 0 && step % config_.save_every == 0) || step == total_steps_) {
      save_checkpoint(step, *opt, sampler, elapsed);
    }
  }
  if (tty && lead()) std::cerr << "\n";
  verify_replicas(step);
  result.steps = step;
  return result;
}

}  // namespace xft
