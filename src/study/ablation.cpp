#include "xft/study/ablation.h"

#include <algorithm>
#include <cctype>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/pipelines/run_layout.h"

namespace xft {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

// The arms whose model the merge stage makes: "xft, xft_init".
std::string merge_arm_names() {
  std::string out;
  for (const auto& m : arms())
    if (m.made_by_merge()) out += (out.empty() ? "" : ", ") + std::string(m.name);
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

Ablation Ablation::parse(const std::string& spec) {
  const auto colon = spec.find(':');
  XFT_CHECK(colon != std::string::npos, "--ablation '", spec,
            "': expected NAME[@ARM]:ITEM[,ITEM...] (ITEM a .json overlay or key=value)");
  Ablation a;
  a.name = spec.substr(0, colon);
  if (const auto at = a.name.find('@'); at != std::string::npos) {
    a.arm = a.name.substr(at + 1);
    a.name = a.name.substr(0, at);
  }
  XFT_CHECK(!a.name.empty(), "--ablation '", spec, "': the arm needs a name before ':'");
  for (char ch : a.name)
    XFT_CHECK(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-', "--ablation '", spec,
              "': the name '", a.name, "' may hold only letters, digits, '.', '_' and '-'");
  const auto& arms = xft::arms();
  XFT_CHECK(std::none_of(arms.begin(), arms.end(), [&](const Arm& m) { return a.name == m.name; }), "--ablation '",
            spec, "': '", a.name, "' is one of the main arms' names; choose another");
  const auto varied = std::find_if(arms.begin(), arms.end(), [&](const Arm& m) { return a.arm == m.name; });
  XFT_CHECK(varied != arms.end() && varied->pipeline != Pipeline::kNone, "--ablation '", spec, "': unknown arm '",
            a.arm, "' after '@' (known: ", arm_list(/*with_base=*/false), ")");
  for (const auto& item : split(spec.substr(colon + 1), ',')) {
    XFT_CHECK(!item.empty(), "--ablation '", spec, "': an empty item (two commas, or nothing after ':')");
    if (ends_with(item, ".json"))
      a.overlays.push_back(item);
    else {
      XFT_CHECK(item.find('=') != std::string::npos, "--ablation '", spec, "': item '", item,
                "' is neither a .json overlay nor key=value");
      a.sets.push_back(item);
    }
  }
  XFT_CHECK(!a.merge_only() || varied->made_by_merge(), "--ablation '", spec, "': it changes only the merge, so its ",
            a.arm, " model is the main recipe's; score an arm the merge makes (", merge_arm_names(), ")");
  return a;
}

std::vector<nlohmann::json> Ablation::overlay_json() const {
  std::vector<nlohmann::json> out;
  for (const auto& path : overlays) {
    auto j = read_json_file(path);
    XFT_CHECK(j.is_object(), path, ": an overlay must be a JSON object (ablation '", name, "')");
    for (const char* k : {"include", "run_dir", "comment", "merge_name"}) j.erase(k);
    out.push_back(std::move(j));
  }
  return out;
}

bool Ablation::merge_only() const {
  auto is_merge = [](const std::string& key) { return key == "merge" || key == "merge_train"; };
  for (const auto& s : sets)
    if (!is_merge(s.substr(0, s.find_first_of(".=")))) return false;
  for (const auto& j : overlay_json())
    for (const auto& [k, v] : j.items())
      if (!is_merge(k)) return false;
  return true;
}

nlohmann::json Ablation::to_json() const {
  return {{"name", name}, {"arm", arm}, {"overlays", overlays}, {"sets", sets}, {"shares_moe", merge_only()}};
}

}  // namespace xft
