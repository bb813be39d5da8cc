#!/usr/bin/env python3
"""The real model on this CPU's bf16 units: SmolLM2-135M training steps and generation, xft against
PyTorch eager, side by side in one run, with the GEMM peak they are measured against.

    bench/smollm2_bench.py MODEL_DIR [--steps 8] [--repeats 2] [--threads 2] [--length 256] [--micro-batch 4]

MODEL_DIR: SmolLM2-135M-Instruct as scripts/import_gguf.py --smollm2 writes it. One run measures:
  - the GEMM peak: torch bf16 and fp32 2048x2048 matmuls at --threads threads (GFLOP/s);
  - SFT and the MoE stage (4 experts, top-2 with the shared one) on fixed-length pre-tokenised
    records (bench/make_bench_world.py --base): xft's drivers with precision bf16_autocast against
    bench/torch_eager_train.py (transformers + torch.autocast bf16 + fused AdamW), alternating,
    --repeats runs a side, tokens/s the median of the steps after the first;
  - model FLOPs utilisation: xft's SFT tokens/s x training FLOPs per token (6 x matmul weights +
    attention) over the bf16 GEMM peak;
  - greedy generation, batch 1: xft-tool generate against transformers' generate (bench/generate_bench.py), fp32 and bf16;
  - with --profile, each side's SFT step under the torch profiler (bench/profile_summary.py tables).
Writes bench/results/<date>-<cpu>-smollm2-bf16.md.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runs  # noqa: E402  (bench/ is not a package)

ROOT = bench_runs.ROOT
WHO = "smollm2_bench"


def gemm_peak(threads, dtype_name, n=2048, reps=20):
    import torch
    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def train_flops_per_token(config, length, moe_active=1):
    """6 x the weights every token multiplies by (attention, MLP x moe_active experts, lm_head), plus
    attention's score and value products (causal: half of 2 x 2 x T x d per layer, x3 for training)."""
    d, f, L = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim", d // heads)
    attn = d * hd * heads * 2 + d * hd * kv * 2
    mlp = 3 * d * f * moe_active
    weights = L * (attn + mlp) + d * config["vocab_size"]
    return 6 * weights + 3 * L * 2 * length * hd * heads


def xft_run(a, world, stage, precision, run_dir, env):
    """One xft run of `stage` at `precision`: (tokens/s of the steps after the first, peak RSS)."""
    config = os.path.join(world, "experiment.json")
    section = "sft_train" if stage == "sft" else "moe_train"
    if stage == "sft":
        cmd = [os.path.join(a.build, "examples", "sft"), "--config", config, "--set", f"run_dir={run_dir}",
               "--set", f"sft_train.max_steps={a.steps}"]
        metrics = os.path.join(run_dir, "sft", "metrics.jsonl")
    else:
        cmd = [os.path.join(a.build, "examples", "xft"), "--config", config, "--set", f"run_dir={run_dir}"]
        metrics = os.path.join(run_dir, "xft", "moe", "metrics.jsonl")
    cmd += ["--set", f"{section}.precision={precision}"]
    rss = bench_runs.run_measured(cmd, env, run_dir + ".log", WHO)
    return bench_runs.step_rates(metrics), rss


def train_runs(a, world, stage, env, tmp):
    """Alternating runs: xft at each of --xft-precisions, then PyTorch eager, --repeats times."""
    py = sys.executable
    xs = {p: [] for p in a.xft_precisions}
    xm = {p: [] for p in a.xft_precisions}
    ts, tm = [], []
    for i in range(a.repeats):
        for p in a.xft_precisions:
            rates, rss = xft_run(a, world, stage, p, os.path.join(tmp, f"{stage}-{p}-{i}"), env)
            xs[p] += rates
            xm[p].append(rss)
        run_dir = os.path.join(tmp, f"{stage}{i}")
        log = run_dir + "-torch.log"
        torch_cmd = [py, os.path.join(ROOT, "bench", "torch_eager_train.py"), world, "--stage", stage, "--steps",
                     str(a.steps), "--threads", str(a.threads), "--micro-batch", str(a.micro_batch),
                     "--autocast", "bf16", "--adamw", "fused"]
        tm.append(bench_runs.run_measured(torch_cmd, env, log, WHO))
        ts += json.loads(open(log).read().strip().splitlines()[-1])["tokens_per_s"][1:]
    return {p: {"xft": statistics.median(xs[p]), "torch": statistics.median(ts), "xft_rss": statistics.median(xm[p]),
                "torch_rss": statistics.median(tm), "steps": len(xs[p])} for p in a.xft_precisions}


def profiles(a, world, env, tmp):
    """Self-time tables of one SFT run a side (3 steps after the first)."""
    out = {}
    pdir = os.path.join(tmp, "profile")
    cmd = [os.path.join(a.build, "examples", "sft"), "--config", os.path.join(world, "experiment.json"), "--set",
           f"run_dir={os.path.join(tmp, 'prof-run')}", "--set", "sft_train.max_steps=5"]
    bench_runs.run_measured(cmd, dict(env, XFT_PROFILE=pdir, XFT_PROFILE_STEPS="3"), os.path.join(tmp, "prof.log"), WHO)
    trace = os.path.join(tmp, "torch.trace.json")
    bench_runs.run_measured([sys.executable, os.path.join(ROOT, "bench", "torch_eager_train.py"), world, "--stage",
                             "sft", "--steps", "5", "--threads", str(a.threads), "--micro-batch", str(a.micro_batch),
                             "--autocast", "bf16", "--adamw", "fused", "--profile", trace], env,
                            os.path.join(tmp, "prof-torch.log"), WHO)
    # torch_eager_train profiles steps 2..5 (4 steps); xft steps 2..4 (3 steps).
    for side, path, steps in (("xft", os.path.join(pdir, "sft.trace.json"), 3), ("PyTorch eager", trace, 4)):
        out[side] = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "profile_summary.py"), path,
                                    "--steps", str(steps), "--top", "18"], capture_output=True, text=True,
                                   check=True).stdout
    return out


