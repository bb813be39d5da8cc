"""Reference values for tests/test_study.cpp: scipy's Wilcoxon signed-rank test and bootstrap
interval on fixed vectors (ties, zeros, small and large n). Writes OUT/stats.json."""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats


def vectors():
    rng = np.random.default_rng(1234)
    out = {
        "small_exact": [0.31, -0.12, 0.55, 0.08, -0.27, 0.91, 0.44, -0.05, 0.62, 0.19],
        "all_positive": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        "with_zeros_and_ties": [0.2, -0.2, 0.0, 0.4, 0.4, -0.1, 0.0, 0.3, 0.2, -0.4, 0.5, 0.1],
        "n40_exact": list(np.round(rng.normal(0.1, 1.0, 40), 6)),
        "n200_approx": list(np.round(rng.normal(0.05, 1.0, 200), 6)),
        "ties_large": list(np.round(rng.normal(0.0, 1.0, 120), 1)),
    }
    return {k: [float(x) for x in v] for k, v in out.items()}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cases = {}
    for name, d in vectors().items():
        a = np.asarray(d)
        nz = a[a != 0]
        tied = len(np.unique(np.abs(nz))) < len(nz)
        method = "exact" if len(nz) <= 50 and not tied else "approx"
        r = stats.wilcoxon(a, zero_method="wilcox", correction=False, alternative="two-sided", method=method)
        boot = stats.bootstrap((a,), np.mean, n_resamples=20000, confidence_level=0.95, method="percentile",
                               random_state=np.random.default_rng(7))
        cases[name] = {"d": d, "statistic": float(r.statistic), "p_value": float(r.pvalue), "method": method,
                       "ci_low": float(boot.confidence_interval.low), "ci_high": float(boot.confidence_interval.high),
                       "sem": float(np.std(a, ddof=1) / np.sqrt(len(a)))}
    (out / "stats.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
