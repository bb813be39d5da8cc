#include "xft/study/study.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "study/study_table.h"
#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/model_generator.h"
#include "xft/eval/problems.h"
#include "xft/model/model_io.h"
#include "xft/pipelines/pipelines.h"
#include "xft/pipelines/run_layout.h"
#include "xft/train/loss.h"
#include "xft/train/precision.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

// The study's config for one seed: the seed goes into every stage and the upcycling; an
// ablation adds its overlays and --set values and its own run directory (or merge directory).
ExperimentConfig seed_config(const StudyOptions& o, uint64_t seed, const Ablation* ab) {
  const auto s = std::to_string(seed);
  const fs::path seed_dir = fs::path(o.out_dir) / ("seed-" + s);
  auto sets = o.overrides;
  std::vector<nlohmann::json> overlays;
  fs::path run_dir = seed_dir;
  if (ab) {
    overlays = ab->overlay_json();
    sets.insert(sets.end(), ab->sets.begin(), ab->sets.end());
    if (ab->merge_only())
      sets.push_back("merge_name=merge-" + ab->name);
    else
      run_dir /= "ablation-" + ab->name;
  }
  for (const char* k :
       {"sft_train.seed=", "moe_train.seed=", "merge_train.seed=", "ewa_train.seed=", "upcycle.seed=", "merge.seed="})
    sets.push_back(k + s);
  sets.push_back("run_dir=" + run_dir.string());
  auto c = ExperimentConfig::load(o.config_path, sets, overlays);
  // Each seed (and each ablation with its own run) gets its own TensorBoard runs under the
  // configured directory: the stages' names repeat across seeds, and a fresh stage starts its runs anew.
  if (c.logging.tensorboard.empty()) return c;
  sets.push_back("logging.tensorboard=" +
                 (fs::path(c.logging.tensorboard) / fs::relative(run_dir, o.out_dir)).lexically_normal().string());
  return ExperimentConfig::load(o.config_path, sets, overlays);
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
  return {{"stage", stage.filename().string()},
          {"steps", steps},
          {"epochs", epochs},
          {"tokens", tokens},
          {"flops", 6.0 * active_params * tokens}};
}

// Parameters of a model directory, all and those a token's forward and backward go through (all
// of a dense model; the shared expert and K - 1 routed ones of an MoE layer). Read from the
// config and safetensors headers: no weight is loaded.
std::pair<double, double> parameters(const std::string& model_dir) {
  const auto files = TensorDirectory::open(model_dir);
  double total = 0.0;
  for (const auto& name : files.names()) {
    double n = 1.0;
    for (int64_t d : files.entry(name).shape) n *= static_cast<double>(d);
    total += n;
  }
  const auto c = ModelConfig::load(model_dir);
  if (!c.moe) return {total, total};
  const double ffn = 3.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.intermediate_size);
  return {total, total - static_cast<double>((c.moe->num_experts - c.moe->top_k) * c.num_hidden_layers) * ffn};
}

// What decides a code evaluation's outcome: a cached one counts only under the same settings.
nlohmann::json code_eval_key(const CodeEvalConfig& c) {
  auto j = c.to_json();
  j.erase("parallelism");
  return j;
}

// Per-task pass/fail of `model` on the config's problems: the problems file's per-task records
// (completions, statuses) go to `records` (resumable after a kill), the outcomes are returned.
nlohmann::json score_tasks(const ExperimentConfig& c, const Workspace& ws, CausalLMImpl& model, const fs::path& records,
                           bool base) {
  // The records a killed evaluation left are reused only under the same settings.
  const fs::path settings = records.string() + ".settings.json";
  const std::string partial = records.string() + ".partial";
  if (fs::exists(partial) && (!fs::exists(settings) || read_json_file(settings.string()) != code_eval_key(c.code_eval)))
    fs::remove(partial);
  write_file_atomic(settings.string(), code_eval_key(c.code_eval).dump() + "\n");
  const auto problems = load_problems(c.code_eval.problems);
  std::unique_ptr<Tokenizer> own;
  const Tokenizer* tok = ws.tokenizer.get();
  if (!tok) {
    XFT_CHECK(!c.tokenizer.empty(), c.source, ": code_eval needs a tokenizer (set 'tokenizer')");
    own = Tokenizer::load(c.tokenizer);
    tok = own.get();
  }
  auto options = c.code_eval.eval_options();
  options.results_path = records.string();
  options.resume = true;
  const PromptMode mode = c.code_eval.prompt_mode(base);
  options.prompt = prompt_style(mode, c.tokenizer.empty() ? c.base_model : c.tokenizer, options.limits);
  const auto report = evaluate_problems(
      problems, model_generator(model, *tok, c.code_eval.generation(mode), c.code_eval.batch), options);
  std::cerr << "[study] " << records.filename().string() << ": " << report.summary() << "\n";
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : report.tasks) tasks.push_back({{"task_id", t.task_id}, {"n", t.n}, {"correct", t.correct}});
  return tasks;
}