def generation(a, tmp, env):
    rows = []
    for dtype in ("float32", "bfloat16"):
        out = os.path.join(tmp, "gen-" + dtype)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "generate_bench.py"),
                        os.path.join(a.build, "examples", "xft-tool"), out, "--model", a.model, "--batch", "1",
                        "--prompt", "128", "--new", str(a.new_tokens), "--dtype", dtype], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows.append(json.load(open(os.path.join(out, "generate.json"))))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--stages", default="sft,moe")
    ap.add_argument("--xft-precisions", default="bf16_autocast,bf16",
                    help="xft's precisions to time (bf16_autocast: fp32 weights, bf16 matmuls, as the PyTorch side; "
                         "bf16: bf16 weights with fp32 optimizer state)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    a.model = os.path.abspath(a.model)
    a.xft_precisions = a.xft_precisions.split(",")
    tmp = tempfile.mkdtemp(prefix="xft-smollm2-bench-")
    world = os.path.join(tmp, "world")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_bench_world.py"), world, "--device", "cpu",
                    "--base", a.model, "--precision", "bf16_autocast", "--fused-optimizer", "--experts", "4,2", "--records", "256",
                    "--length", str(a.length), "--steps", str(a.steps), "--micro-batch", str(a.micro_batch)],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    load_before = os.getloadavg()[0]
    peak = {d: gemm_peak(a.threads, d) for d in ("bfloat16", "float32")}
    train = {s: train_runs(a, world, s, env, tmp) for s in a.stages.split(",")}
    gen = [] if a.no_generation else generation(a, tmp, env)
    prof = profiles(a, world, env, tmp) if a.profile else {}
    config = json.load(open(os.path.join(a.model, "config.json")))
    cpu, measured = bench_runs.cpu_name(), bench_runs.commit()
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = ["# SmolLM2-135M on this CPU's bf16 units: xft against PyTorch eager\n",
             f"- date (UTC): {now:%Y-%m-%d %H:%M}",
             f"- machine: {cpu} ({os.cpu_count()} cores), {a.threads} threads a side",
             f"- commit: {measured}",
             f"- load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
             f"- GEMM peak (torch, 2048x2048, {a.threads} threads): bf16 {peak['bfloat16']:.0f} GFLOP/s, fp32 "
             f"{peak['float32']:.0f} GFLOP/s ({peak['bfloat16'] / peak['float32']:.1f}x)",
             f"- training: micro-batch {a.micro_batch} x {a.length} tokens (no padding), AdamW lr 1e-4 (fused on both "
             f"sides); PyTorch `torch.autocast(bfloat16)`, xft at each precision below; {a.repeats} runs a side, "
             f"{a.steps} steps each, steps after the first",
             f"- command: `bench/smollm2_bench.py MODEL --steps {a.steps} --repeats {a.repeats} --threads {a.threads}"
             f" --length {a.length} --micro-batch {a.micro_batch}{' --profile' if a.profile else ''}`",
             "", "| stage | xft precision | xft tokens/s | PyTorch tokens/s | ratio (target >= 1.5) | model TFLOP/s (xft) | "
             "share of bf16 GEMM peak (target >= 40%) | xft peak RSS | PyTorch peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for stage, by_precision in train.items():
        flops = train_flops_per_token(config, a.length, moe_active=2 if stage == "moe" else 1)
        for precision, r in by_precision.items():
            tflops = r["xft"] * flops / 1e12
            lines.append(f"| {stage} | `{precision}` | {r['xft']:.0f} | {r['torch']:.0f} | {r['xft'] / r['torch']:.2f} | "
                         f"{tflops:.3f} | {100 * tflops * 1e3 / peak['bfloat16']:.1f}% | {r['xft_rss'] / 2**30:.1f} GiB | "
                         f"{r['torch_rss'] / 2**30:.1f} GiB |")
    if gen:
        lines += ["", f"Greedy generation, batch 1, 128-token prompt, {a.new_tokens} new tokens:", "",
                  "| dtype | transformers tokens/s | xft tokens/s | ratio (target >= 2) | same tokens |", "|---|---|---|---|---|"]
        for g in gen:
            lines.append(f"| {g['dtype']} | {g['transformers_tokens_per_s']:.1f} | {g['xft_tokens_per_s']:.1f} | "
                         f"{g['ratio_xft_over_transformers']:.2f} | {g['same_tokens']} |")
    for side, table in prof.items():
        lines += ["", f"## Profile of one SFT step: {side} (self time per op, per step)", "", table.strip()]
    bench_runs.write_result(os.path.join(a.out, f"{now:%Y-%m-%d}-{bench_runs.file_tag(cpu)}-smollm2-bf16.md"), lines)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
