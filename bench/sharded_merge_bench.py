#!/usr/bin/env python3
"""Per-rank memory of the merge stage's frozen expert stacks, sharded over 1, 2 and 4 ranks.

    bench/sharded_merge_bench.py [--hidden 512] [--layers 4] [--worlds 1,2,4] [--out FILE]

Makes a bench world on the CPU (bench/make_bench_world.py: a random Llama, 8 experts top-6,
bf16 checkpoints), tunes its MoE once (the xft driver, one process, 2 steps), then runs the merge
stage alone on P ranks for each P (merge_name=merge-wP, so the finished MoE stage is reused)
with distributed.shard_merge=true, the ranks launched with the launcher's variables set by hand
(Gloo). Per rank it reads the bytes of expert stacks the rank reports holding (the merge's log
line "[merge] rank r holds B bytes of expert stacks") and the process's peak RSS (wait4). The
stacks are the measure; the RSS peak also holds the whole MoE checkpoint that every rank loads
before cutting its rows. Also checks that every world's coefficients equal the one-rank run's.
Writes bench/results/<date>-sharded-merge.md (machine, date, commit).
"""
import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runs  # noqa: E402  (bench/ is not a package)

ROOT = bench_runs.ROOT


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_ranks(cmd, world, logdir):
    """Launches `world` ranks of cmd; returns [(rank, rc, peak RSS bytes, log text)]."""
    port = free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = open(os.path.join(logdir, f"rank{r}.log"), "w")
        procs.append((r, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    out = []
    for r, p, log in procs:
        _, status, usage = os.wait4(p.pid, 0)
        log.close()
        text = open(os.path.join(logdir, f"rank{r}.log")).read()
        out.append((r, os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, text))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--worlds", default="1,2,4")
    ap.add_argument("--build", default=os.environ.get("XFT_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    py = sys.executable
    xft = os.path.join(a.build, "examples", "xft")
    tmp = tempfile.mkdtemp(prefix="xft-sharded-merge-")
    subprocess.run([py, os.path.join(ROOT, "bench", "make_bench_world.py"), tmp, "--device", "cpu", "--hidden",
                    str(a.hidden), "--layers", str(a.layers), "--records", "64", "--length", "64", "--steps", "2",
                    "--micro-batch", "4"], check=True)
    config = os.path.join(tmp, "experiment.json")
    common = [xft, "--config", config, "--set", "merge_train.global_batch=8", "--set", "merge_train.micro_batch=2",
              "--set", "merge_train.max_steps=2"]
    # The MoE stage once (and its merge, unsharded, on one process).
    with open(os.path.join(tmp, "moe.log"), "w") as log:
        subprocess.run(common, check=True, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    rows = []
    coefficients = {}
    for world in [int(w) for w in a.worlds.split(",")]:
        logdir = os.path.join(tmp, f"w{world}")
        os.makedirs(logdir)
        ranks = run_ranks(common + ["--set", f"merge_name=merge-w{world}", "--set", "distributed.shard_merge=true"],
                          world, logdir)
        for r, rc, rss, text in ranks:
            if rc != 0:
                sys.exit(f"world {world} rank {r} failed (rc {rc}):\n{text[-3000:]}")
            m = re.search(r"\[merge\] rank %d holds (\d+) bytes of expert stacks" % r, text)
            rows.append((world, r, int(m.group(1)), rss))
        with open(os.path.join(tmp, "run", "xft", f"merge-w{world}", "coefficients.json")) as f:
            coefficients[world] = json.load(f)["layers"]
    base = coefficients[min(coefficients)]
    worst = max(abs(x - y) for w in coefficients for l, layer in enumerate(coefficients[w])
                for x, y in zip(layer, base[l]))

    machine = f"{bench_runs.cpu_name()} ({os.cpu_count()} cores), {platform.system()}"
    date = datetime.datetime.now(datetime.timezone.utc)
    out = a.out or os.path.join(ROOT, "bench", "results", f"{date:%Y-%m-%d}-sharded-merge.md")
    whole = [b for w, r, b, _ in rows if w == 1][0] if any(w == 1 for w, *_ in rows) else None
    with open(out, "w") as f:
        f.write("# Sharded merge: expert stacks per rank\n\n")
        f.write(f"- date (UTC): {date:%Y-%m-%d %H:%M}\n- machine: {machine}\n- commit: {bench_runs.commit()}\n")
        f.write(f"- model: bench world (bench/make_bench_world.py), Llama {a.layers} layers x hidden {a.hidden}, "
                "8 experts (1 shared), stacks saved in bf16\n")
        f.write("- run: `bench/sharded_merge_bench.py` — the merge stage alone (2 steps, global batch 8, micro-batch 2) "
                "with `distributed.shard_merge=true` on P Gloo ranks, each a process of one thread\n\n")
        f.write("| world | rank | experts held | stack bytes | vs one rank | peak RSS (MB) |\n|---|---|---|---|---|---|\n")
        for w, r, b, rss in rows:
            ratio = f"{b / whole:.3f}" if whole else ""
            f.write(f"| {w} | {r} | {round(8 * b / whole) if whole else ''} | {b} | {ratio} | {rss / 1e6:.0f} |\n")
        f.write(f"\nLargest coefficient difference from the one-rank merge over all worlds: {worst:.2e} "
                "(the tests hold it to 1e-5).\n\n")
        f.write("The stacks per rank fall as ceil(8 / world) / 8. The peak RSS does not: every rank loads the "
                "whole MoE checkpoint (and converts it) before cutting its rows, and that load is the process's peak "
                "at this size; the stacks a rank keeps while it trains are what shrink.\n")
    print(open(out).read())


if __name__ == "__main__":
    main()
