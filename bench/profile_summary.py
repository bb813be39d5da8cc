#!/usr/bin/env python3
"""Self time per op from a torch profiler Chrome trace: where a training step's time goes.

    bench/profile_summary.py TRACE.json [--top 25] [--steps N]

Reads the trace that xft (XFT_PROFILE, xft/train/step_profiler.h) or torch.profiler's
export_chrome_trace wrote; on each thread, an op's self time is its duration less its children's
(the ops nested inside it). Prints a Markdown table: op, calls, self ms (per step when --steps is
given), share of the total. The same reader for both sides keeps the breakdowns comparable.
"""
import argparse
import collections
import json


def self_times(events):
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "Operator", "user_annotation") and "dur" in e:
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals = collections.defaultdict(float)
    calls = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
        stack = []  # [end, name, child time]
        for e in evs:
            ts, dur = float(e["ts"]), float(e["dur"])
            while stack and ts >= stack[-1][0]:
                end, name, child, own = stack.pop()
                totals[name] += own - child
            if stack:
                stack[-1][2] += dur
            stack.append([ts + dur, e["name"], 0.0, dur])
            calls[e["name"]] += 1
        while stack:
            end, name, child, own = stack.pop()
            totals[name] += own - child
    return totals, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--steps", type=int, default=1, help="profiled steps: times are shown per step")
    a = ap.parse_args()
    with open(a.trace) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals, calls = self_times(events)
    if not totals:
        raise SystemExit(f"profile_summary: no op events in {a.trace}")
    whole = sum(totals.values())
    print(f"| op | calls / step | self ms / step | share |\n|---|---|---|---|")
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f"| `{name}` | {calls[name] / a.steps:.0f} | {t / 1000 / a.steps:.1f} | {100 * t / whole:.1f}% |")
    print(f"| (all ops) | | {whole / 1000 / a.steps:.1f} | 100% |")


if __name__ == "__main__":
    main()
