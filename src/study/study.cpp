#include "xft/study/study.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/model/model_io.h"
#include "xft/pipelines/pipelines.h"
#include "xft/study/statistics.h"
#include "xft/train/loss.h"
#include "xft/train/precision.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

struct Arm {
  std::string model;                // model directory under the seed's run directory
  std::vector<std::string> stages;  // stage directories whose training it took
  TrainConfig ExperimentConfig::*train;  // the section whose device and precision score it
};

const std::map<std::string, Arm>& arms() {
  static const std::map<std::string, Arm> a = {
      {"sft", {"sft/final", {"sft"}, &ExperimentConfig::sft_train}},
      {"moe", {"xft/moe/final", {"xft/moe"}, &ExperimentConfig::moe_train}},
      {"xft", {"xft/merge/final", {"xft/moe", "xft/merge"}, &ExperimentConfig::merge_train}},
      {"xft_init", {"xft/merge/init", {"xft/moe"}, &ExperimentConfig::merge_train}},
      {"ewa", {"ewa/final", {"ewa"}, &ExperimentConfig::ewa_train}}};
  return a;
}

ExperimentConfig seed_config(const StudyOptions& o, uint64_t seed) {
  auto sets = o.overrides;
  const auto s = std::to_string(seed);
  for (const char* k : {"sft_train.seed=", "moe_train.seed=", "merge_train.seed=", "ewa_train.seed=", "upcycle.seed="})
    sets.push_back(k + s);
  sets.push_back("run_dir=" + (fs::path(o.out_dir) / ("seed-" + s)).string());
  return ExperimentConfig::load(o.config_path, sets);
}

// Steps, epochs, tokens and FLOPs of one stage from its metrics (6 x trained-path parameters x
// tokens: forward and backward of every active weight; an MoE counts the K experts a token uses).
nlohmann::json stage_budget(const fs::path& stage, double active_params) {
  std::ifstream in(stage / "metrics.jsonl");
  std::string line;
  int64_t steps = 0, epochs = 0;
  double tokens = 0.0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    steps = j.value("step", steps);
    epochs = j.value("epoch", epochs);
    tokens += j.value("tokens", 0.0);
  }
  return {{"stage", stage.filename().string()}, {"steps", steps}, {"epochs", epochs}, {"tokens", tokens},
          {"flops", 6.0 * active_params * tokens}};
}

// Parameters a token's forward and backward go through: all of a dense model; the shared
// expert and K - 1 routed ones of an MoE layer.
// Read from the directory's config and safetensors headers: no weight is loaded.
double active_parameters(const std::string& model_dir) {
  const auto files = TensorDirectory::open(model_dir);
  double total = 0.0;
  for (const auto& name : files.names()) {
    double n = 1.0;
    for (int64_t d : files.entry(name).shape) n *= static_cast<double>(d);
    total += n;
  }
  const auto c = ModelConfig::load(model_dir);
  if (!c.moe) return total;
  const double ffn = 3.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.intermediate_size);
  return total - static_cast<double>((c.moe->num_experts - c.moe->top_k) * c.num_hidden_layers) * ffn;
}

std::vector<double> arm_losses(const ExperimentConfig& c, const Workspace& ws, const std::string& arm,
                               const fs::path& cache, nlohmann::json* budget) {
  const auto& a = arms().at(arm);
  const fs::path run(c.run_dir);
  if (fs::exists(cache)) {
    auto j = read_json_file(cache.string());
    *budget = j.at("budget");
    return j.at("losses").get<std::vector<double>>();
  }
  const auto& t = c.*a.train;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : a.stages) stages.push_back(stage_budget(run / s, active_parameters((run / s / "final").string())));
  auto model = load_model((run / a.model).string());
  prepare_model(*model, t);
  auto losses = example_losses(*model, *ws.heldout, t.micro_batch, ws.pad_id, t.precision);
  *budget = stages;
  write_file_atomic(cache.string(), nlohmann::json({{"losses", losses}, {"budget", stages}}).dump() + "\n");
  return losses;
}

double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

