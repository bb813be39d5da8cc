#include "xft/train/early_stopping.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/model/model_io.h"
#include "xft/train/loss.h"
#include "xft/train/trainer.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

// step -> held-out loss of the rounds an earlier (interrupted) call finished.
std::map<int64_t, double> read_curve(const fs::path& path) {
  std::map<int64_t, double> curve;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step")) continue;  // a line cut by a kill
    curve[j["step"].get<int64_t>()] = j.at("heldout_loss").get<double>();
  }
  return curve;
}

}  // namespace

PlateauResult train_until_plateau(CausalLM model, const InstructionDataset& data, const InstructionDataset& heldout,
                                  TrainConfig train, const EarlyStopping& stopping, const std::string& stage_dir,
                                  int64_t pad_id, bool resume, const std::function<void(CausalLMImpl&)>& save_best) {
  XFT_CHECK(train.schedule != ScheduleKind::kLinear, stage_dir,
            ": training until the held-out loss stops improving needs a schedule that does not depend on the "
            "total steps (constant or constant_with_warmup), got linear");
  XFT_CHECK(stopping.eval_every > 0 && stopping.patience > 0 && stopping.max_steps >= stopping.eval_every, stage_dir,
            ": early stopping needs eval_every > 0, patience > 0 and max_steps >= eval_every");
  fs::create_directories(stage_dir);
  const fs::path curve_path = fs::path(stage_dir) / "plateau.jsonl";
  const auto done = resume ? read_curve(curve_path) : std::map<int64_t, double>{};
  XFT_CHECK(resume || !fs::exists(curve_path), curve_path.string(), " exists: pass resume to continue that run");
  train.save_every = stopping.eval_every;  // every round ends on a checkpoint
  const fs::path best_file = fs::path(stage_dir) / "best_step";
  auto saved_best = [&]() -> int64_t {
    int64_t step = 0;
    std::ifstream(best_file) >> step;  // absent or unreadable: nothing saved yet
    return step;
  };
  auto train_to = [&](int64_t step) {
    train.max_steps = step;
    Trainer trainer("pretrain", model, model_tensors(*model), data, train, stage_dir, pad_id);
    trainer.run(resume || step > stopping.eval_every);
  };
  PlateauResult r;
  int64_t since_best = 0;
  for (int64_t step = stopping.eval_every; step <= stopping.max_steps && since_best < stopping.patience;
       step += stopping.eval_every) {
    // Rounds an interrupted call finished are replayed from plateau.jsonl, not retrained.
    const bool replay = done.count(step) != 0;
    double loss;
    if (replay) {
      loss = done.at(step);
    } else {
      train_to(step);
      loss = evaluate_loss(*model, heldout, train.micro_batch, pad_id, train.precision);
      std::ofstream(curve_path, std::ios::app)
          << nlohmann::json({{"step", step}, {"heldout_loss", loss}}).dump() << "\n";
    }
    std::cerr << "[pretrain] step " << step << ": held-out loss " << loss << (replay ? " (earlier run)" : "") << "\n";
    r.steps = step;
    if (r.best_step == 0 || loss < r.best_loss - stopping.min_delta) {
      r.best_step = step;
      r.best_loss = loss;
      since_best = 0;
      if (saved_best() != step) {
        // A replayed best not yet saved was the interrupted call's last round: its checkpoint is
        // the newest, so training "to" it restores exactly that model.
        if (replay) train_to(step);
        save_best(*model);
        write_file_atomic(best_file.string(), std::to_string(step) + "\n");
      }
    } else {
      ++since_best;
    }
  }
  r.plateaued = since_best >= stopping.patience;
  return r;
}

}  // namespace xft
