#include "xft/distributed/distributed.h"

#include <chrono>
#include <cstdlib>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "core/config_reader.h"
#include "distributed/process_groups.h"
#include "xft/core/error.h"

namespace xft {

// ---------------------------------------------------------------- config

namespace {
const EnumNames<BackendKind> kBackendNames = {
    {"auto", BackendKind::kAuto}, {"gloo", BackendKind::kGloo}, {"nccl", BackendKind::kNccl}};

const ConfigReader<DistributedConfig>& distributed_reader() {
  static const ConfigReader<DistributedConfig> r = ConfigReader<DistributedConfig>("distributed")
                                                       .field("backend", &DistributedConfig::backend, kBackendNames)
                                                       .field("timeout_s", &DistributedConfig::timeout_s)
                                                       .field("expert_parallel", &DistributedConfig::expert_parallel)
                                                       .field("bucket_mb", &DistributedConfig::bucket_mb)
                                                       .field("shard_merge", &DistributedConfig::shard_merge);
  return r;
}
}  // namespace

DistributedConfig DistributedConfig::from_json(const nlohmann::json& j, const std::string& source) {
  DistributedConfig c = distributed_reader().read(j, source);
  XFT_CHECK(c.timeout_s > 0, source, ": distributed.timeout_s must be positive");
  XFT_CHECK(c.expert_parallel >= 1, source, ": distributed.expert_parallel must be >= 1");
  XFT_CHECK(c.bucket_mb > 0, source, ": distributed.bucket_mb must be positive");
  return c;
}

nlohmann::json DistributedConfig::to_json() const { return distributed_reader().write(*this); }

// ---------------------------------------------------------------- environment

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  XFT_CHECK(*end == '\0' && x >= 0 && x < (1L << 30), "environment variable ", name, "='", v,
            "' is not a non-negative integer");
  return static_cast<int>(x);
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

LaunchEnv LaunchEnv::from_environment() {
  LaunchEnv e;
  e.world = env_int("WORLD_SIZE", 1);
  e.rank = env_int("RANK", 0);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  e.master_addr = env_str("MASTER_ADDR");
  e.master_port = env_int("MASTER_PORT", 0);
  e.agent_store = env_str("TORCHELASTIC_USE_AGENT_STORE") == "True";
  e.restart = env_int("TORCHELASTIC_RESTART_COUNT", 0);
  XFT_CHECK(e.world >= 1, "WORLD_SIZE must be >= 1");
  XFT_CHECK(e.rank < e.world, "RANK (", e.rank, ") must be smaller than WORLD_SIZE (", e.world, ")");
  if (e.world > 1) {
    XFT_CHECK(!e.master_addr.empty() && e.master_port > 0 && e.master_port < 65536, "WORLD_SIZE is ", e.world,
              " but MASTER_ADDR/MASTER_PORT are not set (launch with torchrun, ",
              "or set RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)");
  }
  return e;
}

// ---------------------------------------------------------------- context

std::shared_ptr<Distributed> Distributed::from_environment(const DistributedConfig& config, const std::string& device) {
  const auto env = LaunchEnv::from_environment();
  if (!env.launched()) {
    auto d = std::make_shared<Distributed>();
    d->config_ = config;
    return d;
  }
  return init(env, config, device);
}

std::shared_ptr<Distributed> Distributed::init(const LaunchEnv& env, const DistributedConfig& config,
                                               const std::string& device) {
  auto d = std::make_shared<Distributed>();
  d->rank_ = env.rank;
  d->world_ = env.world;
  d->local_rank_ = env.local_rank;
  d->launched_ = true;
  d->config_ = config;
  const bool cuda = device.rfind("cuda", 0) == 0;
  d->backend_name_ =
      config.backend == BackendKind::kAuto ? (cuda ? "nccl" : "gloo") : enum_name(kBackendNames, config.backend);
  XFT_CHECK(!(d->backend_name_ == "nccl" && !cuda), "distributed: backend 'nccl' needs a cuda device, the training ",
            "device is '", device, "' (use backend 'gloo' or auto)");
  XFT_CHECK(config.expert_parallel <= env.world && env.world % config.expert_parallel == 0,
            "distributed: expert_parallel (", config.expert_parallel, ") must divide the world size (", env.world, ")");
  d->expert_size_ = static_cast<int>(config.expert_parallel);

  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_s * 1000));
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port);
  // Under torchrun the agent already serves the store; otherwise rank 0 does.
  so.isServer = env.rank == 0 && !env.agent_store;
  so.numWorkers = env.agent_store ? std::nullopt : std::optional<std::size_t>(env.world);
  so.waitWorkers = !env.agent_store;
  so.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> root;
  try {
    root = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    fail("rank ", env.rank, ": cannot join the run's store at ", env.master_addr, ":", env.master_port, " within ",
         config.timeout_s, " s: ", e.what());
  }
  root = c10::make_intrusive<c10d::PrefixStore>("xft/" + std::to_string(env.restart), root);

  auto make = [&](const std::string& name, int rank, int size) -> c10::intrusive_ptr<c10d::Backend> {
    auto store = c10::make_intrusive<c10d::PrefixStore>(name, root);
    try {
      return d->backend_name_ == "nccl" ? detail::make_nccl_group(store, rank, size, timeout, env.local_rank)
                                        : detail::make_gloo_group(store, rank, size, timeout);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail("rank ", env.rank, ": cannot create the ", d->backend_name_, " group '", name, "' (", size,
           " ranks) within ", config.timeout_s, " s: ", e.what());
    }
  };
  // Every rank creates the groups it belongs to, in the same order.
  auto groups = std::make_shared<Groups>();
  groups->world = make("world", env.rank, env.world);
  const int E = d->expert_size_;
  groups->expert = make("expert/" + std::to_string(env.rank / E), env.rank % E, E);
  groups->expert_dp = make("expert_dp/" + std::to_string(env.rank % E), env.rank / E, env.world / E);
  d->groups_ = std::move(groups);
  return d;
}

