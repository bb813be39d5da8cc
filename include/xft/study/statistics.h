// defines: WilcoxonResult / wilcoxon_signed_rank, Interval / bootstrap_mean_ci (the paired
//          tests a study reports, as the paper's appendix A.4 backs its claims)
#pragma once
#include <cstdint>
#include <vector>

namespace xft {

struct WilcoxonResult {
  double statistic = 0.0;  // min(W+, W-) over the non-zero differences
  double p_value = 1.0;    // two-sided
  int64_t n = 0;           // differences left after dropping zeros
  bool exact = false;      // exact null distribution, or the normal approximation
};

// The Wilcoxon signed-rank test of paired differences `d` against 0 (two-sided; zeros dropped,
// as scipy's zero_method "wilcox"). Exact when n <= 50 and no two |d| tie; otherwise the normal
// approximation with the tie correction of the variance, without continuity correction (scipy's
// method "approx", correction False). n = 0 gives p = 1.
WilcoxonResult wilcoxon_signed_rank(const std::vector<double>& d);

struct Interval {
  double low = 0.0, high = 0.0;
};

// Percentile bootstrap interval of the mean of `d`: `resamples` draws of len(d) with
// replacement from a generator seeded with `seed`, the (1 - level) / 2 and (1 + level) / 2
// quantiles of their means (linear interpolation, as numpy's default).
Interval bootstrap_mean_ci(const std::vector<double>& d, int64_t resamples = 10000, double level = 0.95,
                           uint64_t seed = 0);

}  // namespace xft
