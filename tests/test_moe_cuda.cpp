// The CUDA MoE path (kernels/moe_routing.cu, kernels/moe_permute.cu, src/cuda/moe_cuda.cpp and the
// MoE side of it, src/moe/routing_cuda.cpp and src/moe/dispatch_cuda.cpp), in the
// spirit of llama.cpp's test-backend-ops: every kernel and the whole layer against the CPU
// reference (route on the CPU, moe_combine_naive in fp64), forwards and gradients, experts that
// get no token, skewed routing, token counts that are multiples of nothing, bitwise-identical
// reruns, and the layer's forward + backward captured in a CUDA graph (no host sync).
// The GPU tests skip without a visible GPU; the reference index build is tested on the CPU.
#include <torch/cuda.h>

#include "cuda/cuda_ops.h"
#include "cuda/moe_cuda.h"
#include "moe/dispatch_cuda.h"
#include "moe/routing_cuda.h"
#include "moe_reference.h"
#include "test_util.h"
#include "xft/moe/moe_layer.h"

#ifdef XFT_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

using namespace xft;
using xft::test::expect_error;

namespace {

const int64_t kTokenCounts[] = {1, 7, 1000, 4099};

bool gpu() { return torch::cuda::is_available() && cuda_ops_available(); }
#define REQUIRE_GPU() \
  if (!gpu()) GTEST_SKIP() << "no CUDA GPU visible, or xft built without CUDA kernels"

using xft::test::config;

// ||got - want|| / ||want|| in fp64 on the CPU (0 when both are 0).
double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.detach().to(torch::kCPU, torch::kFloat64), w = want.detach().to(torch::kCPU, torch::kFloat64);
  const double den = w.norm().item<double>(), num = (g - w).norm().item<double>();
  return den == 0.0 ? num : num / den;
}

// The index build's reference: a sequential stable counting sort of the flattened (t, s) pairs.
struct RefPermutation {
  torch::Tensor row_to_token, token_slot_to_row, offsets_end;  // int32, CPU
};
RefPermutation reference_permutation(const torch::Tensor& experts_TS, int64_t E) {
  auto ids = experts_TS.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t S = ids.size(1), M = ids.numel();
  const auto* id = ids.data_ptr<int64_t>();
  std::vector<int64_t> next(E, 0);
  for (int64_t i = 0; i < M; ++i) ++next[id[i]];
  auto ends = torch::empty({E}, torch::kInt32);
  int64_t acc = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t count = next[e];
    next[e] = acc;
    acc += count;
    ends[e] = static_cast<int32_t>(acc);
  }
  auto r2t = torch::empty({M}, torch::kInt32), ts2r = torch::empty({M}, torch::kInt32);
  for (int64_t i = 0; i < M; ++i) {
    const int64_t row = next[id[i]]++;
    r2t.data_ptr<int32_t>()[row] = static_cast<int32_t>(i / S);
    ts2r.data_ptr<int32_t>()[i] = static_cast<int32_t>(row);
  }
  return {r2t, ts2r, ends};
}

// Distinct experts per token drawn from `pool` (all E experts when empty); the pool makes
// skewed routing with idle experts.
torch::Tensor random_experts(int64_t T, int64_t S, int64_t E, std::vector<int64_t> pool = {}) {
  if (pool.empty()) {
    for (int64_t e = 0; e < E; ++e) pool.push_back(e);
  }
  auto table = torch::tensor(pool, torch::kInt64);
  return table
      .index_select(
          0, torch::rand({T, static_cast<int64_t>(pool.size())}).argsort(int64_t{-1}).narrow(1, 0, S).reshape(-1))
      .view({T, S});
}

// Two expert stacks with the same values: one in `dtype` on `device`, one fp64 on the CPU
// holding exactly the rounded values.
std::pair<Experts, Experts> twin_experts(int64_t E, int64_t D, int64_t F, torch::Device device, torch::Dtype dtype) {
  Experts a(E, D, F), b(E, D, F);
  torch::NoGradGuard ng;
  a->to(device, dtype);
  b->gate_proj.set_data(a->gate_proj.to(torch::kCPU, torch::kFloat64));
  b->up_proj.set_data(a->up_proj.to(torch::kCPU, torch::kFloat64));
  b->down_proj.set_data(a->down_proj.to(torch::kCPU, torch::kFloat64));
  return {a, b};
}

torch::Device cuda() { return torch::Device(torch::kCUDA, 0); }

}  // namespace

// ---- host logic (runs everywhere) -------------------------------------------------------------

