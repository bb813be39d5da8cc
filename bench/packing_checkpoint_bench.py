#!/usr/bin/env python3
"""Sequence packing and activation checkpointing on CPU: throughput and peak memory of the SFT stage.

    bench/packing_checkpoint_bench.py [--steps 6] [--repeats 2] [--threads 1] [--hidden 256] ...

Makes a bench world (bench/make_bench_world.py: a random Llama, pre-tokenised records), then runs
xft's `sft` driver, one process per run, alternating the two sides of each comparison REPEATS
times:
  - packing: records of variable length (log-normal, median --median tokens, clipped to
    [24, --length], the skew of real instruction data: many short answers, a few long ones),
    data.packing false (one record per row, padded to the longest in the micro-batch) against
    true (records packed into rows of --length with per-document masks and positions);
  - checkpointing: records of exactly --length tokens, activation_checkpointing false against true.
tokens/s counts real (not padding) tokens: the median over the steps after the first of every
run; peak memory: the median of the runs' peak RSS (the whole process). Writes
bench/results/<date>-<cpu>-<cores>-cores-packing-checkpointing.md.
"""
import argparse
import datetime
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runs  # noqa: E402  (bench/ is not a package)

ROOT = bench_runs.ROOT


def variable_records(path, n, length, median, vocab, seed):
    """Rewrites the world's data with records of log-normal lengths; returns the lengths."""
    rng = random.Random(seed)
    lengths = []
    with open(path, "w") as f:
        for _ in range(n):
            total = int(min(length, max(24, round(math.exp(rng.gauss(math.log(median), 0.8))))))
            lengths.append(total)
            body = total - 2  # BOS and EOS come around each record
            ids = [rng.randrange(3, vocab) for _ in range(body)]
            p = max(1, body // 4)
            f.write(json.dumps({"prompt_ids": ids[:p], "response_ids": ids[p:]}) + "\n")
    return lengths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--median", type=int, default=160)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="xft-pack-bench-")
    world = os.path.join(tmp, "world")
    subprocess.run([py, os.path.join(ROOT, "bench", "make_bench_world.py"), world, "--device", "cpu", "--hidden",
                    str(a.hidden), "--layers", str(a.layers), "--vocab", str(a.vocab), "--records", "512", "--length",
                    str(a.length), "--micro-batch", str(a.micro_batch)], check=True, stdout=subprocess.DEVNULL)
    fixed = os.path.join(world, "data.jsonl")
    varied = os.path.join(world, "varied.jsonl")
    lengths = variable_records(varied, 2048, a.length, a.median, a.vocab, 1)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    config = os.path.join(world, "experiment.json")
    sides = {
        "packing": [("unpacked", [f"data.path={varied}", "data.packing=false"]),
                    ("packed", [f"data.path={varied}", "data.packing=true"])],
        "checkpointing": [("off", [f"data.path={fixed}", "sft_train.activation_checkpointing=false"]),
                          ("on", [f"data.path={fixed}", "sft_train.activation_checkpointing=true"])],
    }
    load_before = os.getloadavg()[0]
    results = {}
    for name, pair in sides.items():
        got = {label: {"rates": [], "rss": []} for label, _ in pair}
        for i in range(a.repeats):
            for label, sets in pair:
                run_dir = os.path.join(tmp, f"{name}-{label}-{i}")
                cmd = [os.path.join(a.build, "examples", "sft"), "--config", config, "--set", f"run_dir={run_dir}",
                       "--set", f"sft_train.max_steps={a.steps}"]
                for s in sets:
                    cmd += ["--set", s]
                got[label]["rss"].append(bench_runs.run_measured(cmd, env, run_dir + ".log", "packing_checkpoint_bench"))
                got[label]["rates"] += bench_runs.step_rates(os.path.join(run_dir, "sft", "metrics.jsonl"))
        results[name] = {label: {"tokens_per_s": statistics.median(v["rates"]), "peak_rss": statistics.median(v["rss"]),
                                 "steps": len(v["rates"])} for label, v in got.items()}
    cpu, cores, measured = bench_runs.cpu_name(), os.cpu_count(), bench_runs.commit()
    now = datetime.datetime.now(datetime.timezone.utc)
    tag = bench_runs.file_tag(cpu)
    out = os.path.join(a.out, f"{now:%Y-%m-%d}-{tag}-{cores}-cores-packing-checkpointing.md")
    mean_len = sum(lengths) / len(lengths)
    p, c = results["packing"], results["checkpointing"]
    lines = ["# Sequence packing and activation checkpointing: SFT stage on CPU\n",
             f"- date (UTC): {now:%Y-%m-%d %H:%M}",
             f"- machine: {cpu} ({cores} cores; the load average says what else ran)",
             f"- commit: {measured}",
             f"- load average (1 min) before / after the runs: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
             f"- model: random Llama {a.layers} layers x {a.hidden} hidden, vocab {a.vocab}; micro-batch "
             f"{a.micro_batch} rows x up to {a.length} tokens, AdamW, fp32, {a.threads} thread(s)",
             f"- runs: {a.repeats} per side, alternating, {a.steps} steps each, steps after the first; "
             f"`bench/packing_checkpoint_bench.py --steps {a.steps} --repeats {a.repeats} --threads {a.threads}`",
             f"- packing data: 2048 records, log-normal lengths (median {a.median}, clipped to [24, {a.length}]), "
             f"mean {mean_len:.0f} tokens; tokens/s counts real tokens only",
             "", "| comparison | side | tokens/s | peak RSS |", "|---|---|---|---|"]
    for name, sides_r in results.items():
        for label, r in sides_r.items():
            lines.append(f"| {name} | {label} | {r['tokens_per_s']:.0f} | {r['peak_rss'] / 2**20:.0f} MiB |")
    lines += ["",
              f"- packing: tokens/s ratio packed / unpacked = {p['packed']['tokens_per_s'] / p['unpacked']['tokens_per_s']:.2f} "
              f"(target >= 1.3); peak RSS ratio {p['packed']['peak_rss'] / p['unpacked']['peak_rss']:.2f}",
              f"- checkpointing: peak RSS ratio on / off = {c['on']['peak_rss'] / c['off']['peak_rss']:.2f}, "
              f"tokens/s ratio on / off = {c['on']['tokens_per_s'] / c['off']['tokens_per_s']:.2f} "
              "(the price of one more forward)"]
    bench_runs.write_result(out, lines)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
