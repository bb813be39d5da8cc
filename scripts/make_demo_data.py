"""Builds the demo's instruction data from real code on this machine: documented functions of
the installed Python standard library. The docstring and signature make the instruction, the
body the response. Also writes the source text the demo's tokenizer and base model learn from.

usage: make_demo_data.py OUT_DIR [--max-examples N] [--max-chars C] [--format body|humaneval]
writes OUT_DIR/train.jsonl and OUT_DIR/heldout.jsonl ({"instruction", "response", "source"} a
line; every --heldout-every'th function is held out) and OUT_DIR/corpus.txt (the training
functions' sources only, for tokenizer training and pretraining: the held-out bodies stay unseen).
--format body (default): the instruction asks for the body of the signature and docstring, the
response is the body. --format humaneval: each function as a HumanEval task asked with the paper's
instruction (xft's instruction prompt: "Write a solution to the following problem:" and the
signature + docstring in a code block), the response the whole function in a code block, as the
prompt's response prefix opens it; for tuning a real model that is then scored on HumanEval.
"""
import argparse
import ast
import json
import os
import sysconfig


def functions(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        tree = ast.parse(text)
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    lines = text.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        if not doc or len(node.body) < 2 or node.name.startswith("_"):
            continue
        first = node.body[1].lineno - 1       # first statement after the docstring
        body = lines[first:node.end_lineno]
        indent = min((len(l) - len(l.lstrip()) for l in body if l.strip()), default=0)
        body = "\n".join(l[indent:] for l in body).strip("\n")
        signature = lines[node.lineno - 1].strip()
        yield signature, doc.strip(), body, os.path.relpath(path, sysconfig.get_paths()["stdlib"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--max-examples", type=int, default=2500)
    ap.add_argument("--max-chars", type=int, default=1200)
    ap.add_argument("--heldout-every", type=int, default=10)
    ap.add_argument("--format", choices=["body", "humaneval"], default="body")
    args = ap.parse_args()
    stdlib = sysconfig.get_paths()["stdlib"]
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__"))
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
    os.makedirs(args.out, exist_ok=True)
    n = 0
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8") as train, \
         open(os.path.join(args.out, "heldout.jsonl"), "w", encoding="utf-8") as heldout, \
         open(os.path.join(args.out, "corpus.txt"), "w", encoding="utf-8") as corpus:
        for path in files:
            for signature, doc, body, rel in functions(path):
                if len(body) > args.max_chars or len(doc) > args.max_chars:
                    continue
                if args.format == "humaneval":
                    doc_lines = "\n".join("    " + l if l.strip() else "" for l in doc.split("\n")).lstrip()
                    task = f"{signature}\n    \"\"\"{doc_lines}\n    \"\"\"\n"
                    code = task + "".join("    " + l + "\n" if l.strip() else "\n" for l in body.split("\n"))
                    instruction = f"Write a solution to the following problem:\n```python\n{task.strip()}\n```"
                    response = f"```python\n{code}```"
                else:
                    instruction = f"Write the body of this Python function.\n\n{signature}\n\"\"\"{doc}\"\"\""
                    response = body
                record = json.dumps({"instruction": instruction, "response": response, "source": rel}) + "\n"
                n += 1
                if n % args.heldout_every == 0:
                    heldout.write(record)
                    continue
                train.write(record)
                corpus.write(f"{signature}\n    \"\"\"{doc}\"\"\"\n{body}\n\n")
                if n >= args.max_examples:
                    break
            if n >= args.max_examples:
                break
    print(f"{n} documented functions from {stdlib} -> {args.out}")


if __name__ == "__main__":
    main()
