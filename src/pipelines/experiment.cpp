#include "xft/pipelines/experiment.h"

#include <filesystem>

#include "core/config_reader.h"
#include "xft/core/error.h"
#include "xft/model/model_io.h"

namespace fs = std::filesystem;

namespace xft {

void apply_override(nlohmann::json& j, const std::string& assignment) {
  const auto eq = assignment.find('=');
  XFT_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment, ": expected key=value (e.g. moe_train.lr=1e-4)");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // a bare word is a string
  nlohmann::json* node = &j;
  size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    XFT_CHECK(!part.empty(), "--set ", assignment, ": empty key component");
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    if (!node->contains(part) || (*node)[part].is_null()) (*node)[part] = nlohmann::json::object();
    node = &(*node)[part];
    XFT_CHECK(node->is_object(), "--set ", assignment, ": '", key.substr(0, dot), "' is not an object");
    start = dot + 1;
  }
}

namespace {

// A nested section whose struct reads itself (M::from_json(value, source)).
template <typename M, M ExperimentConfig::*member>
void add_section(ConfigReader<ExperimentConfig>& r, const char* name) {
  std::move(r).section(
      name,
      [](ExperimentConfig& c, const nlohmann::json& v, const std::string& source) {
        c.*member = M::from_json(v, source);
      },
      [](const ExperimentConfig& c) { return (c.*member).to_json(); });
}

// A training section under its own name ("sft_train", ...).
template <TrainConfig ExperimentConfig::*member>
void add_training(ConfigReader<ExperimentConfig>& r, const char* name) {
  std::move(r).section(
      name,
      [name](ExperimentConfig& c, const nlohmann::json& v, const std::string& source) {
        c.*member = TrainConfig::from_json(v, source, name);
      },
      [](const ExperimentConfig& c) { return (c.*member).to_json(); });
}

const ConfigReader<ExperimentConfig>& experiment_reader() {
  using E = ExperimentConfig;
  static const ConfigReader<E> r = [] {
    auto r = ConfigReader<E>("experiment")
                 .field("run_dir", &E::run_dir, /*required=*/true)
                 .field("base_model", &E::base_model)
                 .field("tokenizer", &E::tokenizer)
                 .field("save_dtype", &E::save_dtype)
                 .field("heldout", &E::heldout)
                 .field("eval_data", &E::eval_data)
                 .field("comment", &E::comment)
                 .field("compat", &E::compat)
                 .field("merge_name", &E::merge_name);
    add_section<DataConfig, &E::data>(r, "data");
    add_section<UpcycleConfig, &E::upcycle>(r, "upcycle");
    add_section<MoeConfig, &E::moe>(r, "moe");
    add_section<MergeConfig, &E::merge>(r, "merge");
    add_section<EwaConfig, &E::ewa>(r, "ewa");
    add_section<DistributedConfig, &E::distributed>(r, "distributed");
    add_section<CodeEvalConfig, &E::code_eval>(r, "code_eval");
    add_section<LoggingConfig, &E::logging>(r, "logging");
    add_training<&E::sft_train>(r, "sft_train");
    add_training<&E::moe_train>(r, "moe_train");
    add_training<&E::merge_train>(r, "merge_train");
    add_training<&E::ewa_train>(r, "ewa_train");
    return r;
  }();
  return r;
}

}  // namespace

ExperimentConfig ExperimentConfig::from_json(const nlohmann::json& j, const std::string& source) {
  XFT_CHECK(j.is_object(), source, ": an experiment config must be a JSON object");
  XFT_CHECK(j.contains("data"), source, ": missing 'data' section");
  ExperimentConfig defaults;  // named, not a default argument: GCC 12 misreads the temporary
  ExperimentConfig c = experiment_reader().read(j, source, std::move(defaults));
  c.source = source;
  c.raw = j;
  if (!j.contains("tokenizer") || j.at("tokenizer").is_null()) c.tokenizer = c.base_model;
  XFT_CHECK(c.heldout >= 0, source, ": heldout must be >= 0, got ", c.heldout);
  XFT_CHECK(c.heldout == 0 || c.eval_data.empty(), source, ": set 'heldout' or 'eval_data', not both");
  dtype_from_name(c.save_dtype);  // an unknown dtype name is an error now, not at the first export
  XFT_CHECK(c.compat.empty() || c.compat == "reference", source, ": compat must be \"reference\" or absent, got '",
            c.compat, "'");
  XFT_CHECK(!c.merge_name.empty() && c.merge_name.find('/') == std::string::npos && c.merge_name != "moe" &&
                c.merge_name != "moe-init",
            source, ": merge_name must be a plain directory name (not moe or moe-init), got '", c.merge_name, "'");
  return c;
}

