#include "xft/experiment.h"

#include "xft/error.h"

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

ExperimentConfig ExperimentConfig::from_json(const nlohmann::json& j, const std::string& source) {
  XFT_CHECK(j.is_object(), source, ": an experiment config must be a JSON object");
  static const std::vector<std::string> known = {"run_dir", "base_model", "tokenizer", "data", "heldout", "eval_data",
                                                 "save_dtype", "upcycle_seed", "moe", "merge", "ewa",
                                                 "sft_train", "moe_train", "merge_train", "ewa_train", "distributed",
                                                 "comment"};
  for (const auto& [k, v] : j.items()) {
    XFT_CHECK(std::find(known.begin(), known.end(), k) != known.end(), source, ": unknown field '", k, "'");
  }
  ExperimentConfig c;
  c.source = source;
  c.raw = j;
  XFT_CHECK(j.contains("run_dir") && j["run_dir"].is_string(), source, ": missing 'run_dir' (a directory path)");
  c.run_dir = j["run_dir"];
  c.base_model = j.value("base_model", "");
  c.tokenizer = j.value("tokenizer", c.base_model);
  c.save_dtype = j.value("save_dtype", "bfloat16");
  c.heldout = j.value("heldout", 0);
  c.eval_data = j.value("eval_data", "");
  XFT_CHECK(c.heldout == 0 || c.eval_data.empty(), source, ": set 'heldout' or 'eval_data', not both");
  c.upcycle_seed = j.value("upcycle_seed", 0);
  XFT_CHECK(j.contains("data"), source, ": missing 'data' section");
  c.data = DataConfig::from_json(j["data"], source + ": data");
  if (j.contains("moe")) {
    c.moe = MoeConfig::from_json(j["moe"], source);
  }
  if (j.contains("merge")) c.merge = MergeConfig::from_json(j["merge"], source);
  if (j.contains("ewa")) c.ewa = EwaConfig::from_json(j["ewa"], source);
  auto train = [&](const char* key, TrainConfig& t) {
    if (j.contains(key)) t = TrainConfig::from_json(j[key], source + ": " + key);
  };
  train("sft_train", c.sft_train);
  train("moe_train", c.moe_train);
  train("merge_train", c.merge_train);
  train("ewa_train", c.ewa_train);
  if (j.contains("distributed")) c.distributed = DistributedConfig::from_json(j["distributed"], source);
  return c;
}

ExperimentConfig ExperimentConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  auto j = read_json_file(path);
  for (const auto& o : overrides) apply_override(j, o);
  return from_json(j, path);
}

}  // namespace xft
