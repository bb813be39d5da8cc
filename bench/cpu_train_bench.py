#!/usr/bin/env python3
"""CPU training throughput and peak memory: xft against PyTorch eager, same model and data.

    bench/cpu_train_bench.py [--steps 12] [--repeats 3] [--threads 2] [--hidden 128] ...

Makes a bench world (bench/make_bench_world.py: a random Llama, fixed-length pre-tokenised
records, so every micro-batch has the same [B, T] shape and no padding), then, alternating,
REPEATS times each, one process per run:
  - SFT: xft's `sft` driver (build/examples/sft) against bench/torch_eager_train.py --stage sft
    (transformers' LlamaForCausalLM + torch.optim.AdamW);
  - MoE: xft's `xft` driver (its MoE stage; the other stages run one step) against
    bench/torch_eager_train.py --stage moe (the reference code's per-expert Python loop).
Both sides: AdamW lr 1e-4 without weight decay, fp32, OMP_NUM_THREADS = torch threads = --threads.
tokens/s: the median over the steps after the first of every run; peak memory: the median of the
runs' peak RSS (the whole process: libraries, model, optimizer state, activations).
Writes bench/results/<date>-<cpu>-<cores>-cores-<threads>-threads-cpu-train.md.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runs  # noqa: E402  (bench/ is not a package)

ROOT = bench_runs.ROOT

WHO = "cpu_train_bench"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--stages", default="sft,moe")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="xft-cpu-bench-")
    world = os.path.join(tmp, "world")
    subprocess.run([py, os.path.join(ROOT, "bench", "make_bench_world.py"), world, "--device", "cpu", "--hidden",
                    str(a.hidden), "--layers", str(a.layers), "--vocab", str(a.vocab), "--records", "256", "--length",
                    str(a.length), "--steps", str(a.steps), "--micro-batch", str(a.micro_batch)], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    config = os.path.join(world, "experiment.json")
    results = {}
    load_before = os.getloadavg()[0]
    for stage in a.stages.split(","):
        xs, ts, xm, tm = [], [], [], []
        for i in range(a.repeats):
            run_dir = os.path.join(tmp, f"{stage}{i}")
            if stage == "sft":
                cmd = [os.path.join(a.build, "examples", "sft"), "--config", config, "--set", f"run_dir={run_dir}",
                       "--set", f"sft_train.max_steps={a.steps}"]
                metrics = os.path.join(run_dir, "sft", "metrics.jsonl")
            else:
                cmd = [os.path.join(a.build, "examples", "xft"), "--config", config, "--set", f"run_dir={run_dir}"]
                metrics = os.path.join(run_dir, "xft", "moe", "metrics.jsonl")
            xm.append(bench_runs.run_measured(cmd, env, run_dir + ".log", WHO))
            xs += bench_runs.step_rates(metrics)
            log = run_dir + "-torch.log"
            torch_cmd = [py, os.path.join(ROOT, "bench", "torch_eager_train.py"), world, "--stage", stage, "--steps",
                         str(a.steps), "--threads", str(a.threads), "--micro-batch", str(a.micro_batch)]
            tm.append(bench_runs.run_measured(torch_cmd, env, log, WHO))
            ts += json.loads(open(log).read().strip().splitlines()[-1])["tokens_per_s"][1:]
        results[stage] = {"xft_tokens_per_s": statistics.median(xs), "torch_tokens_per_s": statistics.median(ts),
                          "xft_peak_rss": statistics.median(xm), "torch_peak_rss": statistics.median(tm),
                          "steps": len(xs)}
    cpu, cores, measured = bench_runs.cpu_name(), os.cpu_count(), bench_runs.commit()
    now = datetime.datetime.now(datetime.timezone.utc)
    tag = bench_runs.file_tag(cpu)
    out = os.path.join(a.out, f"{now:%Y-%m-%d}-{tag}-{cores}-cores-{a.threads}-threads-cpu-train.md")
    lines = ["# CPU training throughput: xft against PyTorch eager\n",
             f"- date (UTC): {now:%Y-%m-%d %H:%M}",
             f"- machine: {cpu} ({cores} cores; the load average says what else ran)",
             f"- commit: {measured}",
             f"- load average (1 min) before / after the runs: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
             f"- model: random Llama {a.layers} layers x {a.hidden} hidden, vocab {a.vocab}; micro-batch "
             f"{a.micro_batch} x {a.length} tokens (no padding), AdamW lr 1e-4, fp32, {a.threads} threads",
             f"- runs: {a.repeats} per side, alternating, {a.steps} steps each, steps after the first;"
             f" `bench/cpu_train_bench.py --steps {a.steps} --repeats {a.repeats} --threads {a.threads}`",
             "- MoE: 8 experts (expert 0 shared), top-6, Eq. 2 routing, cv2 aux loss; PyTorch side: a per-expert "
             "Python loop (the reference code's style); xft's number is its MoE stage inside the `xft` driver",
             "", "| stage | xft tokens/s | PyTorch tokens/s | ratio | xft peak RSS | PyTorch peak RSS | ratio |",
             "|---|---|---|---|---|---|---|"]
    for stage, r in results.items():
        lines.append(f"| {stage} | {r['xft_tokens_per_s']:.0f} | {r['torch_tokens_per_s']:.0f} | "
                     f"{r['xft_tokens_per_s'] / r['torch_tokens_per_s']:.2f} | {r['xft_peak_rss'] / 2**20:.0f} MiB | "
                     f"{r['torch_peak_rss'] / 2**20:.0f} MiB | {r['xft_peak_rss'] / r['torch_peak_rss']:.2f} |")
    lines += ["", "Targets (SFT): tokens/s ratio >= 1.5, peak memory ratio <= 0.7.",
              "Peak RSS is the whole process; at this model size it is mostly the libraries (libtorch, and "
              "Python with transformers on the PyTorch side), not the training state."]
    bench_runs.write_result(out, lines)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