TEST(MoePermutationReference, MatchesMoeCombineStableArgsortOrder) {
  torch::manual_seed(1);
  for (int64_t T : kTokenCounts) {
    for (int64_t S : {1, 5}) {
      auto ids = random_experts(T, S, 8, T % 2 ? std::vector<int64_t>{1, 2, 5, 6, 7} : std::vector<int64_t>{});
      auto ref = reference_permutation(ids, 8);
      // moe_combine's ordering: stable argsort of the flattened ids, token = flat index / S.
      auto order = ids.reshape(-1).argsort(/*stable=*/true);
      EXPECT_TRUE(torch::equal(ref.row_to_token.to(torch::kInt64), order.div(S, "floor"))) << T << " " << S;
      auto inverse = torch::empty_like(order).scatter_(0, order, torch::arange(order.numel()));
      EXPECT_TRUE(torch::equal(ref.token_slot_to_row.to(torch::kInt64), inverse)) << T << " " << S;
      EXPECT_TRUE(torch::equal(ref.offsets_end.to(torch::kInt64), ids.reshape(-1).bincount({}, 8).cumsum(0)));
    }
  }
}

TEST(MoeCudaHost, CpuTensorsStayOnTheAtenPath) {
  auto z = torch::randn({3, 7});
  EXPECT_FALSE(route_cuda_supports(z, config("xft", 8, 6)));
  Experts experts(8, 16, 24);
  EXPECT_FALSE(moe_combine_cuda_supports(*experts, torch::randn({3, 16}), torch::zeros({3, 5}, torch::kInt64)));
  EXPECT_FALSE(moe_grouped_path_available(*experts, torch::randn({3, 16})));
  expect_error([&] { route_cuda(z, config("xft", 8, 6)); }, {"route_cuda"});
  expect_error([&] { moe_permutation_cuda(torch::zeros({3, 5}, torch::kInt64), 8); }, {"moe_permutation_cuda"});
}

#ifdef XFT_WITH_CUDA
// The slot limit of the gather's backward is checked before any device work, so this runs
// without a GPU: a permutation of one token with 129 slots (CPU tensors; never read).
TEST(MoeCudaHost, GatherRejectsMoreSlotsThanItsBackwardTakes) {
  const int64_t S = kMoeCudaMaxSlots + 1;
  MoePermutation perm{torch::zeros({S}, torch::kInt32), torch::zeros({S}, torch::kInt32),
                      torch::full({8}, S, torch::kInt32), 1, S};
  expect_error(
      [&] {
        moe_gather_rows_cuda(torch::zeros({1, 16}), perm);
      },
      {"moe_gather_rows_cuda", "S = 129", "1 to 128"});
}
#endif

// ---- routing kernel ---------------------------------------------------------------------------

// A routing rule the kernel does not implement stays off it: route() then takes the ATen path
// (and refuses a value outside the enum there) instead of the kernel running another rule.
TEST(MoeCudaRouting, ARuleTheKernelDoesNotKnowIsRefused) {
  REQUIRE_GPU();
  auto c = config("xft", 8, 6);
  c.routing = static_cast<RoutingMode>(7);
  const auto z = torch::randn({4, 7}, torch::TensorOptions().device(cuda()));
  EXPECT_FALSE(route_cuda_supports(z, c));
  const auto unknown = static_cast<kernels::RouteMode>(7);
  EXPECT_FALSE(route_logits_cuda_supports(z, 5, unknown));
  expect_error([&] { route_logits_cuda(z, 5, unknown, false); }, {"route_cuda", "mode 7"});
  expect_error([&] { route(z, c); }, {"route", "routing mode 7"});
}

