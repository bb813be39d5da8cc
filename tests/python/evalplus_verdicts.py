"""EvalPlus' own verdicts on the fixture datasets and samples: the oracle of tests/test_evalplus.cpp.

For each DATASET SAMPLES pair (EvalPlus JSONL files, plain or gzipped), runs the checker of the
pinned PyPI package evalplus (0.3.1) exactly as `evalplus.evaluate` does for a samples file:
get_groundtruth (expected outputs and canonical times; cached under a temporary directory), then
check_correctness per sample with the default time limits and the fast check, and writes one line
per sample, in file order, to OUT/<basename of SAMPLES>.verdicts.jsonl:
    {"task_id": ..., "base_status": "pass" | "fail" | "timeout", "plus_status": ...}
Solutions are `solution`, or the task's prompt + `completion`, as evalplus.data.load_solutions
gives them to evaluate().

usage: evalplus_verdicts.py OUT humaneval|mbpp DATASET SAMPLES [humaneval|mbpp DATASET SAMPLES ...]
"""
import json
import os
import sys
import tempfile
import types


def import_evalplus(cache):
    # evalplus.data imports `datasets` at the top for EvalPerf, which scoring never calls; the
    # package is installed without its LLM-provider and dataset dependencies (scripts/setup.sh).
    if "datasets" not in sys.modules:
        stub = types.ModuleType("datasets")
        stub.load_dataset = None
        sys.modules["datasets"] = stub
    os.environ["XDG_CACHE_HOME"] = cache  # get_groundtruth caches into appdirs' user cache dir
    import evalplus
    from evalplus import evaluate
    from evalplus.data.mbpp import mbpp_deserialize_inputs
    from evalplus.data.utils import stream_jsonl
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    if getattr(evalplus, "__version__", "") != "0.3.1":
        sys.exit(f"evalplus_verdicts: evalplus {getattr(evalplus, '__version__', '?')} installed, expected 0.3.1")
    return evaluate, mbpp_deserialize_inputs, stream_jsonl, MBPP_OUTPUT_NOT_NONE_TASKS


def verdicts(dataset, problems_path, samples_path, ep):
    evaluate, mbpp_deserialize_inputs, stream_jsonl, not_none = ep
    problems = {t["task_id"]: t for t in stream_jsonl(problems_path)}
    if dataset == "mbpp":  # as evalplus.data.get_mbpp_plus does
        for task_id, task in problems.items():
            task["base_input"] = mbpp_deserialize_inputs(task_id, task["base_input"])
            task["plus_input"] = mbpp_deserialize_inputs(task_id, task["plus_input"])
    with open(problems_path, "rb") as f:
        import hashlib
        digest = hashlib.md5(f.read()).hexdigest()
    expected = evaluate.get_groundtruth(problems, digest, not_none if dataset == "mbpp" else [])
    out = []
    for i, sample in enumerate(stream_jsonl(samples_path)):
        problem = problems[sample["task_id"]]
        solution = sample["solution"] if "solution" in sample else problem["prompt"] + sample["completion"]
        res = evaluate.check_correctness(dataset, i, problem, solution, expected[sample["task_id"]],
                                         base_only=False, fast_check=True)
        out.append({"task_id": sample["task_id"], "base_status": res["base"][0], "plus_status": res["plus"][0]})
    return out


def main():
    args = sys.argv[1:]
    if len(args) < 4 or (len(args) - 1) % 3 != 0:
        sys.exit(__doc__)
    out_dir = args[0]
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        ep = import_evalplus(cache)
        for k in range(1, len(args), 3):
            dataset, problems_path, samples_path = args[k:k + 3]
            if dataset not in ("humaneval", "mbpp"):
                sys.exit(f"evalplus_verdicts: dataset must be humaneval or mbpp, got {dataset}")
            rows = verdicts(dataset, problems_path, samples_path, ep)
            dst = os.path.join(out_dir, os.path.basename(samples_path) + ".verdicts.jsonl")
            with open(dst + ".tmp", "w") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
            os.replace(dst + ".tmp", dst)
            print(f"evalplus_verdicts: {len(rows)} verdicts -> {dst}")


if __name__ == "__main__":
    main()
