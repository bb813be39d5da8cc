// The study's paired tests against scipy on fixed vectors (tests/python/scipy_stats.py writes
// scipy's numbers at test time): the Wilcoxon signed-rank statistic and p-value, exact and
// normal-approximated with ties and zeros, and the percentile bootstrap interval of the mean.
#include <fstream>

#include "test_util.h"
#include "xft/study/statistics.h"

TEST(Statistics, WilcoxonAndBootstrapMatchScipy) {
  std::ifstream in(xft::test::fixture("stats") + "/stats.json");
  ASSERT_TRUE(in) << "stats.json (made by tests/python/scipy_stats.py)";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 6u);
  for (const auto& [name, c] : cases.items()) {
    SCOPED_TRACE(name);
    const auto d = c.at("d").get<std::vector<double>>();
    const auto w = xft::wilcoxon_signed_rank(d);
    EXPECT_EQ(w.exact, c.at("method") == "exact");
    EXPECT_NEAR(w.statistic, c.at("statistic").get<double>(), 1e-9);
    EXPECT_NEAR(w.p_value, c.at("p_value").get<double>(), 1e-9 + 1e-7 * c.at("p_value").get<double>());
    // Different generators: the intervals agree to a small part of the mean's standard error.
    const auto ci = xft::bootstrap_mean_ci(d, 20000, 0.95, 3);
    const double sem = c.at("sem").get<double>();
    EXPECT_NEAR(ci.low, c.at("ci_low").get<double>(), 0.08 * sem);
    EXPECT_NEAR(ci.high, c.at("ci_high").get<double>(), 0.08 * sem);
  }
}

TEST(Statistics, EdgeCasesByHand) {
  // All differences zero: nothing to test.
  const auto none = xft::wilcoxon_signed_rank({0.0, 0.0});
  EXPECT_EQ(none.n, 0);
  EXPECT_EQ(none.p_value, 1.0);
  // n = 3, all positive: W- = 0, P(W <= 0) = 1/8, two-sided p = 1/4.
  const auto three = xft::wilcoxon_signed_rank({1.0, 2.0, 3.0});
  EXPECT_TRUE(three.exact);
  EXPECT_DOUBLE_EQ(three.statistic, 0.0);
  EXPECT_DOUBLE_EQ(three.p_value, 0.25);
  xft::test::expect_error([] { xft::wilcoxon_signed_rank({1.0, std::nan("")}); }, {"not finite"});
  const auto one = xft::bootstrap_mean_ci({2.0}, 100);
  EXPECT_EQ(one.low, 2.0);
  EXPECT_EQ(one.high, 2.0);
}
