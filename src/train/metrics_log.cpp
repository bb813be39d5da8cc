#include "xft/train/metrics_log.h"

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/tensorboard_log.h"
#include "xft/core/error.h"
#include "xft/core/files.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

std::string format_eta(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", static_cast<long>(s / 3600), static_cast<long>((s / 60) % 60),
                static_cast<long>(s % 60));
  return buf;
}

// Keeps the metrics lines of steps <= `step` (a resumed run continues the same curve); returns
// them parsed.
std::vector<nlohmann::json> truncate_metrics(const fs::path& file, int64_t step) {
  std::vector<nlohmann::json> rows;
  if (!fs::exists(file)) return rows;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= step) {
      kept += line + "\n";
      rows.push_back(std::move(j));
    }
  }
  write_file_atomic(file.string(), kept);
  return rows;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& stage_dir, std::string stage, int64_t total_steps, bool lead,
                       int64_t resumed_step, const std::string& tensorboard_dir)
    : stage_(std::move(stage)), total_steps_(total_steps), lead_(lead), tty_(::isatty(STDERR_FILENO)) {
  if (!lead_) return;
  const fs::path path = fs::path(stage_dir) / "metrics.jsonl";
  std::vector<nlohmann::json> kept;
  if (resumed_step > 0) {
    std::cerr << "[" << stage_ << "] resumed at step " << resumed_step << "/" << total_steps_ << "\n";
    kept = truncate_metrics(path, resumed_step);
  } else {
    fs::remove(path);
  }
  path_ = path.string();
  file_.open(path, std::ios::app);
  XFT_CHECK(file_.good(), path_, ": cannot open for appending: ", describe_write_error(errno));
  if (!tensorboard_dir.empty()) tensorboard_ = std::make_unique<TensorboardLog>(tensorboard_dir, kept);
}

MetricsLog::~MetricsLog() {
  if (lead_ && tty_) std::cerr << "\n";
}

void MetricsLog::write(const StepStats& s, double per_step_s) {
  if (!lead_) return;
  const double tokens_per_s = s.tokens / std::max(s.seconds, 1e-9);
  nlohmann::json row = {{"step", s.step},
                        {"epoch", s.epoch},
                        {"loss", s.loss},
                        {"aux_loss", s.aux_loss},
                        {"lr", s.lr},
                        {"grad_norm", s.grad_norm},
                        {"tokens_per_s", tokens_per_s},
                        {"tokens", s.tokens},
                        {"elapsed_s", s.elapsed_s}};
  if (s.world_size > 0) row["world_size"] = s.world_size;
  if (s.buckets >= 0) {  // how much of the gradient all-reduce overlapped this rank's backward
    row["buckets"] = s.buckets;
    row["buckets_overlapped"] = s.buckets_overlapped;
  }
  if (s.telemetry.is_object())
    for (const auto& [k, v] : s.telemetry.items()) row[k] = v;
  file_ << row.dump() << "\n" << std::flush;
  // A metrics row that did not reach the disk (full disk) stops the stage rather than leaving a
  // curve with holes; errno still holds the failed write's cause.
  XFT_CHECK(file_.good(), path_, ": cannot append the row of step ", s.step, ": ", describe_write_error(errno));
  if (tensorboard_) tensorboard_->write(row);
  std::ostringstream line;
  line << "[" << stage_ << "] step " << s.step << "/" << total_steps_ << " epoch " << s.epoch << " loss " << std::fixed
       << std::setprecision(4) << s.loss;
  if (s.aux_loss != 0.0) line << " aux " << std::setprecision(4) << s.aux_loss;
  line << " lr " << std::scientific << std::setprecision(2) << s.lr << std::fixed << std::setprecision(0) << " "
       << tokens_per_s << " tok/s ETA " << format_eta(per_step_s * (total_steps_ - s.step));
  if (s.world_size > 0) line << " (" << s.world_size << " ranks)";
  std::cerr << (tty_ ? "\r" : "") << line.str() << (tty_ ? "   " : "\n") << std::flush;
}

}  // namespace xft
