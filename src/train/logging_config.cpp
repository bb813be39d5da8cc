#include "xft/train/logging_config.h"

#include <filesystem>

#include "core/config_reader.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

const ConfigReader<LoggingConfig>& logging_reader() {
  static const ConfigReader<LoggingConfig> r =
      ConfigReader<LoggingConfig>("logging").field("tensorboard", &LoggingConfig::tensorboard);
  return r;
}

}  // namespace

LoggingConfig LoggingConfig::from_json(const nlohmann::json& j, const std::string& source) {
  return logging_reader().read(j, source);
}

nlohmann::json LoggingConfig::to_json() const { return logging_reader().write(*this); }

std::string LoggingConfig::tensorboard_dir(const std::string& run_dir, const std::string& stage_dir) const {
  if (tensorboard.empty()) return "";
  // The stage's place in the run names its TensorBoard run: two merge stages of a lambda sweep
  // sharing run_dir (merge_name) stay two runs.
  fs::path rel = fs::path(stage_dir).lexically_normal().lexically_relative(fs::path(run_dir).lexically_normal());
  if (rel.empty() || *rel.begin() == "..") rel = fs::path(stage_dir).lexically_normal().filename();
  std::string name = rel.generic_string();
  while (!name.empty() && name.back() == '/') name.pop_back();
  for (auto& ch : name)
    if (ch == '/') ch = '_';
  return (fs::path(tensorboard) / name).string();
}

}  // namespace xft
