#include "train/train_step.h"

#include <cmath>
#include <sstream>

#include "xft/core/error.h"
#include "xft/data/batcher.h"
#include "xft/train/loss.h"
#include "xft/train/precision.h"

namespace xft {

TrainStep::TrainStep(std::string stage, std::string stage_dir, CausalLM model, const InstructionDataset& data,
                     const TrainConfig& config, int64_t pad_id, std::shared_ptr<const Distributed> dist,
                     bool expert_parallel, GradReducer* reducer)
    : stage_(std::move(stage)), dir_(std::move(stage_dir)), model_(std::move(model)), data_(data), config_(config), pad_id_(pad_id),
      dist_(std::move(dist)), expert_parallel_(expert_parallel), reducer_(reducer) {}

std::string TrainStep::describe_bad(double loss, const std::vector<int64_t>& indices, int64_t m, int64_t M,
                                    int64_t step, int64_t epoch) const {
  std::ostringstream ids;
  const auto first = static_cast<size_t>(m * config_.micro_batch);
  const auto last = std::min(indices.size(), static_cast<size_t>((m + 1) * config_.micro_batch));
  for (size_t s = first; s < last; ++s) ids << (s == first ? "" : ",") << indices[s];
  std::ostringstream os;
  os << "the loss is " << loss << " at step " << step + 1 << " (epoch " << epoch + 1 << ", micro-batch " << m + 1
     << "/" << M << ", examples " << ids.str() << ")";
  return os.str();
}

TrainStep::Pass TrainStep::backward_passes(const std::vector<int64_t>& indices, int64_t step, int64_t epoch) {
  const torch::Device device = model_->parameters().front().device();
  const int64_t global_tokens = count_loss_tokens(data_, indices);
  const int64_t mb = config_.micro_batch, micro_per_step = config_.global_batch / mb;
  const int64_t M = (static_cast<int64_t>(indices.size()) + mb - 1) / mb;
  const int64_t W = dist_->world(), R = dist_->rank();
  const int64_t m_begin = M * R / W, m_end = M * (R + 1) / W;
  const int64_t passes = expert_parallel_ ? (M + W - 1) / W : m_end - m_begin;
  Pass p;
  for (int64_t k = 0; k < passes; ++k) {
    const int64_t m = m_begin + k;
    const bool dummy = m >= m_end;
    const int64_t mm = dummy ? m_begin % M : m;
    const auto first = indices.begin() + mm * mb;
    const auto last = indices.begin() + std::min<int64_t>(static_cast<int64_t>(indices.size()), (mm + 1) * mb);
    const Batch b = collate(data_, std::vector<int64_t>(first, last), pad_id_);
    if (reducer_ && k + 1 == passes) reducer_->arm();
    torch::Tensor loss, aux;
    {
      AutocastScope scope(config_.precision, device);
      auto out = model_->forward(b.input_ids.to(device), b.attention_mask.to(device));
      auto [sum, count] = language_model_loss(out.logits, b.labels.to(device));
      loss = config_.loss_reduction == LossReduction::kToken
                 ? sum / std::max<int64_t>(1, global_tokens)
                 : sum / std::max<int64_t>(1, count) / static_cast<double>(micro_per_step);
      aux = out.aux_loss;
    }
    if (dummy) {
      loss = loss * 0.0;
      if (aux.defined()) aux = aux * 0.0;
    } else {
      p.tokens += b.attention_mask.sum().item<double>();
    }
    const double lv = loss.item<double>();
    if (!std::isfinite(lv) && p.bad.empty()) p.bad = describe_bad(lv, indices, m, M, step, epoch);
    p.loss += lv;
    auto total = loss;
    if (aux.defined()) {
      aux = aux / static_cast<double>(micro_per_step);
      p.aux += aux.item<double>();
      total = total + aux;
    }
    // Single process: stop before a backward through a non-finite loss. Several: every rank
    // keeps in step with the others' collectives and all stop together in run().
    if (!p.bad.empty() && !dist_->active()) break;
    total.backward();
  }
  return p;
}

StepStats TrainStep::run(const std::vector<int64_t>& indices, int64_t step, int64_t epoch) {
  const Pass p = backward_passes(indices, step, epoch);
  StepStats s;
  if (reducer_) {
    s.buckets_overlapped = reducer_->launched_in_backward();
    reducer_->finish();
    s.buckets = reducer_->num_buckets();
  }
  // The step's numbers over all ranks (and whether any saw a non-finite loss).
  auto stats = torch::tensor({p.loss, p.aux, p.tokens, p.bad.empty() ? 0.0 : 1.0}, torch::kDouble);
  if (dist_->active()) {
    std::vector<torch::Tensor> v{stats.to(dist_->comm_device())};
    dist_->all_reduce_sum(v, Distributed::Group::kWorld, "metrics of step " + std::to_string(step + 1));
    stats = v[0].cpu();
  }
  const auto* st = stats.data_ptr<double>();
  if (st[3] > 0) {
    fail(stage_, ": ",
         p.bad.empty() ? "another rank reported a non-finite loss at step " + std::to_string(step + 1) : p.bad,
         dist_->active() ? " (rank " + std::to_string(dist_->rank()) + ")" : "", "; stopped, the last checkpoint in ", dir_,
         "/checkpoints is intact");
  }
  s.loss = st[0];
  s.aux_loss = st[1];
  s.tokens = st[2];
  s.step = step + 1;
  s.epoch = epoch + 1;
  if (dist_->active()) s.world_size = static_cast<int>(dist_->world());
  return s;
}

}  // namespace xft