nlohmann::json ExperimentConfig::to_json() const { return experiment_reader().write(*this); }

namespace {

// Objects merge key by key (the overlay's value wins); anything else is replaced.
void deep_merge(nlohmann::json& base, const nlohmann::json& overlay) {
  for (const auto& [k, v] : overlay.items()) {
    if (v.is_object() && base.contains(k) && base[k].is_object())
      deep_merge(base[k], v);
    else
      base[k] = v;
  }
}

// `path` over the files it includes ("include": a path or a list of paths, relative to it,
// merged in order, each with its own includes).
nlohmann::json read_with_includes(const std::string& path, int depth) {
  XFT_CHECK(depth < 8, path, ": includes nest deeper than 8 files (a cycle?)");
  auto j = read_json_file(path);
  XFT_CHECK(j.is_object(), path, ": an experiment config must be a JSON object");
  if (!j.contains("include")) return j;
  const auto inc = j["include"];
  j.erase("include");
  XFT_CHECK(inc.is_string() || inc.is_array(), path, ": 'include' must be a path or a list of paths");
  nlohmann::json merged = nlohmann::json::object();
  for (const auto& item : inc.is_array() ? inc : nlohmann::json::array({inc})) {
    XFT_CHECK(item.is_string(), path, ": 'include' entries must be paths, got ", item.dump());
    const auto rel = fs::path(item.get<std::string>());
    const auto file = rel.is_absolute() ? rel : fs::path(path).parent_path() / rel;
    XFT_CHECK(fs::exists(file), path, ": included file ", file.string(), " not found");
    deep_merge(merged, read_with_includes(file.string(), depth + 1));
  }
  deep_merge(merged, j);
  return merged;
}

// "compat": "reference" runs what the authors' code ran (method notes): noisy gating with its
// load estimate and padding counted in the aux loss, token-mean losses averaged per micro-batch, RoPE base 10000 in the
// upcycled model (and so in the MoE and XFT models). Importance from the raw scores needs no switch.
nlohmann::json compat_overlay(const std::string& compat, const std::string& source) {
  if (compat.empty()) return nlohmann::json::object();
  XFT_CHECK(compat == "reference", source, ": compat must be \"reference\" or absent, got '", compat, "'");
  const nlohmann::json micro = {{"loss_reduction", "micro_batch"}};
  return {{"moe", {{"router_noise", true}, {"load_estimate", "reference"}, {"aux_counts_padding", true}}},
          {"upcycle", {{"rope_theta", 10000.0}}},
          {"sft_train", micro},
          {"moe_train", micro},
          {"merge_train", micro},
          {"ewa_train", micro}};
}

}  // namespace

ExperimentConfig ExperimentConfig::load(const std::string& path, const std::vector<std::string>& overrides,
                                        const std::vector<nlohmann::json>& overlays) {
  auto j = read_with_includes(path, 0);
  for (const auto& overlay : overlays) deep_merge(j, overlay);
  for (const auto& o : overrides) apply_override(j, o);
  if (j.contains("compat") && j["compat"].is_string()) {
    // The compat settings go over the file; overlays and --set values still have the last word.
    deep_merge(j, compat_overlay(j["compat"].get<std::string>(), path));
    for (const auto& overlay : overlays) deep_merge(j, overlay);
    for (const auto& o : overrides) apply_override(j, o);
  }
  return from_json(j, path);
}

}  // namespace xft
