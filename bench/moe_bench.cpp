// The CUDA MoE path on a GPU: the fused router, the MoE FFN layer against three baselines, and
// training-step throughput (dense 1.3B shape, its 8-expert upcycle with fewer layers, the merge).
// Timings: CUDA events on the current stream, warm-up runs, then the median of the repeats.
// Writes DIR/<date>-<gpu>.md and .json (device, date, commit, every number, the targets).
//   xft-moe-bench --out bench/results [--commit SHA] [--tokens 4096,16384,65536]
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cuda/cuda_glue.h"
#include "cuda/moe_cuda.h"
#include "moe/dispatch_cuda.h"
#include "moe/routing_cuda.h"
#include "moe_permute.cuh"
#include "moe_reference.h"
#include "moe_routing.cuh"
#include "xft/methods/merge.h"
#include "xft/model/llama.h"
#include "xft/model/mlp.h"
#include "xft/model/model_io.h"
#include "xft/train/optimizer.h"

using namespace xft;
using nlohmann::json;

namespace {

struct Options {
  std::string out, commit;
  std::vector<int64_t> tokens{4096, 16384, 65536};
  int warmup = 3, repeats = 10;
  int64_t hidden = 2048, intermediate = 5504, experts = 8, top_k = 6;
  int64_t train_batch = 2, train_seq = 2048, dense_layers = 24, moe_layers = 4;
  double peak_tflops = 989.0;  // H100 SXM / H200 dense bf16 datasheet
  bool skip_training = false;
};

const auto kBf16 = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
const auto kF32 = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32);

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median milliseconds of `timed` after `warmup` runs; `setup` (untimed) runs before each.
template <class Setup, class Timed>
double time_ms(const Options& o, Setup&& setup, Timed&& timed) {
  std::vector<double> ms;
  for (int i = 0; i < o.warmup + o.repeats; ++i) {
    setup();
    torch::cuda::synchronize();
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    timed();
    stop.record();
    stop.synchronize();
    if (i >= o.warmup) ms.push_back(start.elapsed_time(stop));
  }
  return median(ms);
}
template <class Timed>
double time_ms(const Options& o, Timed&& timed) {
  return time_ms(
      o, [] {}, timed);
}

void free_cache() {
  torch::cuda::synchronize();
  c10::cuda::CUDACachingAllocator::emptyCache();
}

std::string fmt(double v, int prec = 2) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(prec);
  os << v;
  return os.str();
}

MoeConfig moe_config(const Options& o) {
  MoeConfig c;
  c.num_experts = o.experts;
  c.top_k = o.top_k;
  return c;
}

