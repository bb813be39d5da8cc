#include "xft/eval/samples.h"

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/core/files.h"

namespace xft {

std::vector<Sample> read_samples(const std::string& path, const std::vector<Problem>& problems) {
  std::map<std::string, const Problem*> by_id;
  for (const auto& p : problems) by_id[p.task_id] = &p;
  std::ifstream in(path, std::ios::binary);
  XFT_CHECK(in.good(), path, ": cannot open the samples for reading");
  std::vector<Sample> samples;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const auto rec = nlohmann::json::parse(line, nullptr, false);
    XFT_CHECK(!rec.is_discarded() && rec.is_object(), where,
              ": expected a JSON object (task_id and solution or completion)");
    XFT_CHECK(rec.contains("task_id") && rec.at("task_id").is_string(), where, ": missing field 'task_id' (a string)");
    Sample s;
    s.task_id = rec.at("task_id").get<std::string>();
    const auto it = by_id.find(s.task_id);
    XFT_CHECK(it != by_id.end(), where, ": task_id '", s.task_id, "' is not in the problems file");
    if (rec.contains("solution")) {
      XFT_CHECK(rec.at("solution").is_string(), where, ": field 'solution' must be a string (one line per sample)");
      s.solution = rec.at("solution").get<std::string>();
    } else {
      XFT_CHECK(rec.contains("completion") && rec.at("completion").is_string(), where,
                ": expected a field 'solution' (the whole program) or 'completion' (the text after the prompt), "
                "as a string");
      const std::string completion = rec.at("completion").get<std::string>();
      // MBPP has no code prompt to continue; DS-1000 runs the completion alone inside its context.
      const std::string& kind = it->second->kind;
      s.solution = kind == "mbpp" || kind == "ds1000" ? completion : it->second->prompt + completion;
    }
    samples.push_back(std::move(s));
  }
  XFT_CHECK(!samples.empty(), path, ": no samples");
  return samples;
}

void write_samples(const std::string& path, const std::vector<Sample>& samples) {
  std::string text;
  for (const auto& s : samples) {
    text += nlohmann::json{{"task_id", s.task_id}, {"solution", s.solution}}.dump(
                -1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n";
  }
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  write_file_atomic(path, text);
}

}  // namespace xft
