// defines: DistributedConfig, Distributed (the process's place in a multi-process run: rank,
//          world, the c10d process groups, and the few collectives the trainer needs)
//
// Launch: `torchrun --nproc-per-node=N --no-python <driver> ...` sets RANK, LOCAL_RANK,
// WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them the run is a single process and every
// collective here is a no-op. Groups are c10d backends (PyTorch's own engine): NCCL between
// GPUs, Gloo on CPU. Three groups are made:
//   world       gradients of replicated parameters, broadcasts, metrics, barriers
//   expert      the expert-parallel group of this rank (expert_parallel consecutive ranks): the
//               all-to-all that carries tokens to the ranks holding their experts
//   expert_dp   the ranks holding the same experts (one per expert group): their gradients
// Every collective waits at most timeout_s; a dead or hung peer becomes an xft::Error naming
// the operation, the group and the rank, never a silent hang. A launched run of one process
// (torchrun --nproc-per-node=1) takes the same path with groups of one rank.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

namespace xft {

enum class BackendKind { kAuto, kGloo, kNccl };

struct DistributedConfig {
  BackendKind backend = BackendKind::kAuto;  // "auto" (nccl for cuda devices, gloo for cpu) | "gloo" | "nccl"
  double timeout_s = 1800;                   // longest wait of any collective (rank 0 alone exports and evaluates)
  int64_t expert_parallel = 1;               // ranks the routed experts of each MoE layer are split over (MoE stage)
  double bucket_mb = 25;                     // gradient all-reduce bucket size
  // The merge stage's frozen expert stacks split over the world's ranks (methods/merge.h): each
  // rank holds about N / world experts' rows, and one all-reduce per layer and forward builds W.
  bool shard_merge = false;

  static DistributedConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

// The launcher's environment (all zero/one when absent).
struct LaunchEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // torchrun's agent already serves the store at MASTER_ADDR:PORT
  int restart = 0;           // TORCHELASTIC_RESTART_COUNT: keys of a restarted run stay apart
  bool launched() const { return world > 1 || !master_addr.empty(); }
  static LaunchEnv from_environment();  // throws xft::Error naming a malformed variable
};

class Distributed {
 public:
  // A single-process context: rank 0 of 1, no groups.
  Distributed() = default;
  // Joins the run described by `env` on `device` ("cpu", "cuda", "cuda:N"; for cuda the rank
  // uses GPU LOCAL_RANK). Rendezvous and group creation wait at most config.timeout_s.
  static std::shared_ptr<Distributed> init(const LaunchEnv& env, const DistributedConfig& config,
                                           const std::string& device);
  // init from the environment, or a single-process context when no launcher set it.
  static std::shared_ptr<Distributed> from_environment(const DistributedConfig& config, const std::string& device);

  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }
  bool is_lead() const { return rank_ == 0; }
  // A launched run (torchrun), even of one rank: its collectives run for real, over groups of
  // one rank too, as DDP's do at world size 1. False only for the single-process context.
  bool active() const { return launched_; }
  const DistributedConfig& config() const { return config_; }
  const std::string& backend() const { return backend_name_; }
  // The device this rank trains on: config device with LOCAL_RANK's GPU for cuda.
  std::string device_for(const std::string& device) const;
  // Where tensors handed to the collectives live: this rank's GPU for NCCL, else the CPU.
  torch::Device comm_device() const;

  // Expert parallelism: size of the expert group, this rank's index in it.
  int expert_size() const { return expert_size_; }
  int expert_rank() const { return rank_ % expert_size_; }
  int expert_dp_size() const { return world_ / expert_size_; }

  enum class Group { kWorld, kExpert, kExpertDp };
  // False in the single-process context (nothing to communicate). The c10d backends themselves
  // stay behind the library (src/distributed/process_groups.h), so this header needs no c10d.
  bool has_group(Group g) const;
  int group_size(Group g) const;

  // Blocking collectives with this context's timeout; errors name `what`.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, Group g, const std::string& what) const;
  void broadcast(std::vector<torch::Tensor>& tensors, Group g, const std::string& what) const;  // from group rank 0
  // Every group member's `local` (same shape everywhere), concatenated along dim 0 in group rank order.
  torch::Tensor all_gather_cat(const torch::Tensor& local, Group g, const std::string& what) const;
  void barrier(const std::string& what) const;
  std::string describe(Group g) const;

  struct Groups;  // the c10d backends (src/distributed/process_groups.h)
  const Groups* groups() const { return groups_.get(); }

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0, expert_size_ = 1;
  bool launched_ = false;
  DistributedConfig config_;
  std::string backend_name_ = "none";
  std::shared_ptr<const Groups> groups_;
};

}  // namespace xft