// ---- routing ----------------------------------------------------------------------------------
json bench_routing(const Options& o, std::ostream& md) {
  const auto c = moe_config(o);
  const int64_t R = c.num_routed(), k = c.routed_k(), S = c.top_k, N = c.num_experts;
  md << "\n## Routing (xft, Eq. 2): forward + backward, R = " << R << ", top-" << k << " + shared\n\n"
     << "| T | fused kernels (us) | GB/s | route_cuda + autograd (us) | ATen composed (us) | speed-up vs ATen |\n"
     << "|---|---|---|---|---|---|\n";
  json rows = json::array();
  for (int64_t T : o.tokens) {
    auto z = torch::randn({T, R}, kF32);
    auto w = torch::empty({T, S}, kF32), probs = torch::empty({T, R}, kF32), dz = torch::empty({T, R}, kF32);
    auto ids = torch::empty({T, S}, kF32.dtype(torch::kInt32)), counts = torch::empty({N}, kF32.dtype(torch::kInt32));
    auto gw = torch::randn({T, S}, kF32), gp = torch::randn({T, R}, kF32);
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    const double fused = time_ms(o, [&] {
      check_cuda(kernels::moe_route_forward(z.data_ptr(), kernels::DType::kFloat32, T, static_cast<int>(R),
                                            static_cast<int>(k), kernels::RouteMode::kXft, false, w.data_ptr<float>(),
                                            ids.data_ptr<int32_t>(), probs.data_ptr<float>(),
                                            counts.data_ptr<int32_t>(), stream),
                 "routing: moe_route_forward");
      check_cuda(kernels::moe_route_backward(probs.data_ptr<float>(), ids.data_ptr<int32_t>(), w.data_ptr<float>(),
                                             gw.data_ptr<float>(), gp.data_ptr<float>(), T, static_cast<int>(R),
                                             static_cast<int>(k), kernels::RouteMode::kXft, false, dz.data_ptr(),
                                             kernels::DType::kFloat32, stream),
                 "routing: moe_route_backward");
    });
    // Bytes moved: forward reads z, writes w, ids, probs; backward reads probs, ids, w, gw, gp, writes dz.
    const double bytes = 4.0 * (T * R + 2 * T * S + T * R + N) + 4.0 * (T * R + 3 * T * S + 2 * T * R);
    auto zr = z.clone().requires_grad_(true);
    const double op = time_ms(o, [&] {
      auto r = route_cuda(zr, c);
      torch::autograd::grad({r.weights_TS, r.probs_TR}, {zr}, {gw, gp});
    });
    const double aten = time_ms(o, [&] {
      auto r = test::route_reference(zr, c);
      torch::autograd::grad({r.weights_TS, r.probs_TR}, {zr}, {gw, gp});
    });
    const double us = fused * 1e3;
    md << "| " << T << " | " << fmt(us, 1) << " | " << fmt(bytes / (fused * 1e-3) / 1e9, 0) << " | " << fmt(op * 1e3, 1)
       << " | " << fmt(aten * 1e3, 1) << " | " << fmt(aten / fused, 1) << "x |\n";
    rows.push_back({{"tokens", T},
                    {"fused_us", us},
                    {"fused_gbps", bytes / (fused * 1e-3) / 1e9},
                    {"route_cuda_autograd_us", op * 1e3},
                    {"aten_composed_us", aten * 1e3}});
  }
  return rows;
}

// ---- MoE layer --------------------------------------------------------------------------------
struct FwdBwd {
  double fwd = 0, bwd = 0, total = 0;
};

// fwd() builds the graph and returns the output; bwd = the gradient w.r.t. params alone.
template <class Fwd>
FwdBwd time_fwd_bwd(const Options& o, Fwd&& fwd, const std::vector<torch::Tensor>& params, const torch::Tensor& go) {
  FwdBwd r;
  r.fwd = time_ms(o, [&] { fwd(); });
  torch::Tensor y;
  r.bwd = time_ms(
      o, [&] { y = fwd(); }, [&] { torch::autograd::grad({y}, params, {go.to(y.scalar_type())}); });
  y = torch::Tensor();
  r.total = time_ms(o, [&] {
    auto out = fwd();
    torch::autograd::grad({out}, params, {go.to(out.scalar_type())});
  });
  return r;
}

