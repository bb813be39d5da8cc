#include "train/train_step.h"

#include <cmath>
#include <sstream>

#include "xft/core/error.h"
#include "xft/data/batcher.h"
#include "xft/data/packing.h"
#include "xft/train/loss.h"
#include "xft/train/precision.h"

namespace xft {

TrainStep::TrainStep(std::string stage, std::string stage_dir, CausalLM model, const InstructionDataset& data,
                     const TrainConfig& config, int64_t pad_id, std::shared_ptr<const Distributed> dist, bool lockstep,
                     GradReducer* reducer, int64_t packing_row_length)
    : stage_(std::move(stage)),
      dir_(std::move(stage_dir)),
      model_(std::move(model)),
      data_(data),
      config_(config),
      pad_id_(pad_id),
      dist_(std::move(dist)),
      lockstep_(lockstep),
      reducer_(reducer),
      packing_row_length_(packing_row_length) {}

std::string TrainStep::describe_bad(double loss, const std::vector<int64_t>& indices, int64_t m, int64_t M,
                                    int64_t step, int64_t epoch) const {
  std::ostringstream ids;
  const auto first = static_cast<size_t>(m * config_.micro_batch);
  const auto last = std::min(indices.size(), static_cast<size_t>((m + 1) * config_.micro_batch));
  for (size_t s = first; s < last; ++s) ids << (s == first ? "" : ",") << indices[s];
  std::ostringstream os;
  os << "the loss is " << loss << " at step " << step + 1 << " (epoch " << epoch + 1 << ", micro-batch " << m + 1 << "/"
     << M << ", examples " << ids.str() << ")";
  return os.str();
}

Batch TrainStep::collate_micro_batch(const std::vector<int64_t>& indices) const {
  return packing_row_length_ > 0 ? collate_packed(data_, indices, pad_id_, packing_row_length_)
                                 : collate(data_, indices, pad_id_);
}

TrainStep::Pass TrainStep::backward_passes(const std::vector<int64_t>& indices) {
  const torch::Device device = model_->parameters().front().device();
  const int64_t global_tokens = count_loss_tokens(data_, indices);
  const int64_t mb = config_.micro_batch, micro_per_step = config_.global_batch / mb;
  const int64_t M = (static_cast<int64_t>(indices.size()) + mb - 1) / mb;
  const int64_t W = dist_->world(), R = dist_->rank();
  const int64_t m_begin = M * R / W, m_end = M * (R + 1) / W;
  const int64_t passes = lockstep_ ? (M + W - 1) / W : m_end - m_begin;
  Pass p;
  p.first_micro_batch = m_begin;
  for (int64_t k = 0; k < passes; ++k) {
    const int64_t m = m_begin + k;
    const bool dummy = m >= m_end;
    const int64_t mm = dummy ? m_begin % M : m;
    const auto first = indices.begin() + mm * mb;
    const auto last = indices.begin() + std::min<int64_t>(static_cast<int64_t>(indices.size()), (mm + 1) * mb);
    const Batch b = collate_micro_batch(std::vector<int64_t>(first, last));
    if (reducer_ && k + 1 == passes) reducer_->arm();
    torch::Tensor loss, aux;
    {
      AutocastScope scope(config_.precision, device);
      // Without padding or packing, no mask: plain causal attention, sdpa's fast kernels.
      const auto mask = b.needs_mask ? b.attention_mask.to(device) : torch::Tensor();
      const auto positions = b.position_ids.defined() ? b.position_ids.to(device) : torch::Tensor();
      auto out = model_->forward(b.input_ids.to(device), mask, positions);
      auto sum = cross_entropy_sum(out.logits, b.labels.to(device));
      loss = config_.loss_reduction == LossReduction::kToken
                 ? sum / std::max<int64_t>(1, global_tokens)
                 : sum / std::max<int64_t>(1, scored_labels(b.labels)) / static_cast<double>(micro_per_step);
      aux = out.aux_loss;
    }
    if (dummy) {
      loss = loss * 0.0;
      if (aux.defined()) aux = aux * 0.0;
    } else {
      p.tokens += static_cast<double>(b.tokens);
    }
    auto total = loss;
    if (aux.defined()) {
      aux = aux / static_cast<double>(micro_per_step);
      total = total + aux;
    }
    // Dummy passes (lockstep) are not this rank's micro-batches: not reported.
    if (!dummy) {
      p.loss.push_back(loss.detach().to(torch::kFloat64));
      p.aux.push_back(aux.defined() ? aux.detach().to(torch::kFloat64) : torch::zeros({}, p.loss.back().options()));
    }
    total.backward();
  }
  return p;
}

StepStats TrainStep::run(const std::vector<int64_t>& indices, int64_t step, int64_t epoch) {
  const Pass p = backward_passes(indices);
  StepStats s;
  if (reducer_) {
    s.buckets_overlapped = reducer_->launched_in_backward();
    reducer_->finish();
    s.buckets = reducer_->num_buckets();
  }
  // The step's one host read of its losses: each micro-batch's loss and aux, summed in order in
  // double (what the per-micro-batch reads summed before).
  double loss = 0.0, aux = 0.0;
  std::string bad;
  if (!p.loss.empty()) {
    const auto host = torch::stack({torch::stack(p.loss), torch::stack(p.aux)}).cpu();
    const auto* v = host.data_ptr<double>();
    const auto n = static_cast<int64_t>(p.loss.size());
    const int64_t M = (static_cast<int64_t>(indices.size()) + config_.micro_batch - 1) / config_.micro_batch;
    for (int64_t m = 0; m < n; ++m) {
      if (!std::isfinite(v[m]) && bad.empty())
        bad = describe_bad(v[m], indices, p.first_micro_batch + m, M, step, epoch);
      loss += v[m];
      aux += v[n + m];
    }
  }
  // The step's numbers over all ranks (and whether any saw a non-finite loss).
  auto stats = torch::tensor({loss, aux, p.tokens, bad.empty() ? 0.0 : 1.0}, torch::kDouble);
  if (dist_->active()) {
    std::vector<torch::Tensor> v{stats.to(dist_->comm_device())};
    dist_->all_reduce_sum(v, Distributed::Group::kWorld, "metrics of step " + std::to_string(step + 1));
    stats = v[0].cpu();
  }
  const auto* st = stats.data_ptr<double>();
  if (st[3] > 0) {
    fail(stage_, ": ",
         bad.empty() ? "another rank reported a non-finite loss at step " + std::to_string(step + 1) : bad,
         dist_->active() ? " (rank " + std::to_string(dist_->rank()) + ")" : "", "; stopped, the last checkpoint in ",
         dir_, "/checkpoints is intact");
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