TEST(MoeCudaRouting, ForwardAndBackwardMatchCpuForEveryMode) {
  REQUIRE_GPU();
  struct Mode {
    std::string name;
    int64_t N, K;
    bool renorm;
  };
  // R = 7, 8, 16, 64 and, for every mode, R = 40 or 41 with k = 35 or 36: lanes whose second
  // register (experts 32..63) is partly filled, and rounds 32.. of the top-k in v1.
  const Mode modes[] = {{"xft", 8, 6, false},       {"shared_no_norm", 8, 6, false},
                        {"vanilla", 8, 2, false},   {"vanilla", 16, 4, true},
                        {"xft", 65, 9, false},      {"vanilla", 64, 33, true},
                        {"xft", 41, 36, false},     {"shared_no_norm", 41, 36, false},
                        {"vanilla", 41, 36, false}, {"vanilla", 41, 36, true}};
  for (const auto& m : modes) {
    for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      for (int64_t T : kTokenCounts) {
        const auto c = config(m.name, m.N, m.K, m.renorm);
        SCOPED_TRACE(m.name + " N" + std::to_string(m.N) + " " + std::string(c10::toString(dtype)) + " T" +
                     std::to_string(T));
        // Multiples of 1/8: distinct logits are far apart, equal ones tie exactly on both devices.
        auto z = (torch::randint(-24, 24, {T, c.num_routed()}) / 8.0).to(dtype);
        auto zc = z.clone().requires_grad_(true), zg = z.to(cuda()).requires_grad_(true);
        auto want = route(zc, c);
        auto got = route_cuda_full(zg, c);
        EXPECT_TRUE(torch::equal(got.routing.experts_TS.cpu(), want.experts_TS));
        EXPECT_TRUE(torch::equal(got.experts_TS_i32.cpu().to(torch::kInt64), want.experts_TS));
        EXPECT_TRUE(torch::equal(got.counts_N.cpu().to(torch::kInt64), want.experts_TS.reshape(-1).bincount({}, m.N)));
        EXPECT_LE(rel_err(got.routing.weights_TS, want.weights_TS), 1e-6);
        EXPECT_LE(rel_err(got.routing.probs_TR, want.probs_TR), 1e-6);
        EXPECT_EQ(got.routing.weights_TS.scalar_type(), torch::kFloat32);
        // Gradients from the weights and the probabilities (an aux loss), together and alone.
        auto gw = torch::randn_like(want.weights_TS), gp = torch::randn_like(want.probs_TR);
        const double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
        for (int which = 0; which < 3; ++which) {
          auto loss = [&](const Routing& r, torch::Device d) {
            auto l = torch::zeros({}, r.weights_TS.options());
            if (which != 1) l = l + (r.weights_TS * gw.to(d)).sum();
            if (which != 2) l = l + (r.probs_TR * gp.to(d)).sum();
            return l;
          };
          auto dz_want = torch::autograd::grad({loss(want, torch::kCPU)}, {zc}, {}, true)[0];
          auto dz_got = torch::autograd::grad({loss(got.routing, cuda())}, {zg}, {}, true)[0];
          EXPECT_EQ(dz_got.scalar_type(), dtype);
          EXPECT_LE(rel_err(dz_got, dz_want), tol) << "gradient case " << which;
        }
      }
    }
  }
}

TEST(MoeCudaRouting, TiesGoToTheLowerIndexAndRerunsAreBitwiseEqual) {
  REQUIRE_GPU();
  auto z = torch::tensor({{0.0, 1.0, 0.0, 1.0, 0.0}, {2.0, 2.0, 2.0, 2.0, 2.0}}).to(cuda());
  auto r = route(z, config("xft", 6, 4));
  EXPECT_TRUE(torch::equal(r.experts_TS.cpu(), torch::tensor({{0, 2, 4, 1}, {0, 1, 2, 3}}, torch::kInt64)));
  auto v = route(z, config("vanilla", 5, 3));
  EXPECT_TRUE(torch::equal(v.experts_TS[0].cpu(), torch::tensor({1, 3, 0}, torch::kInt64)));

  auto big = torch::randn({4099, 7}, cuda()).requires_grad_(true);
  auto run = [&] {
    auto rr = route(big, config("xft", 8, 6));
    auto g = torch::autograd::grad({(rr.weights_TS * rr.weights_TS).sum() + rr.probs_TR.pow(3).sum()}, {big})[0];
    return std::vector<torch::Tensor>{rr.weights_TS.detach(), rr.probs_TR.detach(), g};
  };
  auto a = run(), b = run();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
}

namespace {
// Logits in eighths (exact ties), then NaN, -inf and +inf sprinkled in; row 0 all NaN, row 1
// all -inf, row 2 all +inf, row 3 NaN and -inf only.
torch::Tensor non_finite_logits(int64_t T, int64_t R) {
  auto z = torch::randint(-24, 24, {T, R}) / 8.0;
  auto u = torch::rand({T, R});
  z = torch::where(u < 0.2, torch::full({}, std::nan("")), z);
  z = torch::where((u >= 0.2) & (u < 0.3), torch::full({}, -INFINITY), z);
  z = torch::where((u >= 0.3) & (u < 0.35), torch::full({}, INFINITY), z);
  z[0].fill_(std::nan(""));
  z[1].fill_(-INFINITY);
  z[2].fill_(INFINITY);
  z[3].copy_(torch::where(torch::arange(R) % 2 == 0, torch::full({}, std::nan("")), torch::full({}, -INFINITY)));
  return z;
}
}  // namespace

