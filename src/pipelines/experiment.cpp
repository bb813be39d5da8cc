#include "xft/pipelines/experiment.h"

#include "core/config_reader.h"
#include "xft/core/error.h"
#include "xft/model/model_io.h"

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

// A training section under its own name ("sft_train", ...).
template <TrainConfig ExperimentConfig::*member>
void read_training(ConfigReader<ExperimentConfig>& r, const char* name) {
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
                 .field("upcycle_seed", &E::upcycle_seed)
                 .field("comment", &E::comment)
                 .section(
                     "data", [](E& c, const nlohmann::json& v, const std::string& src) { c.data = DataConfig::from_json(v, src); },
                     [](const E& c) { return c.data.to_json(); })
                 .section(
                     "moe", [](E& c, const nlohmann::json& v, const std::string& src) { c.moe = MoeConfig::from_json(v, src); },
                     [](const E& c) { return c.moe.to_json(); })
                 .section(
                     "merge",
                     [](E& c, const nlohmann::json& v, const std::string& src) { c.merge = MergeConfig::from_json(v, src); },
                     [](const E& c) { return c.merge.to_json(); })
                 .section(
                     "ewa", [](E& c, const nlohmann::json& v, const std::string& src) { c.ewa = EwaConfig::from_json(v, src); },
                     [](const E& c) { return c.ewa.to_json(); })
                 .section(
                     "distributed",
                     [](E& c, const nlohmann::json& v, const std::string& src) {
                       c.distributed = DistributedConfig::from_json(v, src);
                     },
                     [](const E& c) { return c.distributed.to_json(); });
    read_training<&E::sft_train>(r, "sft_train");
    read_training<&E::moe_train>(r, "moe_train");
    read_training<&E::merge_train>(r, "merge_train");
    read_training<&E::ewa_train>(r, "ewa_train");
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
  return c;
}

nlohmann::json ExperimentConfig::to_json() const { return experiment_reader().write(*this); }

ExperimentConfig ExperimentConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  auto j = read_json_file(path);
  for (const auto& o : overrides) apply_override(j, o);
  return from_json(j, path);
}

}  // namespace xft
