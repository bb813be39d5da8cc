#!/usr/bin/env python3
"""Pictures of xft-study results (results.json of one or more study directories, e.g. one per
base strength): every arm's held-out loss per seed, and every paired comparison's mean
difference with its bootstrap 95% interval and Wilcoxon p-value.

    .venv/bin/python scripts/plot_study.py STUDY_DIR [STUDY_DIR ...] [--labels A,B] --out FILE.png

scripts/plot_run.py calls it for a study directory (writes plots/study.png).
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(study_dir):
    path = Path(study_dir) / "results.json"
    if not path.is_file():
        sys.exit(f"{path}: not found (run xft-study or xft-demo first)")
    r = json.loads(path.read_text())
    if "comparisons" not in r or "arms" not in r:
        sys.exit(f"{path}: not a study's results (no 'arms' and 'comparisons')")
    return r


def plot_studies(results, labels, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    width = 0.8 / len(results)
    arms = []
    for r in results:
        for arm in r.get("order", list(r["arms"])):
            if arm not in arms:
                arms.append(arm)
    for s, (r, label) in enumerate(zip(results, labels)):
        for i, arm in enumerate(arms):
            if arm not in r["arms"]:
                continue
            x = i + (s - (len(results) - 1) / 2) * width
            seeds = r["arms"][arm]["per_seed"]
            a.bar(x, r["arms"][arm]["heldout_loss_mean"], width * 0.9, color=f"C{s}", alpha=0.35,
                  label=label if i == 0 else None)
            a.scatter([x] * len(seeds), seeds, color=f"C{s}", s=12, zorder=3)
    a.set_xticks(range(len(arms)), arms, rotation=30)
    lows = [min(r["arms"][arm]["per_seed"]) for r in results for arm in r["arms"]]
    highs = [max(r["arms"][arm]["per_seed"]) for r in results for arm in r["arms"]]
    pad = 0.1 * (max(highs) - min(lows) + 1e-9)
    a.set_ylim(min(lows) - pad, max(highs) + pad)
    a.set(ylabel="held-out loss (bars: mean over seeds; dots: seeds)", title="arms")
    if len(results) > 1:
        a.legend(fontsize=8)
    pairs = []
    for r in results:
        for c in r["comparisons"]:
            if (c["a"], c["b"]) not in pairs:
                pairs.append((c["a"], c["b"]))
    for s, (r, label) in enumerate(zip(results, labels)):
        for c in r["comparisons"]:
            y = pairs.index((c["a"], c["b"])) + (s - (len(results) - 1) / 2) * width
            m, lo, hi = c["mean_difference"], c["ci95"][0], c["ci95"][1]
            b.errorbar(m, y, xerr=[[m - lo], [hi - m]], fmt="o", color=f"C{s}", capsize=3,
                       label=label if c is r["comparisons"][0] else None)
            b.annotate(f"p={c['wilcoxon_p']:.1e}", (hi, y), xytext=(4, -3), textcoords="offset points", fontsize=7)
    b.axvline(0.0, color="k", lw=0.8)
    b.set_yticks(range(len(pairs)), [f"{p} - {q}" for p, q in pairs])
    b.invert_yaxis()
    b.set(xlabel="mean paired difference in held-out loss, 95% bootstrap CI (left of 0: first arm better)",
          title="paired comparisons over held-out examples")
    b.xaxis.label.set_size(8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("studies", nargs="+")
    p.add_argument("--labels", help="comma-separated, one per study (default: the directory names)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    labels = a.labels.split(",") if a.labels else [Path(s).name for s in a.studies]
    if len(labels) != len(a.studies):
        sys.exit(f"--labels has {len(labels)} names for {len(a.studies)} studies")
    plot_studies([load(s) for s in a.studies], labels, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
