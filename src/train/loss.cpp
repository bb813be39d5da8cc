#include "xft/train/loss.h"

#include "xft/core/error.h"
#include "xft/data/batcher.h"
#include "xft/model/eval_mode.h"
#include "xft/train/precision.h"

namespace xft {

torch::Tensor cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t V = logits.size(-1);
  auto pred = logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, V}).to(torch::kFloat32);
  auto target = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  return torch::nn::functional::cross_entropy(
      pred, target, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
}

int64_t scored_labels(const torch::Tensor& labels) {
  return labels.narrow(1, 1, labels.size(1) - 1).ne(-100).sum().item<int64_t>();
}

std::pair<torch::Tensor, int64_t> language_model_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return {cross_entropy_sum(logits, labels), scored_labels(labels)};
}

double evaluate_loss(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size, int64_t pad_id,
                     Precision precision) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(model);
  const auto device = model.parameters().front().device();
  AutocastScope autocast(precision, device);
  double sum = 0.0;
  int64_t count = 0;
  for (size_t start = 0; start < data.size(); start += batch_size) {
    std::vector<int64_t> idx;
    for (size_t i = start; i < std::min(data.size(), start + batch_size); ++i) idx.push_back(static_cast<int64_t>(i));
    auto b = collate(data, idx, pad_id);
    auto logits = model.forward(b.input_ids.to(device), b.attention_mask.to(device)).logits;
    auto [s, n] = language_model_loss(logits, b.labels.to(device));
    sum += s.item<double>();
    count += n;
  }
  XFT_CHECK(count > 0, "evaluate_loss: the data set has no response token to score");
  return sum / count;
}

std::vector<double> example_losses(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size,
                                   int64_t pad_id, Precision precision) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(model);
  const auto device = model.parameters().front().device();
  AutocastScope autocast(precision, device);
  std::vector<double> out;
  for (size_t start = 0; start < data.size(); start += batch_size) {
    std::vector<int64_t> idx;
    for (size_t i = start; i < std::min(data.size(), start + batch_size); ++i) idx.push_back(static_cast<int64_t>(i));
    auto b = collate(data, idx, pad_id);
    auto logits = model.forward(b.input_ids.to(device), b.attention_mask.to(device)).logits;
    const int64_t B = logits.size(0), T = logits.size(1), V = logits.size(2);
    auto target = b.labels.to(device).narrow(1, 1, T - 1);
    auto ce = torch::nn::functional::cross_entropy(
        logits.narrow(1, 0, T - 1).reshape({-1, V}).to(torch::kFloat32), target.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone));
    auto sums = ce.view({B, T - 1}).to(torch::kFloat64).sum(1).cpu();
    auto counts = target.ne(-100).sum(1).to(torch::kFloat64).cpu();
    for (int64_t r = 0; r < B; ++r) out.push_back(sums[r].item<double>() / counts[r].item<double>());
  }
  return out;
}

}  // namespace xft