// routing.h's rule for non-finite logits (clamp to the finite floats, NaN to the lowest) on
// both paths: the GPU gives the CPU's ids, distinct per token, and finite weights and gradients.
TEST(MoeCudaRouting, NonFiniteLogitsRouteAsOnTheCpu) {
  REQUIRE_GPU();
  torch::manual_seed(12);
  struct Mode {
    std::string name;
    int64_t N, K;
    bool renorm;
  };
  const Mode modes[] = {{"xft", 8, 6, false},      {"xft", 41, 36, false},    {"shared_no_norm", 41, 36, false},
                        {"vanilla", 41, 36, true}, {"vanilla", 64, 5, false}, {"xft", 65, 9, false}};
  for (const auto& m : modes) {
    for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      const auto c = config(m.name, m.N, m.K, m.renorm);
      SCOPED_TRACE(m.name + " N" + std::to_string(m.N) + " " + std::string(c10::toString(dtype)));
      auto z = non_finite_logits(100, c.num_routed()).to(dtype);
      auto zc = z.clone().requires_grad_(true), zg = z.to(cuda()).requires_grad_(true);
      auto want = route(zc, c);
      auto got = route_cuda(zg, c);
      ASSERT_TRUE(torch::equal(got.experts_TS.cpu(), want.experts_TS));
      auto sorted = std::get<0>(want.experts_TS.sort(-1));
      EXPECT_TRUE((sorted.diff(1, -1) > 0).all().item<bool>()) << "duplicate expert ids";
      EXPECT_TRUE(torch::isfinite(got.weights_TS).all().item<bool>());
      EXPECT_LE(rel_err(got.weights_TS, want.weights_TS), 1e-6);
      EXPECT_LE(rel_err(got.probs_TR, want.probs_TR), 1e-6);
      auto gw = torch::randn_like(want.weights_TS), gp = torch::randn_like(want.probs_TR);
      auto dz_want = torch::autograd::grad({(want.weights_TS * gw).sum() + (want.probs_TR * gp).sum()}, {zc})[0];
      auto dz_got = torch::autograd::grad(
          {(got.weights_TS * gw.to(cuda())).sum() + (got.probs_TR * gp.to(cuda())).sum()}, {zg})[0];
      EXPECT_TRUE(torch::isfinite(dz_got).all().item<bool>());
      EXPECT_LE(rel_err(dz_got, dz_want), dtype == torch::kFloat32 ? 1e-5 : 1e-2);
    }
  }
}

// ---- index build, gather, combine -------------------------------------------------------------

TEST(MoeCudaPermute, IndexBuildEqualsTheStableCountingSort) {
  REQUIRE_GPU();
  torch::manual_seed(2);
  for (int64_t T : kTokenCounts) {
    for (int64_t S : {1, 5, 6}) {
      for (int64_t E : {8, 64, 1000}) {
        for (bool skew : {false, true}) {
          if (S > E) continue;
          SCOPED_TRACE("T" + std::to_string(T) + " S" + std::to_string(S) + " E" + std::to_string(E));
          std::vector<int64_t> pool;
          if (skew) pool = {E - 1, 3, 1, 0, 5, 2};  // all the others get no token
          auto ids = random_experts(
              T, S, E, skew ? std::vector<int64_t>(pool.begin(), pool.begin() + std::max<int64_t>(S, 1)) : pool);
          if (skew) ids.narrow(1, 0, 1).fill_(E - 1);  // one hot expert takes every token
          auto want = reference_permutation(ids, E);
          auto got = moe_permutation_cuda(ids.to(cuda()), E);
          EXPECT_TRUE(torch::equal(got.row_to_token.cpu(), want.row_to_token));
          EXPECT_TRUE(torch::equal(got.token_slot_to_row.cpu(), want.token_slot_to_row));
          EXPECT_TRUE(torch::equal(got.offsets_end.cpu(), want.offsets_end));
        }
      }
    }
  }
}

