"""transformers' greedy generations with SmolLM2-135M-Instruct: what xft's must equal.

usage: smollm2_reference.py MODEL_DIR HUMANEVAL.jsonl.gz OUT.json

For the first HumanEval prompts, and one prompt with tabs, unicode and emoji, records the input
ids the tokenizer gives (special tokens added, as transformers' generate sees them) and the
greedy continuation (model.generate, do_sample=False, fp32, eager attention): ids and text.
"""
import gzip
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 32


def main():
    model_dir, humaneval, out = sys.argv[1:4]
    torch.set_num_threads(1)
    with gzip.open(humaneval, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f][:2]
    prompts.append("def greet(name):\n\t\"\"\"Return 'héllo, {name} 👋' — 你好.\"\"\"\n\t")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    records = []
    for p in prompts:
        enc = tok(p, return_tensors="pt")
        ids = enc.input_ids
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False)
        new = g[0, ids.shape[1]:].tolist()
        records.append({"prompt": p, "input_ids": ids[0].tolist(), "generated_ids": new,
                        "text": tok.decode(new, skip_special_tokens=False)})
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"max_new_tokens": NEW_TOKENS, "records": records}, f, ensure_ascii=False, indent=1)
    os.replace(out + ".tmp", out)  # readers never see it half written


if __name__ == "__main__":
    main()