json bench_layer(const Options& o, std::ostream& md, json& targets) {
  const auto c = moe_config(o);
  const int64_t D = o.hidden, F = o.intermediate, E = o.experts, K = o.top_k;
  md << "\n## MoE FFN layer: D " << D << ", F " << F << ", E " << E << ", K " << K << " (1 shared), bf16\n\n"
     << "FLOPs: forward 2*K*T*3*D*F, backward twice that. (a) per-expert loop with boolean masks "
     << "(the reference Python), (b) sort + gather + _grouped_mm + scatter-add from ATen, (c) the dense-"
     << "equivalent chain of matrix products with M = K*T rows.\n\n"
     << "| T | impl | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s | total ms | total TFLOP/s |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  Experts experts(E, D, F);
  experts->to(torch::kCUDA, torch::kBFloat16);
  json rows = json::array(), phases = json::array();
  std::ostringstream phase_md;
  if (!moe_grouped_path_available(*experts, torch::zeros({1, D}, kBf16))) {
    md << "\nSkipped: at::_grouped_mm's fast path needs an sm90/sm100 GPU.\n";
    return {{"skipped", "no sm90/sm100 GPU"}};
  }
  for (int64_t T : o.tokens) {
    free_cache();
    auto x = torch::randn({T, D}, kBf16).requires_grad_(true);
    auto r = route_cuda(torch::randn({T, c.num_routed()}, kF32), c);
    auto ids = r.experts_TS, w = r.weights_TS.detach().clone().requires_grad_(true);
    auto go = torch::randn({T, D}, kF32);
    std::vector<torch::Tensor> params = {x, w, experts->gate_proj, experts->up_proj, experts->down_proj};
    const double flops = 2.0 * K * T * 3 * D * F;
    auto report = [&](const std::string& name, const FwdBwd& t) {
      md << "| " << T << " | " << name << " | " << fmt(t.fwd) << " | " << fmt(flops / (t.fwd * 1e-3) / 1e12, 0) << " | "
         << fmt(t.bwd) << " | " << fmt(2 * flops / (t.bwd * 1e-3) / 1e12, 0) << " | " << fmt(t.total) << " | "
         << fmt(3 * flops / (t.total * 1e-3) / 1e12, 0) << " |\n";
      rows.push_back({{"tokens", T},
                      {"impl", name},
                      {"fwd_ms", t.fwd},
                      {"bwd_ms", t.bwd},
                      {"total_ms", t.total},
                      {"fwd_tflops", flops / (t.fwd * 1e-3) / 1e12},
                      {"bwd_tflops", 2 * flops / (t.bwd * 1e-3) / 1e12},
                      {"total_tflops", 3 * flops / (t.total * 1e-3) / 1e12}});
    };
    // Ours: shared expert as one dense product, routed slots through moe_combine_cuda (grouped).
    auto ours = [&] {
      auto shared = experts->expert_forward(0, x).to(torch::kFloat32) * w.narrow(1, 0, 1);
      return shared +
             moe_combine_cuda(*experts, x, ids.narrow(1, 1, K - 1), w.narrow(1, 1, K - 1), MoeCudaPath::kGrouped);
    };
    const auto t_ours = time_fwd_bwd(o, ours, params, go);
    report("xft (fused route + grouped)", t_ours);
    // (a) The reference Python: a boolean mask per expert, nonzero (a host sync), index_add.
    auto masks = [&] {
      auto out = torch::zeros({T, D}, kF32);
      for (int64_t e = 0; e < E; ++e) {
        auto hit = ids == e;
        auto idx = hit.any(-1).nonzero().squeeze(-1);
        if (idx.numel() == 0) continue;
        auto we = (w * hit).sum(-1).index_select(0, idx).unsqueeze(1);
        out = out.index_add(0, idx, experts->expert_forward(e, x.index_select(0, idx)).to(torch::kFloat32) * we);
      }
      return out;
    };
    const auto t_masks = time_fwd_bwd(o, masks, params, go);
    report("(a) mask loop", t_masks);
    // (b) ATen: stable sort, gather, three grouped products (their own autograd), scatter-add.
    auto aten = [&] {
      auto flat = ids.reshape(-1);
      auto order = flat.argsort(/*stable=*/true);
      auto token = order.div(K, "floor");
      auto offs =
          torch::zeros({E}, flat.options()).scatter_add_(0, flat, torch::ones_like(flat)).cumsum(0).to(torch::kInt32);
      auto xr = x.index_select(0, token);
      auto g = at::_grouped_mm(xr, experts->gate_proj.transpose(-2, -1), offs);
      auto u = at::_grouped_mm(xr, experts->up_proj.transpose(-2, -1), offs);
      auto y = at::_grouped_mm(swiglu(g, u), experts->down_proj.transpose(-2, -1), offs);
      auto wr = w.reshape(-1).index_select(0, order).unsqueeze(1);
      return torch::zeros({T, D}, kF32).index_add(0, token, y.to(torch::kFloat32) * wr);
    };
    const auto t_aten = time_fwd_bwd(o, aten, params, go);
    report("(b) ATen sort+gather+grouped_mm", t_aten);
    // (c) Dense equivalent: one expert's products over K*T rows.
    FwdBwd t_dense;
    {
      auto xd = torch::randn({K * T, D}, kBf16).requires_grad_(true);
      auto wg = experts->gate_proj[1].detach().clone().requires_grad_(true);
      auto wu = experts->up_proj[1].detach().clone().requires_grad_(true);
      auto wd = experts->down_proj[1].detach().clone().requires_grad_(true);
      auto god = torch::randn({K * T, D}, kBf16);
      auto dense = [&] { return torch::linear(swiglu(torch::linear(xd, wg), torch::linear(xd, wu)), wd); };
      t_dense = time_fwd_bwd(o, dense, {xd, wg, wu, wd}, god);
      report("(c) dense equivalent", t_dense);
    }
    const double vs_dense = t_dense.total / t_ours.total, vs_masks = t_masks.total / t_ours.total;
    auto& ours_row = rows[rows.size() - 4];  // pushed before (a), (b) and (c)
    ours_row["vs_dense_equivalent"] = vs_dense;
    ours_row["vs_mask_loop"] = vs_masks;
    if (T == 16384) {
      targets["moe_vs_dense_equivalent"] = {{"target", ">= 0.80"}, {"value", vs_dense}, {"met", vs_dense >= 0.8}};
      targets["moe_vs_mask_loop"] = {{"target", ">= 3x"}, {"value", vs_masks}, {"met", vs_masks >= 3.0}};
    }
    // Forward phases of ours (no autograd), and the backward of the kernels this project owns.
    {
      torch::NoGradGuard ng;
      auto rids = ids.narrow(1, 1, K - 1), rw = w.detach().narrow(1, 1, K - 1);
      auto perm = moe_permutation_cuda(rids, E);
      auto xr = moe_gather_rows_cuda(x.detach(), perm);
      auto g = grouped_linear_cuda(xr, experts->gate_proj, perm.offsets_end);
      auto h = swiglu(g, g);
      auto y = grouped_linear_cuda(h, experts->down_proj, perm.offsets_end);
      auto go_rows = torch::randn_like(y);
      auto gx = torch::empty({T, D}, kBf16);
      auto gy = torch::empty_like(y);
      auto gwr = torch::empty({T, K - 1}, kF32);
      auto rwc = rw.contiguous();
      auto go32 = go.contiguous();
      cudaStream_t stream = at::cuda::getCurrentCUDAStream();
      const auto kTrusted = OffsetsCheck::kTrusted;
      const std::vector<std::pair<std::string, std::function<void()>>> steps = {
          {"index build", [&] { moe_permutation_cuda(rids, E); }},
          {"gather", [&] { moe_gather_rows_cuda(x.detach(), perm); }},
          // kTrusted: as moe_combine_cuda calls them, without the offsets' validating host sync.
          {"gate (grouped)", [&] { grouped_linear_cuda(xr, experts->gate_proj, perm.offsets_end, kTrusted); }},
          {"up (grouped)", [&] { grouped_linear_cuda(xr, experts->up_proj, perm.offsets_end, kTrusted); }},
          {"SwiGLU", [&] { swiglu(g, g); }},
          {"down (grouped)", [&] { grouped_linear_cuda(h, experts->down_proj, perm.offsets_end, kTrusted); }},
          {"combine", [&] { moe_combine_rows_cuda(y, rw, perm); }},
          {"shared expert (dense)", [&] { experts->expert_forward(0, x.detach()); }},
          {"combine backward",
           [&] {
             check_cuda(kernels::moe_combine_rows_backward(
                            go32.data_ptr(), kernels::DType::kFloat32, y.data_ptr(), kernels::DType::kBFloat16,
                            rwc.data_ptr<float>(), perm.token_slot_to_row.data_ptr<int32_t>(), T,
                            static_cast<int>(K - 1), D, gy.data_ptr(), gwr.data_ptr<float>(), stream),
                        "phases: moe_combine_rows_backward");
           }},
          {"gather backward", [&] {
             check_cuda(
                 kernels::moe_combine_rows(go_rows.data_ptr(), kernels::DType::kBFloat16, nullptr,
                                           perm.token_slot_to_row.data_ptr<int32_t>(), T, static_cast<int>(K - 1), D,
                                           gx.data_ptr(), kernels::DType::kBFloat16, stream),
                 "phases: moe_combine_rows (gather backward)");
           }}};
      json p = {{"tokens", T}};
      if (phases.empty()) {
        phase_md << "\n### Phases of the xft path (ms; forward, then the backward kernels this project owns)\n\n| T |";
        for (const auto& step : steps) phase_md << " " << step.first << " |";
        phase_md << "\n|---|";
        for (size_t i = 0; i < steps.size(); ++i) phase_md << "---|";
        phase_md << "\n";
      }
      phase_md << "| " << T << " |";
      for (const auto& [name, fn] : steps) {
        const double ms = time_ms(o, fn);
        p[name] = ms;
        phase_md << " " << fmt(ms, 3) << " |";
      }
      phase_md << "\n";
      phases.push_back(p);
    }
  }
  md << phase_md.str();
  return {{"rows", rows}, {"phases", phases}};
}

