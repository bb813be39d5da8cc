// Multi-process training on c10d (Gloo on loopback, 2 and 4 processes): data parallel and
// expert parallel runs against the single-process run with the same global batch, torchrun
// launches, resume, and dead or hung ranks; NCCL between GPUs where a machine has two.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include <torch/cuda.h>

#include "test_util.h"
#include "tiny_world.h"
#include "xft/core/safetensors.h"
#include "xft/distributed/distributed.h"
#include "xft/distributed/expert_sharding.h"

namespace fs = std::filesystem;
using namespace xft;
using xft::test::losses;
using xft::test::read_all;

namespace {

std::string bin(const std::string& name) { return xft::test::env_or_empty("XFT_BIN_DIR") + "/" + name; }

// The tiny world, made once per test binary run.
const std::string& world_dir() {
  static const std::string dir = [] {
    auto d = (fs::temp_directory_path() / ("xft-dist-world-" + std::to_string(::getpid()))).string();
    xft::remove_tree(d);
    fs::create_directories(d);
    xft::test::make_tiny_world(d);
    return d;
  }();
  return dir;
}

// Driver arguments for a run in `run_dir`: the tiny config on the tiny world, every stage with
// global batch 8 in micro-batches of 2, plus `extra` overrides.
std::string args(const std::string& run_dir, const std::string& extra = "") {
  const auto& w = world_dir();
  std::string a = " --config " + xft::test::env_or_empty("XFT_SOURCE_DIR") +
                  "/configs/tiny.json --set run_dir=" + run_dir + " --set base_model=" + w +
                  "/base --set data.path=" + w + "/data.jsonl" + " --set eval_data=" + w +
                  "/data.jsonl --set data.max_length=512 --set distributed.timeout_s=60";
  for (const auto* s : {"sft_train", "moe_train", "merge_train", "ewa_train"})
    a += std::string(" --set ") + s + ".micro_batch=2";
  return a + " " + extra;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// One rank started by hand with the launcher's variables (what torchrun sets), in the background.
struct Rank {
  int pid = 0;
  std::string log, rc_file;
  bool done() const { return fs::exists(rc_file) && !read_all(rc_file).empty(); }
  int rc() const { return std::stoi(read_all(rc_file)); }
};

std::vector<Rank> spawn(const std::string& driver, const std::string& a, int world, const std::string& dir) {
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < world; ++r) {
    Rank k;
    k.log = dir + "/rank" + std::to_string(r) + ".log";
    k.rc_file = dir + "/rank" + std::to_string(r) + ".rc";
    const auto pid_file = dir + "/rank" + std::to_string(r) + ".pid";
    const std::string env = "OMP_NUM_THREADS=1 RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) +
                            " WORLD_SIZE=" + std::to_string(world) +
                            " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
    const std::string inner = env + " " + bin(driver) + a + " > " + k.log + " 2>&1 & p=$!; echo $p > " + pid_file +
                              "; wait $p; echo $? > " + k.rc_file;
    EXPECT_EQ(std::system(("sh -c '" + inner + "' &").c_str()), 0);
    for (int i = 0; i < 500 && (!fs::exists(pid_file) || read_all(pid_file).empty()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    k.pid = std::stoi(read_all(pid_file));
    ranks.push_back(k);
  }
  return ranks;
}

// Waits for every rank (at most `limit_s`); true when all finished.
bool wait_all(const std::vector<Rank>& ranks, double limit_s) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < limit_s) {
    bool all = true;
    for (const auto& r : ranks) all = all && r.done();
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int run_ranks(const std::string& driver, const std::string& a, int world, const std::string& dir) {
  auto ranks = spawn(driver, a, world, dir);
  EXPECT_TRUE(wait_all(ranks, 600));
  int worst = 0;
  for (const auto& r : ranks) {
    EXPECT_EQ(r.rc(), 0) << r.log << ":\n" << read_all(r.log);
    worst = std::max(worst, r.rc());
  }
  return worst;
}

int torchrun(const std::string& driver, const std::string& a, int world, const std::string& log) {
  return xft::test::run(xft::test::env_or_empty("XFT_PYTHON") + " -m torch.distributed.run --standalone " +
                        "--nproc-per-node=" + std::to_string(world) + " --no-python " + bin(driver) + a + " > " + log +
                        " 2>&1");
}

// Every tensor of two model directories within `tol`.
void expect_same_model(const std::string& a, const std::string& b, double tol) {
  auto x = TensorDirectory::open(a), y = TensorDirectory::open(b);
  ASSERT_EQ(x.names(), y.names()) << a << " vs " << b;
  for (const auto& n : x.names()) {
    EXPECT_LE(xft::test::max_abs_diff(x.get(n), y.get(n)), tol) << n << " in " << a << " vs " << b;
  }
}

// The first row of a trainer's metrics.jsonl (step 1).
nlohmann::json first_metrics_row(const std::string& metrics) {
  std::ifstream in(metrics);
  std::string line;
  EXPECT_TRUE(std::getline(in, line)) << metrics << " has no row";
  return line.empty() ? nlohmann::json::object() : nlohmann::json::parse(line);
}

// The loss (within tol) and the gradient's global norm before clipping (within tol relative)
// at every step.
void expect_same_curves(const std::string& a, const std::string& b, double tol = 1e-5) {
  for (const auto* key : {"loss", "grad_norm"}) {
    const auto x = xft::test::metric(a, key), y = xft::test::metric(b, key);
    ASSERT_EQ(x.size(), y.size()) << a << " vs " << b;
    ASSERT_FALSE(x.empty());
    for (size_t i = 0; i < x.size(); ++i) {
      const double t = std::string(key) == "loss" ? tol : tol * std::max(1.0, std::abs(x[i]));
      EXPECT_NEAR(x[i], y[i], t) << key << " at step " << i + 1 << " of " << b;
    }
  }
}

// `driver` as a plain process and under torchrun with one process, which takes the whole
// distributed path (store, groups of one rank, the bucketed all-reduce started from the
// backward, reduced metrics, the replica check): the same losses, gradient norms and models
// within `tol`. Returns the torchrun log.
std::string expect_world_of_one_is_the_plain_run(const std::string& dir, const std::string& driver,
                                                 const std::string& extra, double tol) {
  const auto log = dir + "/torchrun-" + driver + ".log";
  EXPECT_EQ(xft::test::driver(driver, args(dir + "/plain", extra), dir + "/plain-" + driver + ".log"), 0)
      << read_all(dir + "/plain-" + driver + ".log");
  EXPECT_EQ(torchrun(driver, args(dir + "/one", extra), 1, log), 0) << read_all(log);
  const std::vector<std::string> stages =
      driver == "xft" ? std::vector<std::string>{"xft/moe", "xft/merge"} : std::vector<std::string>{driver};
  for (const auto& st : stages) {
    expect_same_curves(dir + "/plain/" + st + "/metrics.jsonl", dir + "/one/" + st + "/metrics.jsonl", tol);
    expect_same_model(dir + "/plain/" + st + "/final", dir + "/one/" + st + "/final", tol);
    const auto row = first_metrics_row(dir + "/one/" + st + "/metrics.jsonl");
    EXPECT_EQ(row.value("world_size", 0), 1) << row.dump();
    EXPECT_GE(row.value("buckets", int64_t{0}), 1) << row.dump();
  }
  return read_all(log);
}

}  // namespace

TEST(Distributed, ConfigAndLaunchErrorsAreClear) {
  xft::test::expect_error(
      [] {
        DistributedConfig::from_json({{"backend", "mpi"}}, "c.json");
      },
      {"c.json", "backend", "gloo"});
  xft::test::expect_error(
      [] {
        DistributedConfig::from_json({{"expert_paralel", 2}}, "c.json");
      },
      {"c.json", "expert_paralel", "known: backend, bucket_mb, expert_parallel, shard_merge, timeout_s"});
  xft::test::expect_error(
      [] {
        DistributedConfig::from_json({{"timeout_s", "60"}}, "c.json");
      },
      {"c.json", "distributed.timeout_s", "number", "string"});
  xft::test::expect_error([] { DistributedConfig::from_json(nlohmann::json::array(), "c.json"); },
                          {"c.json", "distributed section must be an object"});
  xft::test::expect_error([] { DistributedConfig::from_json({{"timeout_s", 0}}, "c.json"); }, {"timeout_s"});
  ::setenv("WORLD_SIZE", "2", 1);
  ::unsetenv("MASTER_ADDR");
  xft::test::expect_error([] { LaunchEnv::from_environment(); }, {"WORLD_SIZE", "MASTER_ADDR"});
  ::setenv("RANK", "2", 1);
  xft::test::expect_error([] { LaunchEnv::from_environment(); }, {"RANK", "WORLD_SIZE"});
  ::setenv("RANK", "x", 1);
  xft::test::expect_error([] { LaunchEnv::from_environment(); }, {"RANK", "'x'"});
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  // Without a launcher: one process, collectives leave tensors alone.
  auto d = Distributed::from_environment({}, "cpu");
  EXPECT_FALSE(d->active());
  EXPECT_EQ(d->device_for("cuda"), "cuda");
  std::vector<torch::Tensor> v{torch::ones({3})};
  d->all_reduce_sum(v, Distributed::Group::kWorld, "test");
  EXPECT_TRUE(v[0].equal(torch::ones({3})));
  // expert_parallel must divide the world.
  LaunchEnv env;
  env.world = 3;
  env.master_addr = "127.0.0.1";
  env.master_port = free_port();
  DistributedConfig c;
  c.expert_parallel = 2;
  xft::test::expect_error([&] { Distributed::init(env, c, "cpu"); }, {"expert_parallel", "divide", "3"});
}

// Data parallel SFT (Adafactor, clipping, accumulation) on 2 ranks under torchrun and on 4
// launched by hand equals the single-process run: losses and gradient norms at every step, and the final model.
TEST(Distributed, DataParallelSftMatchesSingleProcess) {
  const auto dir = xft::test::scratch_dir("dp");
  // 8 steps: the last global batch of the epoch is partial (60 examples), so two of four ranks
  // get no micro-batch in it and contribute zero gradients.
  const std::string extra =
      "--set sft_train.optimizer=adafactor --set sft_train.max_grad_norm=0.05 --set sft_train.max_steps=8";
  ASSERT_EQ(xft::test::driver("sft", args(dir + "/one", extra), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(torchrun("sft", args(dir + "/two", extra), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  EXPECT_NE(read_all(dir + "/two.log").find("2 ranks, gloo"), std::string::npos) << read_all(dir + "/two.log");
  fs::create_directories(dir + "/four-logs");
  ASSERT_EQ(run_ranks("sft", args(dir + "/four", extra), 4, dir + "/four-logs"), 0);
  // Micro-batches of 4 on 4 ranks: two ranks idle in every step (the loss is a global token
  // mean, so the micro-batch size does not matter for the SFT loss).
  fs::create_directories(dir + "/idle-logs");
  ASSERT_EQ(run_ranks("sft", args(dir + "/idle", extra + " --set sft_train.micro_batch=4"), 4, dir + "/idle-logs"), 0);
  for (const auto* r : {"/two", "/four", "/idle"}) {
    expect_same_curves(dir + "/one/sft/metrics.jsonl", dir + r + "/sft/metrics.jsonl");
    expect_same_model(dir + "/one/sft/final", dir + r + "/sft/final", 1e-5);
  }
  // The step was clipped (the norm exceeds 0.05), so the distributed norm was checked too.
  EXPECT_GT(first_metrics_row(dir + "/four/sft/metrics.jsonl").at("grad_norm").get<double>(), 0.05);
  // Small buckets: most all-reduces start inside the backward (overlap), with the same result.
  ASSERT_EQ(torchrun("sft", args(dir + "/small", extra + " --set distributed.bucket_mb=0.004"), 2, dir + "/small.log"),
            0)
      << read_all(dir + "/small.log");
  expect_same_model(dir + "/one/sft/final", dir + "/small/sft/final", 1e-5);
  const auto row = first_metrics_row(dir + "/small/sft/metrics.jsonl");
  EXPECT_GT(row.at("buckets").get<int64_t>(), 5) << row.dump();
  EXPECT_GT(row.at("buckets_overlapped").get<int64_t>(), 0) << row.dump();
}

// loss_reduction micro_batch (each micro-batch's token mean, averaged, as the authors' Trainer
// did): 2 ranks under torchrun equal the single process, the last partial batch included.
TEST(Distributed, MicroBatchLossReductionDataParallelMatchesSingleProcess) {
  const auto dir = xft::test::scratch_dir("dp-micro");
  const std::string extra =
      "--set sft_train.loss_reduction=micro_batch --set sft_train.micro_batch=2 --set sft_train.max_steps=8";
  ASSERT_EQ(xft::test::driver("sft", args(dir + "/one", extra), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(torchrun("sft", args(dir + "/two", extra), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  expect_same_curves(dir + "/one/sft/metrics.jsonl", dir + "/two/sft/metrics.jsonl");
  expect_same_model(dir + "/one/sft/final", dir + "/two/sft/final", 1e-5);
  // Not the token-mean run: the rule changed the numbers.
  ASSERT_EQ(xft::test::driver("sft", args(dir + "/token", "--set sft_train.micro_batch=2 --set sft_train.max_steps=8"),
                              dir + "/token.log"),
            0);
  EXPECT_GT(std::abs(losses(dir + "/one/sft/metrics.jsonl").at(0) - losses(dir + "/token/sft/metrics.jsonl").at(0)),
            1e-6);
}

// The XFT pipeline with the routed experts split over ranks: the MoE stage (expert parallel
// 2 of 2; 4 of 4 with fewer micro-batches than ranks; 2 of 4, where pairs of ranks hold the
// same experts) and the merge (data parallel; sharded on 4 of 4) equal the single-process run.
TEST(Distributed, ExpertParallelXftMatchesSingleProcess) {
  const auto dir = xft::test::scratch_dir("ep");
  // 4 routed experts (divisible by 2 and 4), top-3 with the shared one.
  const std::string moe = "--set moe.num_experts=5 --set moe.top_k=3 --set moe_train.max_grad_norm=0.5";
  // Micro-batches of 4 make two per step: two of four ranks then repeat one at zero weight. The
  // load-balancing loss is a per-micro-batch statistic, so that case has its own reference.
  const std::string big = " --set moe_train.micro_batch=4";
  for (const auto& [name, extra] : {std::pair{"one", ""}, std::pair{"one-mb4", big.c_str()}})
    ASSERT_EQ(xft::test::driver("xft", args(dir + "/" + name, moe + extra), dir + "/" + name + ".log"), 0)
        << read_all(dir + "/" + name + ".log");
  struct Case {
    const char* name;
    int world, ep;
    std::string extra, reference;
  };
  // On ep4 the merge also runs sharded (5 experts over 4 ranks: 2 + 1 + 1 + 1) with 2 micro-batches
  // for 4 ranks, so two ranks take part in the merge's all-reduces with zero-weight passes.
  const std::string sharded_merge = " --set distributed.shard_merge=true --set merge_train.micro_batch=4";
  const Case cases[] = {
      {"ep2", 2, 2, "", "one"}, {"ep4", 4, 4, big + sharded_merge, "one-mb4"}, {"ep2x2", 4, 2, "", "one"}};
  for (const auto& c : cases) {
    const auto run = dir + "/" + c.name;
    const auto one = dir + "/" + c.reference;
    fs::create_directories(run + "-logs");
    ASSERT_EQ(
        run_ranks("xft", args(run, moe + " --set distributed.expert_parallel=" + std::to_string(c.ep) + " " + c.extra),
                  c.world, run + "-logs"),
        0)
        << c.name;
    EXPECT_NE(read_all(run + "-logs/rank0.log").find("expert_parallel " + std::to_string(c.ep)), std::string::npos);
    expect_same_curves(one + "/xft/moe/metrics.jsonl", run + "/xft/moe/metrics.jsonl");
    expect_same_model(one + "/xft/moe/final", run + "/xft/moe/final", 1e-5);
    expect_same_curves(one + "/xft/merge/metrics.jsonl", run + "/xft/merge/metrics.jsonl");
    expect_same_model(one + "/xft/merge/final", run + "/xft/merge/final", 1e-5);
    // The checkpoint holds whole stacks whatever the layout.
    auto ck = SafetensorsFile::open(run + "/xft/moe/checkpoints/step-00000003/trainable.safetensors");
    EXPECT_EQ(ck->entry("model.layers.0.mlp.experts.gate_proj").shape[0], 5);
  }
}

// The layout by hand: 7 routed experts (8 with the shared expert 0) over 2, 4 and 8 ranks are
// contiguous blocks, the first 7 % P one longer, and the eighth rank of 8 holds none; each
// rank's slice of a stack is the shared row then its own, and tokens go to the holder.
TEST(Distributed, UnevenExpertLayout) {
  const BlockSplit three(7, 3);
  EXPECT_EQ(std::vector<int64_t>({three.size(0), three.size(1), three.size(2)}), std::vector<int64_t>({3, 2, 2}));
  EXPECT_EQ(std::vector<int64_t>({three.begin(0), three.begin(1), three.begin(2)}), std::vector<int64_t>({0, 3, 5}));
  EXPECT_EQ(three.largest(), 3);
  auto single = std::make_shared<const Distributed>();
  const auto stack = torch::arange(8, torch::kFloat).view({8, 1, 1});
  const auto routed = torch::arange(1, 8, torch::kInt64);
  struct Case {
    int P;
    std::vector<std::vector<float>> rows;  // per rank: the global experts of its local stack
    std::vector<int64_t> holder;           // of experts 1..7
  };
  const Case cases[] = {
      {2, {{0, 1, 2, 3, 4}, {0, 5, 6, 7}}, {0, 0, 0, 0, 1, 1, 1}},
      {4, {{0, 1, 2}, {0, 3, 4}, {0, 5, 6}, {0, 7}}, {0, 0, 1, 1, 2, 2, 3}},
      {8, {{0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {0, 6}, {0, 7}, {0}}, {0, 1, 2, 3, 4, 5, 6}},
  };
  for (const auto& c : cases) {
    for (int g = 0; g < c.P; ++g) {
      const ExpertSharding sh(single, 8, 1, c.P, g);
      const auto local = sh.slice(stack).reshape(-1).contiguous();
      EXPECT_EQ(std::vector<float>(local.data_ptr<float>(), local.data_ptr<float>() + local.numel()), c.rows[g])
          << "rank " << g << " of " << c.P;
      EXPECT_EQ(sh.local_routed(), static_cast<int64_t>(c.rows[g].size()) - 1);
      EXPECT_EQ(sh.first_routed(), c.rows[g].size() > 1 ? static_cast<int64_t>(c.rows[g][1]) : 8) << g;
    }
    const auto h = ExpertSharding(single, 8, 1, c.P, 0).holder_of(routed);
    EXPECT_EQ(std::vector<int64_t>(h.data_ptr<int64_t>(), h.data_ptr<int64_t>() + h.numel()), c.holder) << c.P;
  }
  // Without a shared expert the idle rank's stack is empty (it still takes part in every collective).
  EXPECT_EQ(ExpertSharding(single, 7, 0, 8, 7).slice(torch::zeros({7, 2, 3})).sizes(), torch::IntArrayRef({0, 2, 3}));
  xft::test::expect_error([&] { ExpertSharding(single, 1, 1, 2, 0); }, {"no routed expert", "expert_parallel = 2"});
}

namespace {

// The bytes of expert stacks rank `rank` reported holding in the merge stage (its log line).
int64_t stack_bytes(const std::string& log, int rank) {
  const std::string key = "[merge] rank " + std::to_string(rank) + " holds ";
  const auto at = log.find(key);
  EXPECT_NE(at, std::string::npos) << log;
  return at == std::string::npos ? -1 : std::stoll(log.substr(at + key.size()));
}

// Every layer's merge coefficients of two runs within `tol`.
void expect_same_coefficients(const std::string& a, const std::string& b, double tol) {
  const auto x = nlohmann::json::parse(read_all(a)).at("layers"), y = nlohmann::json::parse(read_all(b)).at("layers");
  ASSERT_EQ(x.size(), y.size()) << a << " vs " << b;
  for (size_t l = 0; l < x.size(); ++l) {
    ASSERT_EQ(x[l].size(), y[l].size());
    for (size_t i = 0; i < x[l].size(); ++i)
      EXPECT_NEAR(x[l][i].get<double>(), y[l][i].get<double>(), tol) << "layer " << l << " expert " << i << " of " << b;
  }
}

}  // namespace

// 7 routed experts split unevenly: 4 + 3 over 2 ranks, 2 + 2 + 2 + 1 over 4, over 2 of 4
// (pairs of ranks holding blocks of different sizes reduce apart) and 1 x 7 over 8, the eighth
// rank holding none (and, with 4 micro-batches for 8 ranks, half the ranks running zero-weight
// passes): the MoE stage equals the single-process run. The merge after it (3 steps) runs
// sharded on 2, 4 and 8 ranks (8 experts: 4 + 4, 2 x 4, 1 x 8) and data parallel with whole
// stacks on the 2-of-4 run; each equals the single-process merge: losses, gradient norms (a
// gradient counted twice would show there, AdamW's step would hide it), coefficients and the
// exported dense model.
TEST(Distributed, UnevenExpertParallelXftMatchesSingleProcess) {
  const auto dir = xft::test::scratch_dir("ep-uneven");
  const std::string moe =
      "--set moe.num_experts=8 --set moe.top_k=3 --set moe_train.max_grad_norm=0.5 "
      "--set merge_train.max_steps=3";
  ASSERT_EQ(xft::test::driver("xft", args(dir + "/one", moe), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  struct Case {
    const char* name;
    int world, ep;
    bool shard_merge;
  };
  for (const auto& c :
       {Case{"ep2", 2, 2, true}, Case{"ep4", 4, 4, true}, Case{"ep2x2", 4, 2, false}, Case{"ep8", 8, 8, true}}) {
    const auto run = dir + "/" + c.name;
    fs::create_directories(run + "-logs");
    ASSERT_EQ(run_ranks("xft",
                        args(run, moe + " --set distributed.expert_parallel=" + std::to_string(c.ep) +
                                      " --set distributed.shard_merge=" + (c.shard_merge ? "true" : "false")),
                        c.world, run + "-logs"),
              0)
        << c.name;
    expect_same_curves(dir + "/one/xft/moe/metrics.jsonl", run + "/xft/moe/metrics.jsonl");
    expect_same_model(dir + "/one/xft/moe/final", run + "/xft/moe/final", 1e-5);
    expect_same_curves(dir + "/one/xft/merge/metrics.jsonl", run + "/xft/merge/metrics.jsonl");
    expect_same_coefficients(dir + "/one/xft/merge/coefficients.json", run + "/xft/merge/coefficients.json", 1e-5);
    expect_same_model(dir + "/one/xft/merge/init", run + "/xft/merge/init", 1e-5);
    expect_same_model(dir + "/one/xft/merge/final", run + "/xft/merge/final", 1e-5);
    // Sharded, rank 1 of 2 holds 4 of the 8 experts' rows (rank 1 of 4: 2); whole stacks otherwise.
    const auto log1 = read_all(run + "-logs/rank1.log");
    EXPECT_EQ(log1.find("(sharded)") != std::string::npos, c.shard_merge) << log1;
    if (c.shard_merge) {
      EXPECT_EQ(stack_bytes(log1, 1) * c.world, stack_bytes(read_all(dir + "/one.log"), 0)) << log1;
    }
    auto ck = SafetensorsFile::open(run + "/xft/moe/checkpoints/step-00000003/trainable.safetensors");
    EXPECT_EQ(ck->entry("model.layers.0.mlp.experts.gate_proj").shape[0], 8);
    auto opt = SafetensorsFile::open(run + "/xft/moe/checkpoints/step-00000003/optimizer.safetensors");
    EXPECT_EQ(opt->entry("model.layers.0.mlp.experts.down_proj/exp_avg").shape[0], 8);
  }
}

// Without a shared expert (plain upcycling, Table 4's "- Shared Expert", and the learned soup
// to merge it), 7 experts over 8 ranks leave the eighth with empty stacks in the MoE stage and
// in the sharded merge: it still takes part in every collective, and both stages equal the
// single-process run.
TEST(Distributed, IdleExpertRankWithEmptyStacksMatchesSingleProcess) {
  const auto dir = xft::test::scratch_dir("ep-idle");
  const std::string moe =
      "--set moe.num_experts=7 --set moe.top_k=2 --set moe.routing=vanilla "
      "--set moe.shared_expert=false --set merge.fixed_shared_rate=false --set merge.shared_rate=0.5 "
      "--set merge_train.max_steps=2";
  ASSERT_EQ(xft::test::driver("xft", args(dir + "/one", moe), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  const auto run = dir + "/ep8";
  fs::create_directories(run + "-logs");
  ASSERT_EQ(run_ranks("xft", args(run, moe + " --set distributed.expert_parallel=8 --set distributed.shard_merge=true"),
                      8, run + "-logs"),
            0);
  EXPECT_EQ(stack_bytes(read_all(run + "-logs/rank7.log"), 7), 0);
  for (const auto* st : {"/xft/moe", "/xft/merge"}) {
    expect_same_curves(dir + "/one" + st + "/metrics.jsonl", run + st + "/metrics.jsonl");
    expect_same_model(dir + "/one" + st + "/final", run + st + "/final", 1e-5);
  }
  expect_same_coefficients(dir + "/one/xft/merge/coefficients.json", run + "/xft/merge/coefficients.json", 1e-5);
}

// bf16 weights (gradients and their all-reduce in bf16): the 2-rank run stays within bf16
// rounding of the single-process one.
TEST(Distributed, Bf16WeightsDataParallel) {
  const auto dir = xft::test::scratch_dir("bf16");
  const std::string extra = "--set sft_train.precision=bf16";
  ASSERT_EQ(xft::test::driver("sft", args(dir + "/one", extra), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(torchrun("sft", args(dir + "/two", extra), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  const auto x = losses(dir + "/one/sft/metrics.jsonl"), y = losses(dir + "/two/sft/metrics.jsonl");
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 0.02) << "step " << i + 1;
  expect_same_model(dir + "/one/sft/final", dir + "/two/sft/final", 2e-3);
}

// EWA on 2 ranks: the pull toward the experts' mean runs identically on every rank (the trainer
// checks the replicas bitwise) and the result equals the single-process run.
TEST(Distributed, EwaMatchesSingleProcessOnEveryRank) {
  const auto dir = xft::test::scratch_dir("ewa");
  ASSERT_EQ(xft::test::driver("ewa", args(dir + "/one"), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  ASSERT_EQ(torchrun("ewa", args(dir + "/two"), 2, dir + "/two.log"), 0) << read_all(dir + "/two.log");
  expect_same_curves(dir + "/one/ewa/metrics.jsonl", dir + "/two/ewa/metrics.jsonl");
  expect_same_model(dir + "/one/ewa/final", dir + "/two/ewa/final", 1e-5);
}

// A 2-rank run interrupted after step 2 resumes with 2 ranks to the uninterrupted result; a
// different world size is refused. The 7 routed experts are split 4 + 3, so the checkpoint's
// whole stacks and optimizer state are cut into uneven blocks on the way back.
TEST(Distributed, ResumeWithTheSameWorldSize) {
  const auto dir = xft::test::scratch_dir("resume");
  // In loss_reduction micro_batch (the token mode's resume is tested in test_train).
  const auto a = args(dir + "/run",
                      "--set distributed.expert_parallel=2 --set moe.num_experts=8 --set moe.top_k=3 "
                      "--set moe_train.loss_reduction=micro_batch");
  fs::create_directories(dir + "/logs1");
  ASSERT_EQ(run_ranks("xft", a, 2, dir + "/logs1"), 0);
  const auto done = dir + "/done";
  fs::create_directories(done);
  fs::copy(dir + "/run/xft/moe/final", done + "/moe");
  // Back to just after step 2: the later checkpoint and everything after the MoE stage go.
  for (const auto* p : {"/run/xft/moe/final", "/run/xft/moe/checkpoints/step-00000003", "/run/xft/merge"})
    xft::remove_tree(dir + p);
  EXPECT_EQ(xft::test::driver("xft", a + " --resume", dir + "/one.log"), 1);
  EXPECT_NE(read_all(dir + "/one.log").find("same world size"), std::string::npos) << read_all(dir + "/one.log");
  fs::create_directories(dir + "/logs2");
  ASSERT_EQ(run_ranks("xft", a + " --resume", 2, dir + "/logs2"), 0);
  EXPECT_NE(read_all(dir + "/logs2/rank0.log").find("resumed at step 2"), std::string::npos);
  expect_same_model(done + "/moe", dir + "/run/xft/moe/final", 0.0);
}

// torchrun --max-restarts=1: a worker killed after the step-2 checkpoint makes the agent restart
// the group, which resumes by itself (no --resume on the command line) from the newest whole
// checkpoint and ends where the uninterrupted single-process run ends.
TEST(Distributed, TorchrunRestartResumesFromTheNewestCheckpoint) {
  const auto dir = xft::test::scratch_dir("restart");
  const std::string extra = "--set sft_train.max_steps=40 --set sft_train.save_every=2";
  ASSERT_EQ(xft::test::driver("sft", args(dir + "/one", extra), dir + "/one.log"), 0) << read_all(dir + "/one.log");
  const auto run = dir + "/elastic", log = dir + "/elastic.log", rc = dir + "/elastic.rc";
  const std::string cmd = xft::test::env_or_empty("XFT_PYTHON") +
                          " -m torch.distributed.run --standalone --nproc-per-node=2 --max-restarts=1 --no-python " +
                          bin("sft") + args(run, extra) + " > " + log + " 2>&1; echo $? > " + rc;
  ASSERT_EQ(std::system(("sh -c '" + cmd + "' &").c_str()), 0);
  const auto ck = run + "/sft/checkpoints/step-00000002";
  for (int i = 0; i < 6000 && !fs::exists(ck); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(fs::exists(ck)) << read_all(log);
  // One worker (its command line starts with the driver's path; the agent's with python's).
  EXPECT_EQ(xft::test::run("pkill -9 -o -f \"^" + bin("sft") + " .*run_dir=" + run + " \""), 0);
  for (int i = 0; i < 12000 && (!fs::exists(rc) || read_all(rc).empty()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(read_all(rc), "0\n") << read_all(log);
  const auto out = read_all(log);
  EXPECT_NE(out.find("restart 1 of the run: resuming"), std::string::npos) << out;
  EXPECT_NE(out.find("resumed at step"), std::string::npos) << out;
  expect_same_curves(dir + "/one/sft/metrics.jsonl", run + "/sft/metrics.jsonl");
  expect_same_model(dir + "/one/sft/final", run + "/sft/final", 1e-5);
}

// A rank that dies (SIGKILL) or hangs (SIGSTOP) mid-run: the others stop within the timeout
// with an error naming the collective, and every checkpoint on disk is whole.
TEST(Distributed, DeadOrHungRankIsAClearErrorWithinTheTimeout) {
  for (const int sig : {SIGKILL, SIGSTOP}) {
    const auto dir = xft::test::scratch_dir(sig == SIGKILL ? "dead" : "hung");
    const auto a = args(dir + "/run",
                        "--set sft_train.max_steps=100000 --set sft_train.save_every=2 "
                        "--set sft_train.schedule=constant --set distributed.timeout_s=5");
    auto ranks = spawn("sft", a, 2, dir);
    const auto ck = dir + "/run/sft/checkpoints/step-00000002";
    for (int i = 0; i < 6000 && !fs::exists(ck); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(fs::exists(ck)) << read_all(ranks[0].log);
    ::kill(ranks[1].pid, sig);
    const auto t0 = std::chrono::steady_clock::now();
    const bool stopped = wait_all({ranks[0]}, 60);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::kill(ranks[1].pid, SIGKILL);
    ::kill(ranks[1].pid, SIGCONT);
    ASSERT_TRUE(stopped) << "rank 0 still running " << waited << " s after rank 1 got signal " << sig;
    EXPECT_LT(waited, 30.0);
    EXPECT_EQ(ranks[0].rc(), 1);
    const auto log = read_all(ranks[0].log);
    EXPECT_NE(log.find("rank 0: "), std::string::npos) << log;
    EXPECT_NE(log.find("Another rank died, hung or left the run"), std::string::npos) << log;
    // Whole checkpoints only, each loadable.
    for (const auto& e : fs::directory_iterator(dir + "/run/sft/checkpoints")) {
      const auto n = e.path().filename().string();
      EXPECT_EQ(n.rfind("step-", 0), 0u) << n;
      EXPECT_NO_THROW(SafetensorsFile::open(e.path().string() + "/trainable.safetensors")) << n;
      EXPECT_TRUE(fs::exists(e.path() / "trainer.json")) << n;
    }
  }
}

// One process under torchrun (Gloo) equals the plain run bitwise, for SFT and the XFT pipeline:
// the distributed path itself changes no number.
TEST(Distributed, OneProcessUnderTorchrunEqualsThePlainRun) {
  const auto dir = xft::test::scratch_dir("world1");
  const auto log = expect_world_of_one_is_the_plain_run(
      dir, "sft", "--set sft_train.max_steps=4 --set sft_train.max_grad_norm=0.05 --set distributed.bucket_mb=0.004",
      0.0);
  EXPECT_NE(log.find("1 ranks, gloo"), std::string::npos) << log;
  const auto row = first_metrics_row(dir + "/one/sft/metrics.jsonl");
  EXPECT_GT(row.at("buckets_overlapped").get<int64_t>(), 0) << row.dump();
  expect_world_of_one_is_the_plain_run(dir, "xft", "", 0.0);
}

// On a GPU: the same with NCCL (a communicator of one rank: its group creation, blocking waits
// and the all-reduce on the GPU's streams from inside the backward), for SFT and the XFT
// pipeline. GPU kernels may sum in another order from run to run, hence 1e-5.
TEST(Distributed, NcclOneProcessUnderTorchrunMatchesThePlainRun) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA GPU";
  const auto dir = xft::test::scratch_dir("nccl1");
  std::string extra = "--set sft_train.max_steps=4 --set distributed.bucket_mb=0.004";
  for (const auto* s : {"sft_train", "moe_train", "merge_train", "ewa_train"})
    extra += std::string(" --set ") + s + ".device=cuda";
  for (const auto* d : {"sft", "xft"}) {
    const auto log = expect_world_of_one_is_the_plain_run(dir, d, extra, 1e-5);
    EXPECT_NE(log.find("1 ranks, nccl"), std::string::npos) << log;
  }
}

// NCCL, on a machine with two GPUs or more: data-parallel SFT and the expert-parallel XFT
// pipeline on 2 GPUs (one per rank, bound from LOCAL_RANK) against one GPU. The GPU sums run in
// another order in each layout, hence 1e-4 rather than the CPU runs' 1e-5.
TEST(Distributed, NcclOnTwoGpusMatchesOneGpu) {
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs 2 CUDA GPUs (NCCL runs between GPUs)";
  const auto dir = xft::test::scratch_dir("nccl");
  std::string extra = "--set moe.num_experts=5 --set moe.top_k=3 --set sft_train.max_grad_norm=0.05";
  for (const auto* s : {"sft_train", "moe_train", "merge_train", "ewa_train"})
    extra += std::string(" --set ") + s + ".device=cuda";
  for (const auto* d : {"sft", "xft"})
    ASSERT_EQ(xft::test::driver(d, args(dir + "/one", extra), dir + "/one-" + d + ".log"), 0)
        << read_all(dir + "/one-" + d + ".log");
  ASSERT_EQ(torchrun("sft", args(dir + "/dp", extra), 2, dir + "/dp.log"), 0) << read_all(dir + "/dp.log");
  EXPECT_NE(read_all(dir + "/dp.log").find("2 ranks, nccl"), std::string::npos) << read_all(dir + "/dp.log");
  expect_same_curves(dir + "/one/sft/metrics.jsonl", dir + "/dp/sft/metrics.jsonl", 1e-4);
  expect_same_model(dir + "/one/sft/final", dir + "/dp/sft/final", 1e-4);
  ASSERT_EQ(torchrun("xft", args(dir + "/ep", extra + " --set distributed.expert_parallel=2"), 2, dir + "/ep.log"), 0)
      << read_all(dir + "/ep.log");
  expect_same_curves(dir + "/one/xft/moe/metrics.jsonl", dir + "/ep/xft/moe/metrics.jsonl", 1e-4);
  expect_same_model(dir + "/one/xft/moe/final", dir + "/ep/xft/moe/final", 1e-4);
  expect_same_model(dir + "/one/xft/merge/final", dir + "/ep/xft/merge/final", 1e-4);
}
