// The memory plan (train/memory_plan.h, `xft-tool plan`): its step peak against the peak the CPU
// allocator measures, and the sharded merge's stacks and uneven expert parallelism by hand.
#include <algorithm>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include "test_util.h"
#include "tiny_training.h"
#include "xft/train/loss.h"
#include "xft/train/memory_plan.h"

using namespace xft;
using xft::test::tiny_dense;

namespace {

// Live CPU bytes allocated since construction and their peak, from the allocator's profiler hook.
class CpuMemoryMeter : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t size, size_t, size_t, c10::Device) override {
    live_ += size;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t live_ = 0, peak_ = 0;
};

// A dense model large enough that activations, not the allocator's rounding, set the peak:
// D = 128, F = 352, 4 layers of 4 heads of 32.
ModelConfig planned_dense() {
  auto cfg = tiny_dense(1024);
  cfg.hidden_size = 128;
  cfg.intermediate_size = 352;
  cfg.num_hidden_layers = 4;
  cfg.head_dim = 32;
  return cfg;
}

}  // namespace

// The planner's step peak (activations and gradients) against the peak the CPU allocator sees
// over one forward and backward of a micro-batch, with and without activation checkpointing, for
// the dense and the MoE model; and its parameter bytes against the model's.
TEST(MemoryPlan, StepPeakWithin15PercentOfTheMeasuredPeak) {
  const auto cfg = planned_dense();
  MoeConfig moe;
  moe.num_experts = 4;
  moe.top_k = 2;
  for (bool is_moe : {false, true}) {
    auto model_cfg = cfg;
    if (is_moe) model_cfg.moe = moe;
    CausalLM model(model_cfg);
    model->train();
    TrainConfig t;
    t.micro_batch = 4;
    const int64_t T = 128;
    MemoryPlanInput in{cfg, moe, t, T, is_moe ? StageKind::kMoe : StageKind::kDense};
    const auto plan = plan_stage_memory(in);
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel() * 4;
    EXPECT_EQ(static_cast<int64_t>(plan.parameters), params) << is_moe;
    const auto ids = torch::randint(3, 1024, {t.micro_batch, T});
    for (bool ckpt : {false, true}) {
      model->set_activation_checkpointing(ckpt);
      for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
      auto meter = std::make_shared<CpuMemoryMeter>();
      {
        c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, meter);
        auto out = model->forward(ids);
        auto loss = cross_entropy_sum(out.logits, ids);
        if (out.aux_loss.defined()) loss = loss + out.aux_loss;
        out = CausalLMOutput();
        loss.backward();
      }
      const double want = plan.step_peak(ckpt);
      const double got = static_cast<double>(meter->peak());
      std::cerr << (is_moe ? "moe" : "dense") << (ckpt ? " checkpointed" : "") << ": planned " << want / 1e6
                << " MB, measured peak " << got / 1e6 << " MB\n";
      EXPECT_NEAR(want / got, 1.0, 0.15) << (is_moe ? "moe" : "dense") << " checkpointing " << ckpt;
    }
  }
}

// The merge's frozen stacks per rank by hand: 8 experts x 3 projections x F x D in bf16, whole
// (1 shard), 4 + 4 rows (2 shards), 2 per rank (4), and the busiest rank's 3 for 3 shards
// (3 + 3 + 2); the fp32 merged W (3 x F x D per layer) stays on every rank. Uneven expert
// parallelism counts the busiest rank's ceil(7 / 4) = 2 routed experts.
TEST(MemoryPlan, ShardedMergeStacksAndUnevenExpertParallel) {
  const auto cfg = planned_dense();
  MoeConfig moe;
  moe.num_experts = 8;
  moe.top_k = 3;
  const double L = 4, F = 352, D = 128;
  for (const auto& [shards, rows] : {std::pair{1, 8}, std::pair{2, 4}, std::pair{4, 2}, std::pair{3, 3}}) {
    MemoryPlanInput in{cfg, moe, TrainConfig{}, 128, StageKind::kMerge};
    in.merge_shards = shards;
    EXPECT_EQ(plan_stage_memory(in).expert_stacks, L * 3 * rows * F * D * 2 + L * 3 * F * D * 4) << shards;
  }
  MemoryPlanInput one{cfg, moe, TrainConfig{}, 128, StageKind::kMoe}, four = one;
  four.expert_parallel = 4;
  // The shared expert plus 7 routed on one rank; the shared one plus 2 on the busiest of 4.
  EXPECT_EQ(plan_stage_memory(one).parameters - plan_stage_memory(four).parameters, L * 3 * (8 - 3) * F * D * 4);
}