// ---- training steps ---------------------------------------------------------------------------
ModelConfig model_config(const Options& o, int64_t layers, bool moe) {
  json j = {{"model_type", "llama"},       {"vocab_size", 32256},
            {"hidden_size", o.hidden},     {"intermediate_size", o.intermediate},
            {"num_hidden_layers", layers}, {"num_attention_heads", 16},
            {"num_key_value_heads", 16},   {"max_position_embeddings", 16384},
            {"rope_theta", 100000.0},      {"torch_dtype", "bfloat16"}};
  if (moe) j["moe"] = {{"num_experts", o.experts}, {"top_k", o.top_k}};
  return ModelConfig::from_json(j, "bench");
}

json bench_training(const Options& o, std::ostream& md) {
  md << "\n## Training step (forward, backward, AdamW), random bf16 weights, batch " << o.train_batch << " x "
     << o.train_seq << " tokens\n\nMFU = (6 * active non-embedding params + 6 * V * D + 12 * layers * D * seq) "
     << "* tokens / time / " << o.peak_tflops << " TFLOP/s.\n\n"
     << "| model | layers | step ms | tokens/s | MFU |\n|---|---|---|---|---|\n";
  json rows = json::array();
  struct Case {
    std::string name;
    int64_t layers;
    bool moe, merge;
  };
  const Case cases[] = {{"dense 1.3B shape", o.dense_layers, false, false},
                        {"MoE (8 experts, top-6, shared)", o.moe_layers, true, false},
                        {"merge of that MoE (attach_merge)", o.moe_layers, true, true}};
  for (const auto& cs : cases) {
    free_cache();
    const auto cfg = model_config(o, cs.layers, cs.moe);
    CausalLM model(cfg);
    model->init_weights(0.02, 1);
    model->to(torch::kCUDA, torch::kBFloat16);
    NamedTensors trainable;
    if (cs.merge) {
      trainable = attach_merge(*model, MergeConfig{});
    } else {
      for (const auto& p : model->named_parameters()) trainable.emplace_back(p.key(), p.value());
    }
    model->train();
    auto opt = make_adamw(trainable, AdamWOptions{});
    auto ids = torch::randint(0, cfg.vocab_size, {o.train_batch, o.train_seq}, kF32.dtype(torch::kInt64));
    auto step = [&] {
      auto out = model->forward(ids);
      auto loss = torch::nn::functional::cross_entropy(out.logits.reshape({-1, cfg.vocab_size}).to(torch::kFloat32),
                                                       ids.reshape(-1));
      if (out.aux_loss.defined()) loss = loss + out.aux_loss;
      loss.backward();
      opt->step();
      opt->zero_grad();
    };
    const double ms = time_ms(o, step);
    const double D = o.hidden, F = o.intermediate, L = cs.layers, tokens = o.train_batch * o.train_seq;
    const double ffn = cs.moe && !cs.merge ? o.top_k * 3 * D * F + (o.experts - 1) * D : 3 * D * F;
    const double per_token = 6 * L * (4 * D * D + ffn) + 6 * 32256 * D + 12 * L * D * o.train_seq;
    const double mfu = per_token * tokens / (ms * 1e-3) / (o.peak_tflops * 1e12);
    md << "| " << cs.name << " | " << cs.layers << " | " << fmt(ms, 1) << " | " << fmt(tokens / (ms * 1e-3), 0) << " | "
       << fmt(100 * mfu, 1) << "% |\n";
    rows.push_back({{"model", cs.name},
                    {"layers", cs.layers},
                    {"step_ms", ms},
                    {"tokens_per_s", tokens / (ms * 1e-3)},
                    {"mfu", mfu}});
  }
  return rows;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoll(item));
  return v;
}

}  // namespace

