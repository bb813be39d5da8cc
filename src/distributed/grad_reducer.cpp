#include "distributed/grad_reducer.h"

#include <map>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include "xft/core/error.h"

namespace xft {

GradReducer::GradReducer(std::vector<Slice> slices, std::shared_ptr<const Distributed> dist, double bucket_mb)
    : dist_(std::move(dist)) {
  for (auto& s : slices)
    if (dist_->has_group(s.group)) slices_.push_back(std::move(s));
  // Distinct parameters, in the order given.
  std::map<const void*, size_t> index;
  for (size_t i = 0; i < slices_.size(); ++i) {
    const void* key = slices_[i].param.unsafeGetTensorImpl();
    auto [it, fresh] = index.emplace(key, params_.size());
    if (fresh) {
      params_.push_back(slices_[i].param);
      slices_of_param_.emplace_back();
    }
    slices_of_param_[it->second].push_back(i);
  }
  // Buckets in reverse order (the backward reaches the last layers first), one group, dtype
  // and device each, up to bucket_mb.
  const auto cap = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  bucket_of_slice_.assign(slices_.size(), 0);
  int64_t bytes = 0;
  for (size_t k = slices_.size(); k-- > 0;) {
    const auto& s = slices_[k];
    const int64_t n =
        (s.rows < 0 ? s.param.numel() : s.param.numel() / std::max<int64_t>(1, s.param.size(0)) * s.rows) *
        s.param.element_size();
    bool fits = !buckets_.empty() && buckets_.back().group == s.group && bytes + n <= cap;
    if (fits) {
      const auto& first = slices_[buckets_.back().slices.front()].param;
      fits = first.scalar_type() == s.param.scalar_type() && first.device() == s.param.device();
    }
    if (!fits) {
      buckets_.emplace_back();
      buckets_.back().group = s.group;
      bytes = 0;
    }
    buckets_.back().slices.push_back(k);
    bucket_of_slice_[k] = buckets_.size() - 1;
    bytes += n;
  }
  reset();
  for (size_t p = 0; p < params_.size(); ++p) {
    XFT_CHECK(params_[p].requires_grad(), "grad reducer: parameter of slice '", slices_[slices_of_param_[p][0]].name,
              "' does not require grad");
    auto acc = torch::autograd::impl::grad_accumulator(params_[p]);
    const auto key = acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, p](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_ready(p);
          return outputs;
        }));
    hooks_.emplace_back(std::move(acc), key);  // holding the accumulator keeps the hook alive
  }
}

GradReducer::~GradReducer() {
  for (auto& [node, key] : hooks_) node->del_post_hook(key);
}

void GradReducer::reset() {
  for (auto& b : buckets_) {
    b.pending = static_cast<int64_t>(b.slices.size());
    b.flat = torch::Tensor();
    b.work.reset();
  }
  next_ = 0;
  armed_ = false;
}

void GradReducer::arm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
  launched_in_backward_ = 0;
}

torch::Tensor GradReducer::grad_view(const Slice& s, bool create) {
  auto g = s.param.grad();
  if (!g.defined()) {
    if (!create) return {};
    // No gradient reached this parameter on this rank: it contributes zeros to the sum.
    s.param.mutable_grad() = torch::zeros_like(s.param);
    g = s.param.grad();
  }
  return s.rows < 0 ? g : g.narrow(0, s.row_begin, s.rows);
}

void GradReducer::launch(size_t b) {
  torch::NoGradGuard ng;
  auto& bucket = buckets_[b];
  std::vector<torch::Tensor> parts;
  for (auto k : bucket.slices) parts.push_back(grad_view(slices_[k], true).reshape(-1));
  bucket.flat = torch::cat(parts);
  // An empty bucket (the routed rows of a rank without routed experts, expert_sharding.h) has
  // nothing to sum; the ranks it would meet in its group hold the same empty rows.
  if (bucket.flat.numel() == 0) return;
  std::vector<torch::Tensor> v{bucket.flat};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  bucket.work = process_group(*dist_, bucket.group)->allreduce(v, o);
}

void GradReducer::on_ready(size_t p) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) return;
  for (auto k : slices_of_param_[p]) --buckets_[bucket_of_slice_[k]].pending;
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) {
    launch(next_++);
    ++launched_in_backward_;
  }
}

void GradReducer::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  while (next_ < buckets_.size()) launch(next_++);
  torch::NoGradGuard ng;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    auto& bucket = buckets_[b];
    if (!bucket.work) continue;  // empty
    wait_for(*dist_, bucket.work,
             "gradient all-reduce (bucket " + std::to_string(b + 1) + "/" + std::to_string(buckets_.size()) +
                 ", first tensor '" + slices_[bucket.slices.front()].name + "')",
             bucket.group);
    int64_t off = 0;
    for (auto k : bucket.slices) {
      auto g = grad_view(slices_[k], true);
      g.copy_(bucket.flat.narrow(0, off, g.numel()).view(g.sizes()));
      off += g.numel();
    }
  }
  reset();
}

}  // namespace xft
