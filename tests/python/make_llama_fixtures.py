"""Builds tiny random LlamaForCausalLM checkpoints with transformers and records its logits.

Each case is a directory OUT/<case>/ holding model/ (config.json + safetensors, as
save_pretrained writes it) and expected.safetensors with input_ids, attention_mask and logits
(float32) computed by transformers. The C++ tests load model/ and must reproduce the logits.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

BASE = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
            rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)

CASES = {
    # name: (config overrides, save dtype, padded batch?, max shard size)
    "gqa": (dict(num_key_value_heads=2), torch.float32, False, None),
    "linear_rope": (dict(rope_theta=100000.0, rope_scaling={"type": "linear", "factor": 4.0}), torch.float32, False, None),
    "llama3_rope": (dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
                    torch.float32, False, None),
    "tied": (dict(tie_word_embeddings=True), torch.float32, False, None),
    "bf16": (dict(num_key_value_heads=1), torch.bfloat16, False, None),
    "padded": (dict(num_key_value_heads=2), torch.float32, True, None),
    "sharded": (dict(num_hidden_layers=3), torch.float32, False, "40KB"),
}


def make_case(out, name, overrides, dtype, padded, shard):
    torch.manual_seed(1234 + sum(map(ord, name)))
    config = LlamaConfig(**{**BASE, **overrides})
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    # A non-trivial norm weight, so a model that ignored it would fail the comparison.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    write_case(out, name, model, dtype, padded, shard)


def write_case(out, name, model, dtype, padded, shard=None):
    """Saves `model` in `dtype` under OUT/name/model and its fp32 logits on a fixed batch."""
    config = model.config
    model = model.to(dtype)
    d = os.path.join(out, name)
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(os.path.join(d, "model"), **kwargs)

    # Reference logits in fp32 from the saved weights (bf16 weights upcast exactly).
    ref = model.to(torch.float32)
    g = torch.Generator().manual_seed(7)
    if padded:
        ids = torch.randint(3, config.vocab_size, (3, 11), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 7:] = 0          # right padding
        mask[2, :4] = 0          # left padding
        ids = ids.masked_fill(mask == 0, 0)
    else:
        ids = torch.randint(3, config.vocab_size, (2, 13), generator=g)
        mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = ref(input_ids=ids, attention_mask=mask).logits.float()
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), "logits": logits.contiguous()},
              os.path.join(d, "expected.safetensors"))


def make_generation_case(out):
    """Greedy generation with left padding, as transformers' generate does it."""
    torch.manual_seed(99)
    # A large init makes the next-token distribution peaked, so greedy choices are not near-ties.
    config = LlamaConfig(**{**BASE, "num_key_value_heads": 2, "initializer_range": 0.3,
                            "rope_scaling": {"type": "linear", "factor": 2.0}})
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    write_generation_case(out, "generate", model)


def write_generation_case(out, name, model):
    """Saves `model` under OUT/name/model and transformers' greedy tokens for three prompts."""
    config = model.config
    d = os.path.join(out, name)
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, config.vocab_size, (n,), generator=g).tolist() for n in (5, 9, 2)]
    T0 = max(map(len, prompts))
    ids = torch.zeros(len(prompts), T0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, T0 - len(p):] = torch.tensor(p)
        mask[i, T0 - len(p):] = 1
    with torch.no_grad():
        seq = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=16,
                             pad_token_id=0, eos_token_id=2)
    generated = []
    for row in seq[:, T0:].tolist():
        toks = []
        for t in row:
            if t == 2:
                break
            toks.append(t)
        generated.append(toks)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"prompts": prompts, "generated": generated, "max_new_tokens": 16}, f)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (overrides, dtype, padded, shard) in CASES.items():
        make_case(out, name, overrides, dtype, padded, shard)
    make_generation_case(out)
    print(f"wrote {len(CASES)} transformers fixtures to {out}")


if __name__ == "__main__":
    main()
