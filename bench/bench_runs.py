"""What the CPU benchmarks share: one measured process per run, the driver's step rates, and the
machine and commit a result file names.

Imported by bench/cpu_train_bench.py, bench/packing_checkpoint_bench.py, bench/smollm2_bench.py and
bench/sharded_merge_bench.py (run from any directory: each puts bench/ on sys.path).
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_measured(cmd, env, log, who):
    """Runs cmd with its output in log; returns its peak RSS in bytes (wait4's rusage of that child
    alone, so the benchmark's own Python does not count). A failure ends the benchmark with the
    log's tail: a figure from a failed run would be wrong, not noisy."""
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(open(log).read()[-3000:])
        raise SystemExit(f"{who}: {' '.join(cmd)} failed")
    return usage.ru_maxrss * 1024


def step_rates(metrics):
    """tokens/s of every step after the first (the first pays for allocation and warm-up) from a
    driver's metrics.jsonl."""
    rows = [json.loads(l) for l in open(metrics)]
    return [r["tokens_per_s"] for r in rows[1:]]


def cpu_name():
    """lscpu's model name, or "CPU"."""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "CPU"


def file_tag(cpu):
    """The CPU's name as a result file's name takes it ("AMD EPYC 7B13" -> "AMD-EPYC-7B13")."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in cpu.split("@")[0].strip())


def commit(paths=("src", "include")):
    """HEAD's short hash, with -dirty when the measured code (paths) has local changes."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "--", *paths]).returncode != 0
    return head + ("-dirty" if dirty else "")


def write_result(path, lines):
    """Writes a result file's lines (its folder made if missing) and prints them, naming the file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {path}")