std::string Distributed::device_for(const std::string& device) const {
  if (device.rfind("cuda", 0) != 0 || !active()) return device;
  return "cuda:" + std::to_string(local_rank_);  // one GPU per rank, picked by LOCAL_RANK
}

torch::Device Distributed::comm_device() const {
  return backend_name_ == "nccl" ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank_))
                                 : torch::Device(torch::kCPU);
}

c10::intrusive_ptr<c10d::Backend> process_group(const Distributed& dist, Distributed::Group g) {
  const auto* groups = dist.groups();
  if (!groups) return {};
  switch (g) {
    case Distributed::Group::kWorld: return groups->world;
    case Distributed::Group::kExpert: return groups->expert;
    case Distributed::Group::kExpertDp: return groups->expert_dp;
  }
  return {};
}

bool Distributed::has_group(Group g) const { return static_cast<bool>(process_group(*this, g)); }

int Distributed::group_size(Group g) const {
  switch (g) {
    case Group::kWorld: return world_;
    case Group::kExpert: return expert_size_;
    case Group::kExpertDp: return world_ / expert_size_;
  }
  return 1;
}

std::string Distributed::describe(Group g) const {
  const char* names[] = {"world", "expert", "expert_dp"};
  return std::string(names[static_cast<int>(g)]) + " group (" + std::to_string(group_size(g)) + " ranks, " +
         backend_name_ + ")";
}

void wait_for(const Distributed& dist, const c10::intrusive_ptr<c10d::Work>& work, const std::string& what,
              Distributed::Group g) {
  const double timeout_s = dist.config().timeout_s;
  try {
    work->wait(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    while (!msg.empty() && (msg.back() == '.' || msg.back() == '!' || msg.back() == ' ')) msg.pop_back();
    fail("rank ", dist.rank(), ": ", what, " on the ", dist.describe(g), " failed: ", msg,
         ". Another rank died, hung or left the run (collectives wait at most distributed.timeout_s = ", timeout_s,
         " s)");
  }
}

void Distributed::all_reduce_sum(std::vector<torch::Tensor>& tensors, Group g, const std::string& what) const {
  auto pg = process_group(*this, g);
  if (!pg) return;
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  wait_for(*this, pg->allreduce(tensors, o), what, g);
}

void Distributed::broadcast(std::vector<torch::Tensor>& tensors, Group g, const std::string& what) const {
  auto pg = process_group(*this, g);
  if (!pg) return;
  for (auto& t : tensors) {
    if (t.numel() == 0) continue;  // empty on every member (the same rows everywhere in a group)
    std::vector<torch::Tensor> one{t};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    wait_for(*this, pg->broadcast(one, o), what, g);
  }
}

torch::Tensor Distributed::all_gather_cat(const torch::Tensor& local, Group g, const std::string& what) const {
  auto pg = process_group(*this, g);
  if (!pg) return local;
  std::vector<torch::Tensor> in{local.contiguous()};
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int i = 0; i < group_size(g); ++i) out[0].push_back(torch::empty_like(in[0]));
  wait_for(*this, pg->allgather(out, in), what, g);
  return torch::cat(out[0]);
}

void Distributed::barrier(const std::string& what) const {
  auto pg = process_group(*this, Group::kWorld);
  if (!pg) return;
  // A tiny all-reduce rather than Backend::barrier: same guarantee, and NCCL needs no device hint.
  auto t = torch::zeros({1}, torch::TensorOptions().device(comm_device()));
  std::vector<torch::Tensor> v{t};
  all_reduce_sum(v, Group::kWorld, "barrier (" + what + ")");
}

}  // namespace xft
