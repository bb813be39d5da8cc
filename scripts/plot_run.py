#!/usr/bin/env python3
"""Pictures of an xft run directory (sft/, xft/moe/, xft/merge*/, ewa/, ...): what happened inside.

    .venv/bin/python scripts/plot_run.py RUN_DIR [--out DIR] [--tensorboard DIR]

Writes into --out (default RUN_DIR/plots):
  loss.png               training loss of every stage by step, and each stage's held-out loss
  lr_grad_norm.png       learning rate and gradient norm of every stage
  expert_load.png        per MoE stage and layer: the fraction of tokens each expert took over steps
  merge_coefficients.png per merge stage and layer: every expert's mixing coefficient over steps
  study.png              for a study directory (xft-study, xft-demo): the arms per seed and the
                         paired comparisons with their confidence intervals (scripts/plot_study.py)
--tensorboard DIR also writes TensorBoard event files afterwards (the `tensorboard` package of
scripts/requirements.txt), with the tags a run writes live under the experiment config's
logging.tensorboard (src/train/tensorboard_log.h).
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the rest of the curve is still worth drawing
    return rows


def stages(run_dir):
    """{stage name: rows} for every metrics.jsonl under the run, in a stable order."""
    found = {}
    for path in sorted(Path(run_dir).rglob("metrics.jsonl")):
        name = str(path.parent.relative_to(run_dir)) or "."
        found[name] = read_rows(path)
    return found


def heldout(run_dir):
    out = {}
    for path in sorted(Path(run_dir).rglob("eval*.json")):
        try:
            j = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if "heldout_loss" in j:
            label = str(path.relative_to(run_dir)).replace("/eval.json", "").replace(".json", "")
            out[label] = j["heldout_loss"]
    return out


def plot_loss(all_rows, evals, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rows in all_rows.items():
        a.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name)
    a.set(xlabel="optimizer step", ylabel="training loss", title="training loss")
    a.legend(fontsize=8)
    if evals:
        names = list(evals)
        b.barh(names, [evals[n] for n in names], color="tab:blue")
        for i, n in enumerate(names):
            b.text(evals[n], i, f" {evals[n]:.4f}", va="center", fontsize=8)
        b.set(xlabel="held-out loss per response token", title="held-out loss")
        lo = min(evals.values())
        b.set_xlim(lo * 0.97, max(evals.values()) * 1.03)
    else:
        b.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)


def plot_lr_norm(all_rows, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for name, rows in all_rows.items():
        steps = [r["step"] for r in rows]
        a.plot(steps, [r.get("lr", 0) for r in rows], label=name)
        b.plot(steps, [r.get("grad_norm", 0) for r in rows], label=name)
    a.set(xlabel="optimizer step", ylabel="learning rate", title="learning rate")
    b.set(xlabel="optimizer step", ylabel="gradient L2 norm", title="gradient norm", yscale="log")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lr_grad_norm.png", dpi=110)
    plt.close(fig)


def plot_grid(series, out, file, title, ylabel):
    """series: {(stage, layer): (steps, matrix[expert][step])}; one heatmap per stage and layer."""
    if not series:
        return False
    keys = sorted(series)
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, key in zip(axes.flat, keys):
        steps, matrix = series[key]
        ax.set_axis_on()
        im = ax.imshow(matrix, aspect="auto", origin="lower", cmap="viridis",
                       extent=[steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(matrix) - 0.5])
        ax.set(title=f"{key[0]} layer {key[1]}", xlabel="step", ylabel=ylabel)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / file, dpi=110)
    plt.close(fig)
    return True


def layer_series(all_rows, key, per_layer):
    """{(stage, layer): (steps, matrix[expert][step])} from the rows that carry `key`;
    per_layer(row[key][layer]) gives that layer's per-expert values."""
    series = {}
    for name, rows in all_rows.items():
        rows = [r for r in rows if key in r]
        if not rows:
            continue
        for layer in range(len(rows[0][key])):
            matrix = list(zip(*[per_layer(r[key][layer]) for r in rows]))
            series[(name, layer)] = ([r["step"] for r in rows], matrix)
    return series


def write_tensorboard(all_rows, directory):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # the tensorboard package is what SummaryWriter needs
        sys.exit(f"--tensorboard needs the tensorboard package (scripts/setup.sh installs it): {e}")
    for name, rows in all_rows.items():
        writer = SummaryWriter(str(Path(directory) / name.replace("/", "_")))
        for r in rows:
            for key in ("loss", "aux_loss", "lr", "grad_norm", "tokens_per_s"):
                if key in r:
                    writer.add_scalar(key, r[key], r["step"])
            for layer, stats in enumerate(r.get("moe", [])):
                writer.add_scalar(f"moe/layer{layer}/entropy", stats["entropy"], r["step"])
                writer.add_scalar(f"moe/layer{layer}/shared_weight", stats["shared_weight"], r["step"])
                if "aux_loss" in stats:
                    writer.add_scalar(f"moe/layer{layer}/aux_loss", stats["aux_loss"], r["step"])
                for e, frac in enumerate(stats["load"]):
                    writer.add_scalar(f"moe/layer{layer}/load_expert{e}", frac, r["step"])
            for layer, coefs in enumerate(r.get("coefficients", [])):
                for e, c in enumerate(coefs):
                    writer.add_scalar(f"merge/layer{layer}/expert{e}", c, r["step"])
        writer.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--out", help="where the PNGs go (default RUN_DIR/plots)")
    p.add_argument("--tensorboard", help="also write TensorBoard event files here")
    a = p.parse_args()
    run = Path(a.run_dir)
    if not run.is_dir():
        sys.exit(f"{run}: not a directory")
    all_rows = {k: v for k, v in stages(run).items() if v}
    if not all_rows:
        sys.exit(f"{run}: no metrics.jsonl with any row under it")
    out = Path(a.out) if a.out else run / "plots"
    out.mkdir(parents=True, exist_ok=True)
    plot_loss(all_rows, heldout(run), out)
    plot_lr_norm(all_rows, out)
    made = ["loss.png", "lr_grad_norm.png"]
    if plot_grid(layer_series(all_rows, "moe", lambda s: s["load"]), out, "expert_load.png", "fraction of tokens per expert", "expert"):
        made.append("expert_load.png")
    if plot_grid(layer_series(all_rows, "coefficients", lambda c: c), out, "merge_coefficients.png", "merge coefficients", "expert"):
        made.append("merge_coefficients.png")
    if (run / "results.json").is_file() and "comparisons" in json.loads((run / "results.json").read_text()):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from plot_study import load, plot_studies

        plot_studies([load(run)], [run.name], out / "study.png")
        made.append("study.png")
    if a.tensorboard:
        write_tensorboard(all_rows, a.tensorboard)
    print("wrote " + ", ".join(str(out / m) for m in made))


if __name__ == "__main__":
    main()
