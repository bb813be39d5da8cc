#include "xft/eval/pass_at_k.h"

#include "xft/core/error.h"

namespace xft {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  XFT_CHECK(k >= 1, "pass@k: k must be at least 1, got ", k);
  XFT_CHECK(k <= n, "pass@k: k = ", k, " exceeds the number of samples n = ", n,
            " (draw at least k samples per problem)");
  XFT_CHECK(c >= 0 && c <= n, "pass@k: the number of correct samples c = ", c, " must lie in [0, n = ", n, "]");
  // Every size-k draw contains a correct sample once fewer than k are wrong.
  if (n - c < k) return 1.0;
  double all_wrong = 1.0;  // C(n-c, k) / C(n, k) as a product of factors in (0, 1]
  for (int64_t i = n - c + 1; i <= n; ++i) all_wrong *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - all_wrong;
}

double mean_pass_at_k(const std::vector<int64_t>& num_samples, const std::vector<int64_t>& num_correct, int64_t k) {
  XFT_CHECK(num_samples.size() == num_correct.size(), "pass@k: ", num_samples.size(), " sample counts but ",
            num_correct.size(), " correct counts (expected one of each per problem)");
  XFT_CHECK(!num_samples.empty(), "pass@k: no problems to average over");
  double sum = 0.0;
  for (size_t i = 0; i < num_samples.size(); ++i) sum += pass_at_k(num_samples[i], num_correct[i], k);
  return sum / static_cast<double>(num_samples.size());
}

}  // namespace xft
