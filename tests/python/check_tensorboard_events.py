"""Reads the TensorBoard event files xft wrote for one training stage with tensorboard's own
reader, and checks them against the stage's metrics.jsonl written by torch's SummaryWriter
(scripts/plot_run.py --tensorboard, the reference writer): the same tags, each with the steps of
metrics.jsonl exactly once and in order, and the same values (both float32, TensorBoard's
simple_value).

usage: check_tensorboard_events.py EVENT_DIR METRICS_JSONL SOURCE_DIR [--steps N] [--require TAG ...]
  --steps N       metrics.jsonl must hold exactly N rows (a check while the stage trains)
  --require TAG   a tag that must be there (the MoE load, the merge coefficients)
Exits 0 when they agree; otherwise prints what differs and exits 1.
"""
import argparse
import glob
import json
import os
import sys
import tempfile

from tensorboard.backend.event_processing import event_accumulator, event_file_loader


def scalars(path):
    """{tag: [(step, value), ...]} as TensorBoard loads them; orphaned or repeated steps are kept
    (purge_orphaned_data=False), so a step written twice shows twice."""
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0},
                                             purge_orphaned_data=False)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("event_dir")
    p.add_argument("metrics")
    p.add_argument("source_dir")
    p.add_argument("--steps", type=int)
    p.add_argument("--require", action="append", default=[])
    a = p.parse_args()
    errors = []
    files = sorted(glob.glob(os.path.join(a.event_dir, "*tfevents*")))
    if len(files) != 1:
        sys.exit(f"{a.event_dir}: expected one event file, found {files}")
    # Every record passes tensorboard's CRC checks and the first event is the file version.
    events = list(event_file_loader.EventFileLoader(files[0]).Load())
    if not events or events[0].file_version != "brain.Event:2":
        errors.append(f"{files[0]}: the first event is not file_version brain.Event:2: {events[:1]}")
    with open(a.metrics) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if len(events) != len(rows) + 1:
        errors.append(f"{files[0]}: {len(events)} events for {len(rows)} metrics rows (expected one each + the version)")
    if a.steps is not None and len(rows) != a.steps:
        errors.append(f"{a.metrics}: {len(rows)} rows, expected {a.steps}")
    sys.path.insert(0, os.path.join(a.source_dir, "scripts"))
    import plot_run

    with tempfile.TemporaryDirectory() as ref_dir:
        plot_run.write_tensorboard({"stage": rows}, ref_dir)
        want = scalars(os.path.join(ref_dir, "stage"))
    got = scalars(a.event_dir)
    if sorted(got) != sorted(want):
        errors.append(f"tags differ: only xft's {sorted(set(got) - set(want))}, only the reference's "
                      f"{sorted(set(want) - set(got))}")
    for tag in sorted(set(got) & set(want)):
        if got[tag] != want[tag]:
            errors.append(f"{tag}: xft {got[tag]} != reference {want[tag]}")
    steps = [r["step"] for r in rows]
    if got.get("loss") is not None and [s for s, _ in got["loss"]] != steps:
        errors.append(f"loss steps {[s for s, _ in got['loss']]} != metrics.jsonl's {steps}")
    for tag in a.require:
        if tag not in got:
            errors.append(f"tag {tag} missing; have {sorted(got)}")
    if "loss" not in got and rows:
        errors.append(f"no loss tag; have {sorted(got)}")
    for e in errors:
        print("check_tensorboard_events: " + e, file=sys.stderr)
    if not errors:
        print(f"check_tensorboard_events: {a.event_dir}: {len(got)} tags x {len(rows)} steps agree")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
