"""Chat-format training data (data.format "messages") as transformers tokenises it: the
reference for xft's example ids and assistant-only labels (tests/test_chat_data.cpp).

usage: chat_data_reference.py OUT_DIR SMOLLM2_DIR

Writes OUT_DIR/messages.jsonl ({"messages": [...]}) and OUT_DIR/sharegpt.jsonl (the same
conversations in ShareGPT's {"conversations": [{"from", "value"}]} form), and
OUT_DIR/expected.json: [{"ids": [...], "assistant_mask": [...]}] per conversation.
  ids: apply_chat_template(messages, tokenize=True) with SmolLM2's own template;
  assistant_mask: transformers' return_assistant_tokens_mask, computed on a copy of that template
  whose assistant turns are wrapped in {% generation %} ... {% endgeneration %} (the mechanism
  transformers and TRL use for assistant-only loss). The tags render nothing, so the ids agree.
"""
import json
import os
import sys

from transformers import AutoTokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Write a function that adds two numbers."},
     {"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"}],
    # A system turn, two assistant turns, tabs and unicode, an answer that starts with indentation.
    [{"role": "system", "content": "You are a careful programmer."},
     {"role": "user", "content": "def f(x):\n\treturn x  # naïve 你好 🙂"},
     {"role": "assistant", "content": "    return x * 2"},
     {"role": "user", "content": "  And with   spaces?  \n"},
     {"role": "assistant", "content": "Sure: `f = lambda x: x`  \n"}],
    # The conversation ends with the user: only the first answer is learned.
    [{"role": "user", "content": "Sort a list."},
     {"role": "assistant", "content": "sorted(xs)"},
     {"role": "user", "content": "Thanks!"}],
]

SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}


def tagged(template):
    """SmolLM2's ChatML template with each assistant turn's text (content and end of turn) tagged."""
    plain = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    assert plain in template, "SmolLM2's template changed: " + template
    return template.replace(
        plain,
        "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
        "{{message['content'] + '<|im_end|>' + '\n'}}{% endgeneration %}{% else %}" + plain + "{% endif %}")


def write_jsonl(path, records):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    out, model = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model)
    template = tok.chat_template
    expected = []
    for messages in CONVERSATIONS:
        ids = tok.apply_chat_template(messages, tokenize=True)
        if isinstance(ids, dict):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        enc = tok.apply_chat_template(messages, chat_template=tagged(template), tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        assert list(enc["input_ids"]) == list(ids), "the generation tags changed the tokens"
        expected.append({"ids": list(ids), "assistant_mask": list(enc["assistant_masks"])})
    write_jsonl(os.path.join(out, "messages.jsonl"), [{"messages": m} for m in CONVERSATIONS])
    write_jsonl(os.path.join(out, "sharegpt.jsonl"),
                [{"conversations": [{"from": SHAREGPT_FROM[t["role"]], "value": t["content"]} for t in m]}
                 for m in CONVERSATIONS])
    with open(os.path.join(out, "expected.json.tmp"), "w") as f:
        json.dump(expected, f)
    os.replace(os.path.join(out, "expected.json.tmp"), os.path.join(out, "expected.json"))
    print(f"chat_data_reference: {len(expected)} conversations -> {out}")


if __name__ == "__main__":
    main()
