#include "study/study_table.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "xft/core/error.h"
#include "xft/study/statistics.h"

namespace xft {

namespace {

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

// Example (or task) -> its score averaged over seeds: the unit the paired tests compare (seeds
// of one arm are not paired with seeds of another; examples are).
std::vector<double> per_example(const std::vector<std::vector<double>>& seeds, const char* what) {
  std::vector<double> ex(seeds.front().size(), 0.0);
  for (const auto& v : seeds) {
    XFT_CHECK(v.size() == ex.size(), "study: seeds scored different numbers of ", what);
    for (size_t i = 0; i < v.size(); ++i) ex[i] += v[i] / static_cast<double>(seeds.size());
  }
  return ex;
}

// a - b per unit; `lower_is_better` says which sign favours a (losses: negative; pass rates:
// positive). On 0/1 pass rates the Wilcoxon test over the non-zero differences is the sign test
// of the discordant tasks (McNemar's pairing), in its normal approximation since they tie.
nlohmann::json compare(const std::string& a, const std::string& b, const std::vector<double>& la,
                       const std::vector<double>& lb, int64_t resamples, bool lower_is_better) {
  XFT_CHECK(la.size() == lb.size(), "study: arms ", a, " and ", b, " scored different held-out sets");
  std::vector<double> d;
  int64_t a_better = 0, b_better = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    d.push_back(la[i] - lb[i]);
    a_better += lower_is_better ? la[i] < lb[i] : la[i] > lb[i];
    b_better += lower_is_better ? lb[i] < la[i] : lb[i] > la[i];
  }
  const auto ci = bootstrap_mean_ci(d, resamples, 0.95, 0);
  const auto w = wilcoxon_signed_rank(d);
  const double n = static_cast<double>(d.size());
  return {{"a", a},
          {"b", b},
          {"mean_difference", mean_of(d)},
          {"ci95", {ci.low, ci.high}},
          {"wilcoxon_p", w.p_value},
          {"wilcoxon_exact", w.exact},
          {"examples", d.size()},
          {"a_better_fraction", d.empty() ? 0.0 : static_cast<double>(a_better) / n},
          {"b_better_fraction", d.empty() ? 0.0 : static_cast<double>(b_better) / n}};
}

std::string budget_text(const nlohmann::json& budget) {
  std::ostringstream s;
  for (const auto& st : budget)
    s << st["stage"].get<std::string>() << ": " << st["epochs"].get<int64_t>() << " ep, " << std::fixed
      << std::setprecision(0) << st["tokens"].get<double>() << " tok, " << std::scientific << std::setprecision(2)
      << st["flops"].get<double>() << " FLOPs; ";
  return budget.empty() ? "none" : s.str();
}

}  // namespace

nlohmann::json study_table(const std::string& config, const std::vector<uint64_t>& seeds,
                           const std::vector<std::string>& order, const std::map<std::string, ArmScores>& arms,
                           const std::vector<std::pair<std::string, std::string>>& comparisons,
                           int64_t bootstrap_resamples) {
  nlohmann::json result = {{"seeds", seeds},
                           {"config", config},
                           {"order", order},
                           {"arms", nlohmann::json::object()},
                           {"comparisons", nlohmann::json::array()}};
  std::map<std::string, std::vector<double>> examples, tasks;
  const std::vector<std::string>* task_ids = nullptr;
  for (const auto& name : order) {
    const auto& a = arms.at(name);
    std::vector<double> seed_means;
    for (const auto& v : a.losses) seed_means.push_back(mean_of(v));
    examples[name] = per_example(a.losses, "held-out examples");
    auto& arm = result["arms"][name];
    arm = {{"heldout_loss_mean", mean_of(seed_means)},
           {"heldout_loss_std", std_of(seed_means)},
           {"per_seed", seed_means},
           {"budget", a.budget},
           {"params", a.params}};
    if (!a.about.is_null()) arm["ablation"] = a.about;
    if (a.passes.empty()) continue;
    XFT_CHECK(a.task_ids.size() == a.passes.front().size(), "study: arm ", name, " has ", a.task_ids.size(),
              " task ids for ", a.passes.front().size(), " outcomes");
    XFT_CHECK(!task_ids || *task_ids == a.task_ids, "study: arm ", name, " scored other problems than the others");
    task_ids = &a.task_ids;
    std::vector<double> seed_pass;
    for (const auto& v : a.passes) seed_pass.push_back(mean_of(v));
    tasks[name] = per_example(a.passes, "problems");
    arm["pass_at_1_mean"] = mean_of(seed_pass);
    arm["pass_at_1_std"] = std_of(seed_pass);
    arm["pass_at_1_per_seed"] = seed_pass;
    // Which tasks it solves: the seed-averaged pass@1 of each, by task id.
    nlohmann::json per_task = nlohmann::json::object();
    for (size_t i = 0; i < a.task_ids.size(); ++i) per_task[a.task_ids[i]] = tasks[name][i];
    arm["tasks"] = per_task;
  }
  for (const auto& [a, b] : comparisons) {
    if (examples.count(a) && examples.count(b))
      result["comparisons"].push_back(compare(a, b, examples[a], examples[b], bootstrap_resamples, true));
    if (tasks.count(a) && tasks.count(b)) {
      if (!result.contains("task_comparisons")) result["task_comparisons"] = nlohmann::json::array();
      result["task_comparisons"].push_back(compare(a, b, tasks[a], tasks[b], bootstrap_resamples, false));
    }
  }
  return result;
}

