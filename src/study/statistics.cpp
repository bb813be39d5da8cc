#include "xft/study/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "xft/core/error.h"

namespace xft {

namespace {

// Average ranks (1-based) of `v`, ties sharing the mean of their ranks; also the tie group sizes.
std::vector<double> average_ranks(const std::vector<double>& v, std::vector<int64_t>* tie_sizes) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double r = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = r;
    tie_sizes->push_back(static_cast<int64_t>(j - i + 1));
    i = j + 1;
  }
  return ranks;
}

// P(W+ <= w) under the null for n untied ranks: every sign pattern equally likely, counted by
// dynamic programming over the possible rank sums.
double exact_cdf(int64_t n, double w) {
  const int64_t max_sum = n * (n + 1) / 2;
  std::vector<double> count(static_cast<size_t>(max_sum + 1), 0.0);
  count[0] = 1.0;
  for (int64_t r = 1; r <= n; ++r)
    for (int64_t s = max_sum; s >= r; --s) count[static_cast<size_t>(s)] += count[static_cast<size_t>(s - r)];
  double below = 0.0;
  for (int64_t s = 0; s <= max_sum && static_cast<double>(s) <= w + 1e-9; ++s) below += count[static_cast<size_t>(s)];
  return below / std::ldexp(1.0, static_cast<int>(n));
}

}  // namespace

WilcoxonResult wilcoxon_signed_rank(const std::vector<double>& d) {
  std::vector<double> nonzero, magnitude;
  for (double x : d) {
    XFT_CHECK(std::isfinite(x), "wilcoxon_signed_rank: a difference is not finite (", x, ")");
    if (x != 0.0) {
      nonzero.push_back(x);
      magnitude.push_back(std::abs(x));
    }
  }
  WilcoxonResult r;
  r.n = static_cast<int64_t>(nonzero.size());
  if (r.n == 0) return r;
  std::vector<int64_t> ties;
  const auto ranks = average_ranks(magnitude, &ties);
  double plus = 0.0, minus = 0.0;
  for (size_t i = 0; i < nonzero.size(); ++i) (nonzero[i] > 0 ? plus : minus) += ranks[i];
  r.statistic = std::min(plus, minus);
  const bool tied = std::any_of(ties.begin(), ties.end(), [](int64_t t) { return t > 1; });
  r.exact = r.n <= 50 && !tied;
  if (r.exact) {
    r.p_value = std::min(1.0, 2.0 * exact_cdf(r.n, r.statistic));
    return r;
  }
  const double n = static_cast<double>(r.n);
  double var = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0;
  for (int64_t t : ties) var -= static_cast<double>(t * t * t - t) / 48.0;
  const double z = (r.statistic - n * (n + 1.0) / 4.0) / std::sqrt(var);
  r.p_value = std::min(1.0, std::erfc(std::abs(z) / std::sqrt(2.0)));  // 2 * (1 - Phi(|z|))
  return r;
}

Interval bootstrap_mean_ci(const std::vector<double>& d, int64_t resamples, double level, uint64_t seed) {
  XFT_CHECK(!d.empty(), "bootstrap_mean_ci: no differences");
  XFT_CHECK(resamples >= 2 && level > 0.0 && level < 1.0, "bootstrap_mean_ci: need resamples >= 2 and level in (0, 1)");
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<size_t> pick(0, d.size() - 1);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (auto& m : means) {
    double s = 0.0;
    for (size_t i = 0; i < d.size(); ++i) s += d[pick(gen)];
    m = s / static_cast<double>(d.size());
  }
  std::sort(means.begin(), means.end());
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(means.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const auto hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  return {quantile((1.0 - level) / 2.0), quantile((1.0 + level) / 2.0)};
}

}  // namespace xft