TEST(MoeCudaPermute, GatherAndCombineMatchReferencesWithGradients) {
  REQUIRE_GPU();
  torch::manual_seed(3);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    for (int64_t T : kTokenCounts) {
      for (int64_t D : {64, 13}) {  // 13: rows that allow no 16-byte copies
        SCOPED_TRACE(std::string(c10::toString(dtype)) + " T" + std::to_string(T) + " D" + std::to_string(D));
        const int64_t S = 5, E = 8;
        auto ids = random_experts(T, S, E, {1, 2, 4, 6, 7});
        auto perm = moe_permutation_cuda(ids.to(cuda()), E);
        auto x = torch::randn({T, D}).to(dtype);
        auto xg = x.to(cuda()).requires_grad_(true);
        auto rows = moe_gather_rows_cuda(xg, perm);
        auto r2t = perm.row_to_token.cpu().to(torch::kInt64);
        EXPECT_TRUE(torch::equal(rows.cpu(), x.index_select(0, r2t)));  // a copy: exact
        auto grows = torch::randn({T * S, D}).to(dtype);
        auto gx = torch::autograd::grad({(rows * grows.to(cuda())).sum()}, {xg})[0];
        auto gx_want = torch::zeros({T, D}, torch::kFloat64).index_add_(0, r2t, grows.to(torch::kFloat64));
        EXPECT_LE(rel_err(gx, gx_want), dtype == torch::kFloat32 ? 1e-6 : 1e-2);

        // Combine: fp32 out = sum_s w * y[row(t, s)].
        auto y = torch::randn({T * S, D}).to(dtype);
        auto w = torch::rand({T, S});
        auto yg = y.to(cuda()).requires_grad_(true), wg = w.to(cuda()).requires_grad_(true);
        auto out = moe_combine_rows_cuda(yg, wg, perm);
        EXPECT_EQ(out.scalar_type(), torch::kFloat32);
        auto y64 = y.to(torch::kFloat64).requires_grad_(true), w64 = w.to(torch::kFloat64).requires_grad_(true);
        auto ts2r = perm.token_slot_to_row.cpu().to(torch::kInt64);
        auto want = (y64.index_select(0, ts2r).view({T, S, D}) * w64.unsqueeze(-1)).sum(1);
        EXPECT_LE(rel_err(out, want), 1e-6);
        auto go = torch::randn({T, D});
        auto g = torch::autograd::grad({(out * go.to(cuda())).sum()}, {yg, wg});
        auto g_want = torch::autograd::grad({(want * go.to(torch::kFloat64)).sum()}, {y64, w64});
        EXPECT_LE(rel_err(g[0], g_want[0]), dtype == torch::kFloat32 ? 1e-6 : 1e-2);
        EXPECT_LE(rel_err(g[1], g_want[1]), dtype == torch::kFloat32 ? 1e-5 : 1e-2);
      }
    }
  }
}

// ---- grouped products and the whole dispatch ----------------------------------------------

TEST(MoeCudaGrouped, GroupedLinearMatchesALoopAndZeroesIdleExperts) {
  REQUIRE_GPU();
  torch::manual_seed(4);
  auto [experts, ref] = twin_experts(8, 64, 96, cuda(), torch::kBFloat16);
  auto probe = torch::zeros({1, 64}, torch::TensorOptions().device(cuda()).dtype(torch::kBFloat16));
  if (!moe_grouped_path_available(*experts, probe)) GTEST_SKIP() << "at::_grouped_mm's fast path needs sm90/sm100";
  for (int64_t T : kTokenCounts) {
    auto ids = random_experts(T, 1, 8, {1, 4, 5});  // experts 0, 2, 3, 6, 7 get nothing
    auto perm = moe_permutation_cuda(ids.to(cuda()), 8);
    auto x = torch::randn({T, 64}).to(torch::kBFloat16);
    auto xr = moe_gather_rows_cuda(x.to(cuda()), perm).detach().requires_grad_(true);
    auto w = experts->gate_proj;
    auto y = grouped_linear_cuda(xr, w, perm.offsets_end);
    auto gy = torch::randn({T, 96}).to(torch::kBFloat16);
    auto g = torch::autograd::grad({(y.to(torch::kFloat32) * gy.to(cuda()).to(torch::kFloat32)).sum()}, {xr, w});
    // Reference: fp64 per-expert products on the CPU.
    auto ends = perm.offsets_end.cpu();
    auto x64 = xr.detach().cpu().to(torch::kFloat64).requires_grad_(true);
    auto w64 = ref->gate_proj.detach().clone().requires_grad_(true);
    std::vector<torch::Tensor> parts;
    int64_t begin = 0;
    for (int64_t e = 0; e < 8; ++e) {
      const int64_t end = ends[e].item<int64_t>();
      parts.push_back(torch::linear(x64.narrow(0, begin, end - begin), w64[e]));
      begin = end;
    }
    auto want = torch::cat(parts);
    auto g_want = torch::autograd::grad({(want * gy.to(torch::kFloat64)).sum()}, {x64, w64});
    EXPECT_LE(rel_err(y, want), 1e-2) << T;
    EXPECT_LE(rel_err(g[0], g_want[0]), 1e-2) << T;
    EXPECT_LE(rel_err(g[1], g_want[1]), 1e-2) << T;
    for (int64_t e : {0, 2, 3, 6, 7}) EXPECT_EQ(g[1][e].abs().max().item<double>(), 0.0) << "idle expert " << e;
  }
}

