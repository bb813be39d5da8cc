#include "xft/model/rotary.h"

#include <cmath>

namespace xft {

RotaryEmbedding::RotaryEmbedding(const ModelConfig& c) {
  // Partial rotary (StableLM) is the same RoPE over the first rotary_dim dims of a head.
  const int64_t dim = c.rotary_dim();
  // Same arithmetic as transformers: int64 arange -> fp32 -> / dim -> base ** that, in fp32.
  auto exponent = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<float>(dim);
  inv_freq_ = 1.0 / torch::pow(c.rope_theta, exponent);
  const auto& rs = c.rope_scaling;
  if (rs.type == "linear") {
    // Position interpolation: positions / factor, i.e. frequencies / factor.
    inv_freq_ = inv_freq_ / rs.factor;
  } else if (rs.type == "llama3") {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    auto wavelen = 2 * M_PI / inv_freq_;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq_ / rs.factor, inv_freq_);
    auto smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq_ = torch::where(medium, smoothed, scaled);
  }
  inv_freq_ = inv_freq_.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::cos_sin(const torch::Tensor& position_ids,
                                                                 torch::Dtype dtype) const {
  auto inv = inv_freq_.to(position_ids.device());
  auto freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv;  // [B, T, dim/2]
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t rot = cos.size(-1), dim = x.size(-1);
  if (rot < dim) {
    return torch::cat({apply_rotary(x.narrow(-1, 0, rot), cos, sin), x.narrow(-1, rot, dim - rot)}, -1);
  }
  const int64_t half = x.size(-1) / 2;
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace xft
