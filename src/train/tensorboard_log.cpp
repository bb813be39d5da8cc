#include "train/tensorboard_log.h"

#include <unistd.h>
#include <chrono>
#include <filesystem>

#include "xft/core/error.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// events.out.tfevents.<seconds>.<host>.<pid>: TensorBoard reads files whose name holds
// "tfevents", in name order; host and pid keep two writers from ever sharing a name.
std::string event_file_name() {
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  host[sizeof host - 1] = '\0';
  return "events.out.tfevents." + std::to_string(static_cast<int64_t>(now_s())) + "." + host + "." +
         std::to_string(::getpid());
}

// A value becomes a scalar when it is a number; anything else (null: a NaN the JSON row could not
// hold) is left out of the curve rather than stopping the training that logs it.
void add(Scalars& out, const std::string& tag, const nlohmann::json& v) {
  if (v.is_number()) out.emplace_back(tag, v.get<double>());
}

// An array's elements (none for anything else).
const nlohmann::json& elements(const nlohmann::json& row, const char* key) {
  static const nlohmann::json none = nlohmann::json::array();
  const auto it = row.find(key);
  return it != row.end() && it->is_array() ? *it : none;
}

}  // namespace

Scalars tensorboard_scalars(const nlohmann::json& row) {
  Scalars out;
  for (const char* key : {"loss", "aux_loss", "lr", "grad_norm", "tokens_per_s"})
    if (row.contains(key)) add(out, key, row[key]);
  const auto& moe = elements(row, "moe");
  for (size_t l = 0; l < moe.size(); ++l) {
    if (!moe[l].is_object()) continue;
    const std::string prefix = "moe/layer" + std::to_string(l) + "/";
    for (const char* key : {"entropy", "shared_weight", "aux_loss"})
      if (moe[l].contains(key)) add(out, prefix + key, moe[l][key]);
    const auto& load = elements(moe[l], "load");
    for (size_t e = 0; e < load.size(); ++e) add(out, prefix + "load_expert" + std::to_string(e), load[e]);
  }
  const auto& coefficients = elements(row, "coefficients");
  for (size_t l = 0; l < coefficients.size(); ++l) {
    if (!coefficients[l].is_array()) continue;
    for (size_t e = 0; e < coefficients[l].size(); ++e)
      add(out, "merge/layer" + std::to_string(l) + "/expert" + std::to_string(e), coefficients[l][e]);
  }
  return out;
}

TensorboardLog::TensorboardLog(const std::string& dir, const std::vector<nlohmann::json>& kept_rows) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  XFT_CHECK(!ec, dir, ": cannot create the TensorBoard directory (logging.tensorboard): ", ec.message());
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      fs::remove(entry.path());
  writer_ = std::make_unique<TensorboardWriter>((fs::path(dir) / event_file_name()).string());
  // The kept rows end where training resumes now: each one's wall time is now less the training
  // time between it and the last.
  const double now = now_s();
  const double last_elapsed = kept_rows.empty() ? 0.0 : kept_rows.back().value("elapsed_s", 0.0);
  for (const auto& row : kept_rows)
    writer_->add_scalars(row.at("step").get<int64_t>(), now - (last_elapsed - row.value("elapsed_s", 0.0)),
                         tensorboard_scalars(row));
}

void TensorboardLog::write(const nlohmann::json& row) {
  writer_->add_scalars(row.at("step").get<int64_t>(), now_s(), tensorboard_scalars(row));
}

}  // namespace xft