// Every bad offsets_end is refused before any product, so this needs a GPU but not sm90.
TEST(MoeCudaGrouped, GroupedLinearRejectsBadOffsets) {
  REQUIRE_GPU();
  const auto bf16 = torch::TensorOptions().device(cuda()).dtype(torch::kBFloat16);
  auto x = torch::randn({10, 16}, bf16);
  auto w = torch::randn({4, 8, 16}, bf16);
  auto offs = [](std::vector<int32_t> v) { return torch::tensor(v, torch::kInt32).to(cuda()); };
  expect_error(
      [&] {
        grouped_linear_cuda(x, w, offs({2, 5, 5, 10}).to(torch::kInt64));
      },
      {"grouped_linear_cuda", "int32", "[4]", "Long"});
  expect_error([&] { grouped_linear_cuda(x, w, offs({5, 5, 10})); }, {"grouped_linear_cuda", "[4]", "[3]"});
  expect_error(
      [&] {
        grouped_linear_cuda(x, w, offs({2, 9, 5, 9, 5, 9, 10, 9}).slice(0, 0, 8, 2));
      },
      {"grouped_linear_cuda", "not contiguous"});
  expect_error(
      [&] {
        grouped_linear_cuda(x, w, torch::tensor({2, 5, 5, 10}, torch::kInt32));
      },
      {"grouped_linear_cuda", "cpu"});
  expect_error([&] { grouped_linear_cuda(x, w, offs({-1, 5, 5, 10})); }, {"grouped_linear_cuda", ">= 0", "-1"});
  expect_error(
      [&] {
        grouped_linear_cuda(x, w, offs({2, 6, 5, 10}));
      },
      {"grouped_linear_cuda", "non-decreasing", "6 then 5", "index 2"});
  expect_error([&] { grouped_linear_cuda(x, w, offs({2, 5, 5, 9})); }, {"grouped_linear_cuda", "M = 10", "got 9"});
  expect_error([&] { grouped_linear_cuda(x, w, offs({2, 5, 5, 11})); }, {"grouped_linear_cuda", "M = 10", "got 11"});
}

// The zeroing of empty groups alone, on buffers full of NaN (0xFF bytes for uint8): the grouped
// product on sm90 already writes zeros for an empty group, so only this shows that the kernel
// itself zeroes them. Compared byte for byte: empty groups all 0, the others untouched. Group
// sizes take every copy unit (16, 8, 4, 2, 1 bytes) and, at 640 000 bytes, more than one
// grid-stride pass.
TEST(MoeCudaGrouped, ZeroEmptyGroupsZeroesOnlyTheEmptyOnes) {
  REQUIRE_GPU();
  // Inclusive ends for 6 groups: groups 0, 2, 4 and 5 are empty.
  auto ends = torch::tensor({0, 4, 4, 9, 9, 9}, torch::kInt32).to(cuda());
  const bool empty[] = {true, false, true, false, true, true};
  struct Case {
    std::vector<int64_t> inner;
    torch::Dtype dtype;
  };
  const Case cases[] = {{{4, 8}, torch::kFloat32},  {{3, 2}, torch::kFloat32}, {{5}, torch::kFloat32},
                        {{3, 5}, torch::kBFloat16}, {{3}, torch::kUInt8},      {{160000}, torch::kFloat32}};
  for (const auto& cs : cases) {
    std::vector<int64_t> shape = {6};
    shape.insert(shape.end(), cs.inner.begin(), cs.inner.end());
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape), " ", cs.dtype));
    const auto opts = torch::TensorOptions().device(cuda()).dtype(cs.dtype);
    auto data = cs.dtype == torch::kUInt8 ? torch::full(shape, 255, opts) : torch::full(shape, std::nan(""), opts);
    auto before = data.cpu().view(torch::kUInt8).reshape({6, -1});
    moe_zero_empty_groups_cuda(data, ends);
    auto after = data.cpu().view(torch::kUInt8).reshape({6, -1});
    for (int64_t g = 0; g < 6; ++g) {
      if (empty[g]) {
        EXPECT_TRUE((after[g] == 0).all().item<bool>()) << "empty group " << g << " not zeroed";
      } else {
        EXPECT_TRUE(torch::equal(after[g], before[g])) << "group " << g << " has rows but was written";
      }
    }
  }
  auto data = torch::zeros({6, 4}, cuda());
  expect_error([&] { moe_zero_empty_groups_cuda(data, ends.narrow(0, 0, 5)); },
               {"moe_zero_empty_groups_cuda", "[6]", "[5]"});
  expect_error([&] { moe_zero_empty_groups_cuda(data.t(), ends); }, {"moe_zero_empty_groups_cuda", "not contiguous"});
}

