// defines: GradReducer (data-parallel gradients: all-reduced in buckets, each launched from the
//          backward as soon as its gradients are final)
//
// There is no DDP module in LibTorch's C++ API; this is its gradient half. Hooks after each
// parameter's gradient accumulation mark it ready during the last backward of an optimizer step;
// a bucket whose parameters are all ready starts its asynchronous all-reduce (SUM) while the
// backward goes on. Buckets start strictly in their index order on every rank, so the
// collectives match across ranks even when readiness differs. finish() starts what is left
// (everything, on a rank that ran no backward: its gradients count as zeros) and waits.
// The trainer's loss is already divided by the global token count, so the SUM is the gradient
// of the single-process run.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/types.h>

#include "distributed/process_groups.h"

namespace torch::autograd {
struct Node;
}

namespace xft {

class GradReducer {
 public:
  // Rows [row_begin, row_begin + rows) of a parameter's gradient (rows < 0: all of it) reduced
  // over `group`. Slices are dropped in the single-process context (no groups).
  struct Slice {
    std::string name;
    torch::Tensor param;
    int64_t row_begin = 0, rows = -1;
    Distributed::Group group = Distributed::Group::kWorld;
  };

  GradReducer(std::vector<Slice> slices, std::shared_ptr<const Distributed> dist, double bucket_mb);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // The next backward is the step's last on this rank: its accumulated gradients are final.
  void arm();
  // Starts the buckets the backward did not, waits for all, writes the sums into the grads.
  void finish();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets started from inside the last backward (the overlapped ones), for tests and metrics.
  int64_t launched_in_backward() const { return launched_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> slices;
    Distributed::Group group;
    int64_t pending = 0;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_ready(size_t param);
  void launch(size_t bucket);
  void reset();
  torch::Tensor grad_view(const Slice& s, bool create);

  std::vector<Slice> slices_;
  std::vector<torch::Tensor> params_;                 // distinct parameters
  std::vector<std::vector<size_t>> slices_of_param_;  // param -> its slices
  std::vector<size_t> bucket_of_slice_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  std::shared_ptr<const Distributed> dist_;
  std::mutex mu_;
  bool armed_ = false;
  size_t next_ = 0;
  int64_t launched_in_backward_ = 0;
};

}  // namespace xft