std::string study_markdown(const nlohmann::json& r) {
  std::ostringstream md;
  md << std::setprecision(4) << std::fixed;
  md << "# Study: " << r["config"].get<std::string>() << ", seeds " << r["seeds"].dump() << "\n\n";
  md << "Held-out loss: the mean over held-out examples of each example's mean loss per response token.\n\n";
  md << "| arm | held-out loss (mean +- std over seeds) | per seed | params | training: epochs, tokens, FLOPs per "
        "stage |\n"
     << "|---|---|---|---|---|\n";
  for (const auto& name : r["order"]) {
    const auto& a = r["arms"][name.get<std::string>()];
    md << "| " << name.get<std::string>() << " | " << a["heldout_loss_mean"].get<double>() << " +- "
       << a["heldout_loss_std"].get<double>() << " | ";
    for (const auto& s : a["per_seed"]) md << s.get<double>() << " ";
    md << "| " << std::setprecision(0) << a["params"].get<double>() << std::setprecision(4) << " | "
       << budget_text(a["budget"]) << " |\n";
  }
  md << "\nPaired over held-out examples (loss of a minus loss of b per example, averaged over seeds; "
        "negative: a is better):\n\n";
  md << "| a vs b | mean difference | bootstrap 95% CI | Wilcoxon p | a better on |\n|---|---|---|---|---|\n";
  for (const auto& c : r["comparisons"])
    md << "| " << c["a"].get<std::string>() << " vs " << c["b"].get<std::string>() << " | "
       << c["mean_difference"].get<double>() << " | [" << c["ci95"][0].get<double>() << ", "
       << c["ci95"][1].get<double>() << "] | " << std::scientific << std::setprecision(2)
       << c["wilcoxon_p"].get<double>() << std::fixed << std::setprecision(1) << " | "
       << 100.0 * c["a_better_fraction"].get<double>() << "% of " << c["examples"].get<int64_t>()
       << std::setprecision(4) << " |\n";
  if (!r.contains("task_comparisons")) return md.str();
  md << "\nCode problems";
  if (r.contains("code_eval")) md << " (" << r["code_eval"]["problems"].get<std::string>() << ")";
  md << ": pass@1, each task's fraction of passing samples averaged over tasks.\n\n"
     << "| arm | pass@1 (mean +- std over seeds) | per seed |\n|---|---|---|\n";
  for (const auto& name : r["order"]) {
    const auto& a = r["arms"][name.get<std::string>()];
    if (!a.contains("pass_at_1_mean")) continue;
    md << "| " << name.get<std::string>() << " | " << a["pass_at_1_mean"].get<double>() << " +- "
       << a["pass_at_1_std"].get<double>() << " | ";
    for (const auto& s : a["pass_at_1_per_seed"]) md << s.get<double>() << " ";
    md << "|\n";
  }
  md << "\nPaired over tasks (pass@1 of a minus pass@1 of b per task, averaged over seeds; positive: a is "
        "better):\n\n"
     << "| a vs b | mean difference | bootstrap 95% CI | Wilcoxon p | a better on | b better on |\n"
     << "|---|---|---|---|---|---|\n";
  for (const auto& c : r["task_comparisons"])
    md << "| " << c["a"].get<std::string>() << " vs " << c["b"].get<std::string>() << " | "
       << c["mean_difference"].get<double>() << " | [" << c["ci95"][0].get<double>() << ", "
       << c["ci95"][1].get<double>() << "] | " << std::scientific << std::setprecision(2)
       << c["wilcoxon_p"].get<double>() << std::fixed << std::setprecision(1) << " | "
       << 100.0 * c["a_better_fraction"].get<double>() << "% | " << 100.0 * c["b_better_fraction"].get<double>()
       << "% of " << c["examples"].get<int64_t>() << std::setprecision(4) << " |\n";
  return md.str();
}

}  // namespace xft