namespace {
// moe_combine_cuda against moe_combine_naive in fp64, forward and every gradient.
void check_dispatch(torch::Dtype dtype, MoeCudaPath path, int64_t T, bool skew, double tol) {
  SCOPED_TRACE(std::string(c10::toString(dtype)) + (path == MoeCudaPath::kLoop ? " loop" : " grouped") + " T" +
               std::to_string(T) + (skew ? " skewed" : ""));
  const int64_t E = 8, D = 64, F = 96, S = 5;
  auto [experts, ref] = twin_experts(E, D, F, cuda(), dtype);
  auto ids = random_experts(T, S, E, skew ? std::vector<int64_t>{1, 2, 5, 6, 7} : std::vector<int64_t>{});
  auto x = torch::randn({T, D}).to(dtype);
  auto w = torch::rand({T, S});
  auto xg = x.to(cuda()).requires_grad_(true), wg = w.to(cuda()).requires_grad_(true);
  auto out = moe_combine_cuda(*experts, xg, ids.to(cuda()), wg, path);
  auto x64 = x.to(torch::kFloat64).requires_grad_(true), w64 = w.to(torch::kFloat64).requires_grad_(true);
  auto want = test::moe_combine_naive(*ref, x64, test::dense_routing_matrix({w64, ids, {}}, E));
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_LE(rel_err(out, want), tol);
  auto go = torch::randn({T, D});
  auto g = torch::autograd::grad({(out * go.to(cuda())).sum()},
                                 {xg, wg, experts->gate_proj, experts->up_proj, experts->down_proj});
  auto g_want = torch::autograd::grad({(want * go.to(torch::kFloat64)).sum()},
                                      {x64, w64, ref->gate_proj, ref->up_proj, ref->down_proj});
  const char* names[] = {"x", "weights", "gate", "up", "down"};
  for (size_t i = 0; i < g.size(); ++i) EXPECT_LE(rel_err(g[i], g_want[i]), 2 * tol) << names[i];
  if (skew) {
    for (int64_t e : {0, 3, 4}) EXPECT_EQ(g[2][e].abs().max().item<double>(), 0.0) << "idle expert " << e;
  }
}
}  // namespace

TEST(MoeCudaDispatch, MatchesNaiveFp64ReferenceOnEveryPath) {
  REQUIRE_GPU();
  torch::manual_seed(5);
  Experts probe_experts(8, 64, 96);
  probe_experts->to(cuda(), torch::kBFloat16);
  const bool grouped = moe_grouped_path_available(
      *probe_experts, torch::zeros({1, 64}, torch::TensorOptions().device(cuda()).dtype(torch::kBFloat16)));
  for (int64_t T : kTokenCounts) {
    for (bool skew : {false, true}) {
      check_dispatch(torch::kFloat32, MoeCudaPath::kLoop, T, skew, 1e-5);
      check_dispatch(torch::kBFloat16, MoeCudaPath::kLoop, T, skew, 1e-2);
      if (grouped) check_dispatch(torch::kBFloat16, MoeCudaPath::kGrouped, T, skew, 1e-2);
    }
  }
  if (!grouped) GTEST_SKIP() << "checked the loop path only: the grouped path needs sm90/sm100";
}

TEST(MoeCudaDispatch, RerunsAreBitwiseIdentical) {
  REQUIRE_GPU();
  torch::manual_seed(6);
  Experts experts(8, 64, 96);
  experts->to(cuda(), torch::kBFloat16);
  auto x = torch::randn({4099, 64}, torch::TensorOptions().device(cuda()).dtype(torch::kBFloat16)).requires_grad_(true);
  auto ids = random_experts(4099, 5, 8).to(cuda());
  auto w = torch::rand({4099, 5}, cuda()).requires_grad_(true);
  auto go = torch::randn({4099, 64}, cuda());
  auto run = [&] {
    auto out = moe_combine_cuda(*experts, x, ids, w);
    auto g =
        torch::autograd::grad({(out * go).sum()}, {x, w, experts->gate_proj, experts->up_proj, experts->down_proj});
    g.push_back(out.detach());
    return g;
  };
  auto a = run(), b = run();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
}

// The whole layer (router, Eq. 2 routing, shared expert, dispatch) on the GPU through the hooks in
// route() and moe_combine(), against the same layer in fp64 on the CPU. Inputs in {-1, 0, 1} and
// router weights in quarters make the logits exact in bf16, so both devices route alike.
TEST(MoeCudaLayer, MoeLayerOnTheGpuMatchesFp64OnTheCpu) {
  REQUIRE_GPU();
  for (int64_t T : kTokenCounts) {
    SCOPED_TRACE("T" + std::to_string(T));
    const auto c = config("xft", 8, 6);
    torch::manual_seed(7);
    MoeLayer gpu_layer(64, 96, c);
    torch::manual_seed(7);
    MoeLayer cpu_layer(64, 96, c);
    {
      torch::NoGradGuard ng;
      auto rw = torch::randint(-1, 2, {7, 64}) / 4.0;
      gpu_layer->router->weight.copy_(rw);
      cpu_layer->router->weight.copy_(rw);
    }
    gpu_layer->to(cuda(), torch::kBFloat16);
    cpu_layer->to(torch::kBFloat16);  // the same rounding, then fp64
    cpu_layer->to(torch::kFloat64);
    gpu_layer->eval();
    cpu_layer->eval();
    auto x = torch::randint(-1, 2, {T, 64}).to(torch::kFloat64);
    auto xg = x.to(cuda(), torch::kBFloat16).requires_grad_(true), xc = x.clone().requires_grad_(true);
    auto yg = gpu_layer->forward(xg).y, yc = cpu_layer->forward(xc).y;
    EXPECT_LE(rel_err(yg, yc), 2e-2);
    auto go = torch::randn({T, 64});
    auto pg = gpu_layer->parameters(), pc = cpu_layer->parameters();
    pg.insert(pg.begin(), xg);
    pc.insert(pc.begin(), xc);
    auto gg = torch::autograd::grad({(yg.to(torch::kFloat32) * go.to(cuda())).sum()}, pg);
    auto gc = torch::autograd::grad({(yc * go.to(torch::kFloat64)).sum()}, pc);
    for (size_t i = 0; i < gg.size(); ++i) EXPECT_LE(rel_err(gg[i], gc[i]), 4e-2) << "input " << i;
  }
}