// Per arm: the mean held-out loss of each seed, their mean and std. Per comparison: the per-example
// difference averaged over seeds (negative: the first arm is better), its mean, the bootstrap
// 95% interval and the Wilcoxon p-value over examples.
nlohmann::json aggregate(const StudyOptions& o, const std::map<std::string, std::vector<std::vector<double>>>& losses,
                         const std::map<std::string, nlohmann::json>& budgets) {
  nlohmann::json result = {{"seeds", o.seeds}, {"config", o.config_path}, {"arms", nlohmann::json::object()},
                           {"comparisons", nlohmann::json::array()}};
  std::map<std::string, std::vector<double>> per_example;  // arm -> example -> mean over seeds
  for (const auto& [arm, by_seed] : losses) {
    std::vector<double> seed_means;
    for (const auto& v : by_seed) seed_means.push_back(mean_of(v));
    auto& ex = per_example[arm];
    ex.assign(by_seed.front().size(), 0.0);
    for (const auto& v : by_seed)
      for (size_t i = 0; i < v.size(); ++i) ex[i] += v[i] / static_cast<double>(by_seed.size());
    result["arms"][arm] = {{"heldout_loss_mean", mean_of(seed_means)}, {"heldout_loss_std", std_of(seed_means)},
                           {"per_seed", seed_means}, {"budget", budgets.at(arm)}};
  }
  const std::pair<const char*, const char*> pairs[] = {
      {"xft", "sft"}, {"xft", "moe"}, {"xft", "ewa"}, {"xft", "xft_init"}, {"moe", "sft"}, {"ewa", "sft"}};
  for (const auto& [a, b] : pairs) {
    if (!per_example.count(a) || !per_example.count(b)) continue;
    std::vector<double> d;
    for (size_t i = 0; i < per_example[a].size(); ++i) d.push_back(per_example[a][i] - per_example[b][i]);
    const auto ci = bootstrap_mean_ci(d, o.bootstrap_resamples, 0.95, 0);
    const auto w = wilcoxon_signed_rank(d);
    result["comparisons"].push_back({{"a", a}, {"b", b}, {"mean_difference", mean_of(d)}, {"ci95", {ci.low, ci.high}},
                                     {"wilcoxon_p", w.p_value}, {"wilcoxon_exact", w.exact}, {"examples", d.size()}});
  }
  return result;
}

std::string markdown(const nlohmann::json& r) {
  std::ostringstream md;
  md << std::setprecision(4) << std::fixed;
  md << "# Study: " << r["config"].get<std::string>() << ", seeds " << r["seeds"].dump() << "\n\n";
  md << "| arm | held-out loss (mean +- std over seeds) | stages: epochs, tokens, FLOPs |\n|---|---|---|\n";
  for (const auto& [arm, a] : r["arms"].items()) {
    md << "| " << arm << " | " << a["heldout_loss_mean"].get<double>() << " +- " << a["heldout_loss_std"].get<double>()
       << " | ";
    for (const auto& s : a["budget"])
      md << s["stage"].get<std::string>() << ": " << s["epochs"].get<int64_t>() << " ep, " << std::setprecision(0)
         << s["tokens"].get<double>() << " tok, " << std::scientific << std::setprecision(2) << s["flops"].get<double>()
         << std::fixed << std::setprecision(4) << "; ";
    md << "|\n";
  }
  md << "\nPaired over held-out examples (loss of a minus loss of b, averaged over seeds; negative: a is better):\n\n";
  md << "| a vs b | mean difference | bootstrap 95% CI | Wilcoxon p |\n|---|---|---|---|\n";
  for (const auto& c : r["comparisons"])
    md << "| " << c["a"].get<std::string>() << " vs " << c["b"].get<std::string>() << " | "
       << c["mean_difference"].get<double>() << " | [" << c["ci95"][0].get<double>() << ", "
       << c["ci95"][1].get<double>() << "] | " << std::scientific << std::setprecision(2)
       << c["wilcoxon_p"].get<double>() << std::fixed << std::setprecision(4) << " |\n";
  return md.str();
}

}  // namespace

nlohmann::json run_study(const StudyOptions& o) {
  XFT_CHECK(!o.seeds.empty(), "study: no seeds");
  for (const auto& a : o.arms)
    XFT_CHECK(arms().count(a), "study: unknown arm '", a, "' (known: sft, moe, xft, xft_init, ewa)");
  auto needs = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (std::find(o.arms.begin(), o.arms.end(), n) != o.arms.end()) return true;
    return false;
  };
  std::map<std::string, std::vector<std::vector<double>>> losses;  // arm -> seed -> example
  std::map<std::string, nlohmann::json> budgets;
  for (uint64_t seed : o.seeds) {
    const auto c = seed_config(o, seed);
    auto ws = load_workspace(c);
    XFT_CHECK(ws.heldout.has_value(), o.config_path, ": a study needs held-out data (set 'heldout' or 'eval_data')");
    std::cerr << "[study] seed " << seed << " in " << c.run_dir << "\n";
    if (needs({"sft"})) run_sft(c, ws, o.resume);
    if (needs({"moe", "xft", "xft_init"})) run_xft(c, ws, o.resume);
    if (needs({"ewa"})) run_ewa(c, ws, o.resume);
    for (const auto& arm : o.arms) {
      nlohmann::json budget;
      losses[arm].push_back(arm_losses(c, ws, arm, fs::path(c.run_dir) / ("losses-" + arm + ".json"), &budget));
      budgets[arm] = budget;
    }
  }
  auto result = aggregate(o, losses, budgets);
  write_file_atomic((fs::path(o.out_dir) / "results.json").string(), result.dump(2) + "\n");
  write_file_atomic((fs::path(o.out_dir) / "results.md").string(), markdown(result));
  return result;
}

}  // namespace xft