// One seed's score of one arm: per-example held-out losses, per-task pass/fail when the config
// names a problems file, the budget and the size, cached in `cache` so that a rerun (or a study
// adding arms or a problems file) reuses it.
void score_arm(const ExperimentConfig& c, const Workspace& ws, const std::string& kind, const fs::path& seed_dir,
               const std::string& label, ArmScores* scores) {
  const fs::path cache = seed_dir / ("losses-" + label + ".json");
  nlohmann::json j;
  if (fs::exists(cache)) j = read_json_file(cache.string());
  const bool want_tasks = c.code_eval.enabled();
  const bool have_tasks = j.contains("tasks") && j.value("code_eval", nlohmann::json()) == code_eval_key(c.code_eval);
  if (j.is_null() || (want_tasks && !have_tasks)) {
    const auto& arm = find_arm(kind, "study");
    const RunLayout run(c);
    const auto model_dir = arm.model(c, run).string();
    const auto& t = c.*arm.train;
    auto model = load_model(model_dir);
    prepare_model(*model, t);
    if (j.is_null()) {
      nlohmann::json stages = nlohmann::json::array();
      for (const auto& [stage, trained] : arm.stages(run))
        stages.push_back(stage_budget(stage, parameters(trained.string()).second));
      j = {{"losses", example_losses(*model, *ws.heldout, t.micro_batch, ws.pad_id, t.precision)},
           {"budget", stages},
           {"params", parameters(model_dir).first}};
    }
    if (want_tasks) {
      j["tasks"] = score_tasks(c, ws, *model, seed_dir / ("tasks-" + label + ".jsonl"), kind == "base");
      j["code_eval"] = code_eval_key(c.code_eval);
    }
    write_file_atomic(cache.string(), j.dump() + "\n");
  }
  scores->budget = j.at("budget");
  scores->params = j.value("params", 0.0);
  scores->losses.push_back(j.at("losses").get<std::vector<double>>());
  if (want_tasks) {
    std::vector<std::string> ids;
    std::vector<double> pass;
    for (const auto& t : j.at("tasks")) {
      ids.push_back(t.at("task_id").get<std::string>());
      pass.push_back(static_cast<double>(t.at("correct").get<int64_t>()) /
                     static_cast<double>(t.at("n").get<int64_t>()));
    }
    XFT_CHECK(scores->task_ids.empty() || scores->task_ids == ids, "study: ", cache.string(),
              " scored other problems than the arm's other seeds");
    scores->task_ids = ids;
    scores->passes.push_back(pass);
  }
}

// Trains (or finds finished) what the arms `kinds` need in c's run directory, each pipeline
// once, in the order SFT, XFT, EWA.
void run_pipelines(const ExperimentConfig& c, Workspace& ws, const std::vector<std::string>& kinds, bool resume) {
  auto needs = [&](Pipeline p) {
    return std::any_of(kinds.begin(), kinds.end(),
                       [&](const std::string& k) { return find_arm(k, "study").pipeline == p; });
  };
  if (needs(Pipeline::kSft)) run_sft(c, ws, resume);
  if (needs(Pipeline::kXft)) run_xft(c, ws, resume);
  if (needs(Pipeline::kEwa)) run_ewa(c, ws, resume);
}

std::vector<std::pair<std::string, std::string>> comparisons(const StudyOptions& o) {
  std::vector<std::pair<std::string, std::string>> c = {{"xft", "sft"},      {"xft", "moe"}, {"xft", "ewa"},
                                                        {"xft", "xft_init"}, {"moe", "sft"}, {"ewa", "sft"},
                                                        {"sft", "base"}};
  for (const auto& ab : o.ablations) c.emplace_back(ab.name, ab.arm);
  return c;
}

}  // namespace

nlohmann::json run_study(const StudyOptions& o) {
  XFT_CHECK(!o.seeds.empty(), "study: no seeds");
  for (const auto& a : o.arms) (void)find_arm(a, "study");  // an unknown arm fails here
  std::vector<std::string> order = o.arms;
  for (const auto& ab : o.ablations) {
    XFT_CHECK(std::count_if(o.ablations.begin(), o.ablations.end(),
                            [&](const Ablation& x) { return x.name == ab.name; }) == 1,
              "study: two ablations are named '", ab.name, "'");
    if (std::find(order.begin(), order.end(), ab.arm) == order.end()) order.push_back(ab.arm);  // its reference
  }
  const auto main_arms = order;
  std::map<std::string, ArmScores> scores;
  for (uint64_t seed : o.seeds) {
    const auto c = seed_config(o, seed, nullptr);
    auto ws = load_workspace(c);
    XFT_CHECK(ws.heldout.has_value(), o.config_path, ": a study needs held-out data (set 'heldout' or 'eval_data')");
    std::cerr << "[study] seed " << seed << " in " << c.run_dir << "\n";
    run_pipelines(c, ws, main_arms, o.resume);
    for (const auto& arm : main_arms) score_arm(c, ws, arm, c.run_dir, arm, &scores[arm]);
    for (const auto& ab : o.ablations) {
      const auto v = seed_config(o, seed, &ab);
      auto vws = load_workspace(v);
      std::cerr << "[study] seed " << seed << ", ablation " << ab.name << " in " << v.run_dir << "/xft/" << v.merge_name
                << "\n";
      run_pipelines(v, vws, {ab.arm}, o.resume);
      score_arm(v, vws, ab.arm, c.run_dir, ab.name, &scores[ab.name]);
      scores[ab.name].about = ab.to_json();
    }
  }
  for (const auto& ab : o.ablations) order.push_back(ab.name);
  auto result = study_table(o.config_path, o.seeds, order, scores, comparisons(o), o.bootstrap_resamples);
  if (!scores.begin()->second.passes.empty())
    result["code_eval"] = seed_config(o, o.seeds.front(), nullptr).code_eval.to_json();
  write_file_atomic((fs::path(o.out_dir) / "results.json").string(), result.dump(2) + "\n");
  write_file_atomic((fs::path(o.out_dir) / "results.md").string(), study_markdown(result));
  return result;
}

}  // namespace xft
