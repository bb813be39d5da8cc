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

#include "xft/error.h"
#include "xft/lr_schedule.h"
#include "xft/optimizer.h"

namespace fs = std::filesystem;

namespace xft {

// ---------------------------------------------------------------- config

TrainConfig TrainConfig::from_json(const nlohmann::json& j, const std::string& source) {
  XFT_CHECK(j.is_object(), source, ": a training section must be an object");
  TrainConfig c;
  auto base = c.to_json();
  for (const auto& [k, v] : j.items()) {
    XFT_CHECK(base.contains(k), source, ": unknown training field '", k, "'");
    XFT_CHECK(std::string(base[k].type_name()) == v.type_name() || (base[k].is_number() && v.is_number()), source,
              ": training field '", k, "' should be ", base[k].type_name(), ", got ", v.type_name());
    base[k] = v;
  }
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
  NamedTensors params;
  for (const auto& [n, t] : trainable_) params.emplace_back(n, t.detach().cpu());
  NamedTensors rng = {{"cpu", at::detail::getDefaultCPUGenerator().get_state()}};
  nlohmann::json state = {{"stage", name_},          {"step", step},       {"epoch", sampler.epoch()},
                          {"position", sampler.position()}, {"elapsed_s", elapsed},
                          {"total_steps", total_steps_}, {"config", config_.to_json()}};
  write_directory_atomic((root / checkpoint_name(step)).string(), [&](const std::string& tmp) {
    save_safetensors(tmp + "/trainable.safetensors", params);
    save_safetensors(tmp + "/optimizer.safetensors", opt.state());
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
  auto params = SafetensorsFile::open(ck + "/trainable.safetensors");
  torch::NoGradGuard ng;
  for (auto& [n, t] : trainable_) {
    XFT_CHECK(params->contains(n), ck, "/trainable.safetensors: missing tensor '", n, "'");
    XFT_CHECK(params->entry(n).shape == t.sizes().vec(), ck, "/trainable.safetensors: tensor '", n,
              "' has the wrong shape");
    t.copy_(params->get(n));
  }
  auto opt_state = SafetensorsFile::open(ck + "/optimizer.safetensors");
  NamedTensors os;
  for (const auto& n : opt_state->names()) os.emplace_back(n, opt_state->get(n));
  opt.load_state(os);
  at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  cpu_gen.set_state(SafetensorsFile::open(ck + "/rng.safetensors")->get("cpu").clone());
  sampler.set_position(state.at("epoch").get<int64_t>(), state.at("position").get<int64_t>());
  *elapsed = state.value("elapsed_s", 0.0);
  return state.at("step").get<int64_t>();
}

TrainResult Trainer::run(bool resume) {
  fs::create_directories(dir_);
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
  if (existing.empty()) torch::manual_seed(config_.seed);

  double elapsed = 0.0;
  int64_t step = resume ? load_checkpoint(*opt, sampler, &elapsed) : 0;
  const fs::path metrics_path = fs::path(dir_) / "metrics.jsonl";
  if (step > 0) {
    std::cerr << "[" << name_ << "] resumed at step " << step << "/" << total_steps_ << "\n";
    truncate_metrics(metrics_path, step);
  } else {
    fs::remove(metrics_path);
  }
  std::ofstream metrics(metrics_path, std::ios::app);
  const bool tty = ::isatty(STDERR_FILENO);
  const bool autocast = config_.precision == "bf16_autocast";
  const int64_t micro_per_step = config_.global_batch / config_.micro_batch;
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
    // its token sum divided by the global count, so accumulation changes nothing.
    int64_t global_tokens = 0;
    std::vector<Batch> micro;
    for (size_t s = 0; s < indices.size(); s += config_.micro_batch) {
      std::vector<int64_t> part(indices.begin() + s, indices.begin() + std::min(indices.size(), s + config_.micro_batch));
      micro.push_back(collate(data_, part, pad_id_));
      global_tokens += micro.back().loss_tokens;
    }
    double loss_sum = 0.0, aux_sum = 0.0;
    int64_t seen_tokens = 0;
    for (size_t m = 0; m < micro.size(); ++m) {
      auto& b = micro[m];
      torch::Tensor loss, aux;
      {
        AutocastScope scope(autocast, device);
        auto out = model_->forward(b.input_ids.to(device), b.attention_mask.to(device));
        auto [sum, n] = language_model_loss(out.logits, b.labels.to(device));
        loss = sum / std::max<int64_t>(1, global_tokens);
        aux = out.aux_loss;
        seen_tokens += b.attention_mask.sum().item<int64_t>();
      }
      const double lv = loss.item<double>();
      if (!std::isfinite(lv)) {
        std::ostringstream ids;
        for (size_t s = m * config_.micro_batch; s < std::min(indices.size(), (m + 1) * config_.micro_batch); ++s)
          ids << (s == m * config_.micro_batch ? "" : ",") << indices[s];
        fail(name_, ": the loss is ", lv, " at step ", step + 1, " (epoch ", epoch + 1, ", micro-batch ", m + 1, "/",
             micro.size(), ", examples ", ids.str(), "); stopped, the last checkpoint in ", dir_,
             "/checkpoints is intact");
      }
      loss_sum += lv;
      auto total = loss;
      if (aux.defined()) {
        aux = aux / static_cast<double>(micro_per_step);
        aux_sum += aux.item<double>();
        total = total + aux;
      }
      total.backward();
    }
    const double grad_norm = clip_grad_norm(trainable_, config_.max_grad_norm);
    opt->step();
    ++step;
    if (after_step_) after_step_(step, total_steps_);

    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    elapsed = elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double per_step = (elapsed - elapsed_before) / std::max<int64_t>(1, step - first_step);
    result.final_loss = loss_sum;
    if (step % config_.log_every == 0 || step == total_steps_) {
      nlohmann::json row = {{"step", step},         {"epoch", epoch + 1},          {"loss", loss_sum},
                            {"aux_loss", aux_sum},  {"lr", schedule.at(step - 1)}, {"grad_norm", grad_norm},
                            {"tokens_per_s", seen_tokens / std::max(dt, 1e-9)},   {"elapsed_s", elapsed}};
      metrics << row.dump() << "\n" << std::flush;
      std::ostringstream line;
      line << "[" << name_ << "] step " << step << "/" << total_steps_ << " epoch " << epoch + 1 << " loss "
           << std::fixed << std::setprecision(4) << loss_sum;
      if (aux_sum != 0.0) line << " aux " << std::setprecision(4) << aux_sum;
      line << " lr " << std::scientific << std::setprecision(2) << schedule.at(step - 1) << std::fixed
           << std::setprecision(0) << " " << seen_tokens / std::max(dt, 1e-9) << " tok/s ETA "
           << format_eta(per_step * (total_steps_ - step));
      std::cerr << (tty ? "\r" : "") << line.str() << (tty ? "   " : "\n") << std::flush;
    }
    if ((config_.save_every > 0 && step % config_.save_every == 0) || step == total_steps_) {
      save_checkpoint(step, *opt, sampler, elapsed);
    }
  }
  if (tty) std::cerr << "\n";
  result.steps = step;
  return result;
}

}  // namespace xft