// rms_norm_cuda with nothing to normalise: an empty output of x's shape, as the CPU reference
// gives (it used to divide numel by a zero row length on the host).
TEST(RmsNormCuda, EmptyInputsGiveEmptyOutputs) {
  REQUIRE_GPU();
  for (auto shape : {std::vector<int64_t>{3, 0}, std::vector<int64_t>{0, 8}, std::vector<int64_t>{2, 0, 0}}) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(shape)));
    auto x = torch::randn(shape, cuda());
    auto w = torch::ones({shape.back()}, cuda());
    auto y = rms_norm_cuda(x, w, 1e-6);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_EQ(y.device(), x.device());
  }
  expect_error([&] { rms_norm_cuda(torch::ones({}, cuda()), torch::ones({1}, cuda()), 1e-6); },
               {"rms_norm_cuda", "0-dim"});
}

#ifdef XFT_WITH_CUDA
// MoeLayer::forward + backward (router, fused routing, shared expert, grouped dispatch, the
// device-side expert counts, the cv2 aux loss in training mode) captured in one CUDA graph: a
// host sync anywhere in the layer's CUDA path makes the capture fail. Replays agree bit for
// bit, and with the eager step.
TEST(MoeCudaGraph, MoeLayerForwardBackwardCapturesAndReplays) {
  REQUIRE_GPU();
  torch::manual_seed(8);
  const auto c = config("xft", 8, 6);
  const int64_t T = 4099, D = 64, F = 96;
  const auto bf16 = torch::TensorOptions().device(cuda()).dtype(torch::kBFloat16);
  MoeLayer layer(D, F, c);
  {
    torch::NoGradGuard ng;  // larger router weights than the init: tokens spread over the experts
    layer->router->weight.copy_(torch::randn({7, D}) * 0.5);
  }
  layer->to(cuda(), torch::kBFloat16);
  layer->train();
  auto x = torch::randn({T, D}, bf16).requires_grad_(true);
  if (!moe_grouped_path_available(*layer->experts, x)) GTEST_SKIP() << "the grouped path needs sm90/sm100";
  auto go = torch::randn({T, D}, bf16);
  auto inputs = layer->parameters();
  inputs.insert(inputs.begin(), x);
  auto step = [&] {
    auto out = layer->forward(x);
    auto g = torch::autograd::grad({(out.y.to(torch::kFloat32) * go).sum() + out.aux_loss}, inputs);
    g.push_back(out.y.detach());
    g.push_back(out.aux_loss.detach());
    g.push_back(layer->last_expert_counts());
    return g;
  };
  auto eager = step();
  ASSERT_EQ(eager.back().sum().item<int64_t>(), T * c.top_k);  // the counts cover every slot
  torch::cuda::synchronize();
  auto side = at::cuda::getStreamFromPool();
  c10::cuda::CUDAStreamGuard guard(side);
  for (int i = 0; i < 3; ++i) step();  // warm-up on the capture stream
  torch::cuda::synchronize();
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  auto captured = step();
  graph.capture_end();
  graph.replay();
  torch::cuda::synchronize();
  std::vector<torch::Tensor> first;
  for (const auto& t : captured) first.push_back(t.clone());
  graph.replay();
  torch::cuda::synchronize();
  ASSERT_EQ(captured.size(), eager.size());
  for (size_t i = 0; i < eager.size(); ++i) {
    EXPECT_TRUE(torch::equal(captured[i], first[i])) << i;  // replays are bitwise identical
    // The same function as the eager step; bf16-level slack in case cuBLAS picks other
    // kernels on the capture stream (normally the results are identical).
    EXPECT_LE(rel_err(captured[i], eager[i]), 1e-2) << i;
  }
}
#endif