namespace {

// Runs every benchmark and writes the report; throws on any CUDA error.
int run_benchmarks(const Options& o) {
  const std::string device = at::cuda::getCurrentDeviceProperties()->name;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::string slug;
  for (char ch : device)
    slug += std::isalnum(static_cast<unsigned char>(ch)) ? static_cast<char>(std::tolower(ch)) : '-';
  torch::manual_seed(0);

  std::ostringstream md;
  json targets = json::object();
  md << "# xft MoE benchmark\n\n- device: " << device << "\n- date: " << date << "\n- commit: " << o.commit
     << "\n- torch: " << TORCH_VERSION << "\n- warm-up " << o.warmup << ", median of " << o.repeats << " repeats\n\n"
     << "Targets: at T = 16384 the MoE layer's forward + backward takes at most 1/0.8 of the dense-equivalent "
        "chain's time (>= 80%) and is >= 3x faster than the mask loop; routing forward + backward <= 10 us.\n";
  json result = {{"device", device},       {"date", date},       {"commit", o.commit},
                 {"torch", TORCH_VERSION}, {"warmup", o.warmup}, {"repeats", o.repeats}};
  result["routing"] = bench_routing(o, md);
  double route16k = 0;
  for (const auto& r : result["routing"]) {
    if (r["tokens"] == 16384) route16k = r["fused_us"].get<double>();
  }
  targets["routing_fwd_bwd_us"] = {{"target", "<= 10"}, {"value", route16k}, {"met", route16k > 0 && route16k <= 10}};
  result["moe_layer"] = bench_layer(o, md, targets);
  if (!o.skip_training) result["training"] = bench_training(o, md);
  result["targets"] = targets;
  md << "\n## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n";
  for (const auto& [k, v] : targets.items()) {
    md << "| " << k << " | " << v["target"].get<std::string>() << " | " << fmt(v["value"].get<double>(), 2) << " | "
       << (v["met"].get<bool>() ? "yes" : "no") << " |\n";
  }
  std::filesystem::create_directories(o.out);
  const auto base = std::filesystem::path(o.out) / (std::string(date) + "-" + slug);
  std::ofstream(base.string() + ".md") << md.str();
  std::ofstream(base.string() + ".json") << result.dump(2) << "\n";
  std::cout << md.str() << "\nwrote " << base.string() << ".md and .json\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string tokens = "4096,16384,65536";
  CLI::App app{"xft MoE benchmark (CUDA): routing, MoE layer, training steps"};
  app.add_option("--out", o.out, "directory for <date>-<gpu>.md and .json")->required();
  app.add_option("--commit", o.commit, "git commit measured (default: $XFT_COMMIT)");
  app.add_option("--tokens", tokens, "comma-separated token counts T");
  app.add_option("--warmup", o.warmup, "untimed runs before each measurement");
  app.add_option("--repeats", o.repeats, "timed runs (the median is reported)");
  app.add_option("--train-batch", o.train_batch);
  app.add_option("--train-seq", o.train_seq);
  app.add_option("--dense-layers", o.dense_layers);
  app.add_option("--moe-layers", o.moe_layers);
  app.add_option("--peak-tflops", o.peak_tflops, "bf16 dense peak for MFU");
  app.add_flag("--skip-training", o.skip_training);
  CLI11_PARSE(app, argc, argv);
  o.tokens = parse_list(tokens);
  if (o.commit.empty()) o.commit = std::getenv("XFT_COMMIT") ? std::getenv("XFT_COMMIT") : "unknown";
  if (!torch::cuda::is_available()) {
    std::cerr << "xft-moe-bench: no CUDA GPU visible\n";
    return 2;
  }
  // A failed launch (a launcher's error code, through check_cuda) or a CUDA error seen at a
  // synchronisation ends the run with its message and no report: its timings would be void.
  try {
    return run_benchmarks(o);
  } catch (const std::exception& e) {
    std::cerr << "xft-moe-bench: " << e.what() << "\n";
    return 1;
  }
}
