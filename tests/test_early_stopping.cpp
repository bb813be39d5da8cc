// Training until the held-out loss stops improving (how the demo's base is made): it stops
// `patience` evaluations after the best, keeps exactly the best model, refuses a schedule that
// depends on the total, and an interrupted call resumed reaches the uninterrupted result.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/model/model_io.h"
#include "xft/train/early_stopping.h"
#include "xft/train/loss.h"

namespace fs = std::filesystem;
using namespace xft;

namespace {

// Rounds of 2 steps, stopping 3 rounds after the best.
EarlyStopping short_rounds() {
  EarlyStopping stop;
  stop.eval_every = 2;
  stop.patience = 3;
  stop.max_steps = 200;
  return stop;
}

struct Run {
  PlateauResult result;
  std::string curve;  // plateau.jsonl
  std::string best;   // the saved best model's directory
};

// Random training data and a different random held-out set: a tiny model first learns the
// token statistics they share, then memorises the training set, and the held-out loss turns up.
Run train(const std::string& dir, const EarlyStopping& stop, bool resume, uint64_t seed = 3) {
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/heldout");
  auto data = xft::test::tiny_data(dir + "/train", 16, 11);
  auto heldout = xft::test::tiny_data(dir + "/heldout", 16, 12);
  CausalLM model(xft::test::tiny_dense());
  model->init_weights(0.02, seed);
  auto t = xft::test::tiny_train(0);
  t.lr = 5e-3;
  t.schedule = ScheduleKind::kConstantWithWarmup;
  Run r;
  r.best = dir + "/best";
  r.result = train_until_plateau(model, data, heldout, t, stop, dir + "/stage", 0, resume,
                                 [&](CausalLMImpl& m) { save_model(m, r.best, torch::kFloat32); });
  r.curve = xft::test::read_all(dir + "/stage/plateau.jsonl");
  return r;
}

std::vector<std::pair<int64_t, double>> curve_of(const std::string& text) {
  std::vector<std::pair<int64_t, double>> c;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    c.emplace_back(j["step"].get<int64_t>(), j["heldout_loss"].get<double>());
  }
  return c;
}

}  // namespace

TEST(EarlyStopping, StopsPatienceAfterTheBestAndKeepsTheBestModel) {
  const auto dir = xft::test::scratch_dir("plateau");
  const auto stop = short_rounds();
  const auto r = train(dir, stop, false);
  const auto curve = curve_of(r.curve);
  ASSERT_TRUE(r.result.plateaued) << r.curve;
  // The best is the curve's minimum, and exactly `patience` rounds followed it.
  auto best = std::min_element(curve.begin(), curve.end(), [](auto& a, auto& b) { return a.second < b.second; });
  EXPECT_EQ(r.result.best_step, best->first);
  EXPECT_EQ(r.result.best_loss, best->second);
  EXPECT_EQ(r.result.steps, r.result.best_step + stop.patience * stop.eval_every);
  EXPECT_EQ(curve.back().first, r.result.steps);
  EXPECT_GT(r.result.best_step, stop.eval_every) << "the held-out loss improved at first\n" << r.curve;
  // The saved model is the best round's: it scores the recorded loss again.
  auto saved = load_model(r.best);
  auto heldout = xft::test::tiny_data(dir + "/heldout", 16, 12);
  EXPECT_EQ(evaluate_loss(*saved, heldout, 4, 0), r.result.best_loss);
}

TEST(EarlyStopping, AnInterruptedRunResumesToTheSameCurveAndModel) {
  const auto dir = xft::test::scratch_dir("resume");
  const auto stop = short_rounds();
  const auto whole = train(dir + "/whole", stop, false);
  // The "interrupted" run: the same training stopped after 3 rounds, then continued.
  EarlyStopping cut = stop;
  cut.max_steps = 6;
  train(dir + "/cut", cut, false);
  const auto resumed = train(dir + "/cut", stop, true);
  EXPECT_EQ(resumed.curve, whole.curve);
  EXPECT_EQ(resumed.result.best_step, whole.result.best_step);
  EXPECT_EQ(resumed.result.best_loss, whole.result.best_loss);
  auto a = load_model(whole.best), b = load_model(resumed.best);
  const auto pb = b->named_parameters();
  for (const auto& p : a->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  // Without resume, an existing run is not overwritten.
  xft::test::expect_error([&] { train(dir + "/cut", stop, false); }, {"resume"});
}

TEST(EarlyStopping, RefusesALinearScheduleAndBadSettings) {
  const auto dir = xft::test::scratch_dir("bad");
  auto data = xft::test::tiny_data(dir, 8, 1);
  CausalLM model(xft::test::tiny_dense());
  auto t = xft::test::tiny_train(0);
  auto none = [](CausalLMImpl&) {};
  xft::test::expect_error([&] { train_until_plateau(model, data, data, t, {}, dir + "/s", 0, false, none); },
                          {"linear", "constant"});
  t.schedule = ScheduleKind::kConstant;
  EarlyStopping zero;
  zero.patience = 0;
  xft::test::expect_error([&] { train_until_plateau(model, data, data, t, zero, dir + "/s", 0, false, none); },
                          {"patience"});
}
