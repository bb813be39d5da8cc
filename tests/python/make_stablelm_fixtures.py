"""Builds tiny random StableLmForCausalLM checkpoints with transformers and records their logits.

The same layout as make_llama_fixtures.py (OUT/<case>/model + expected.safetensors), one case per
StableLM option on and off: partial rotary (0.25, 0.5, 1.0), use_qkv_bias, qk_layernorm,
use_parallel_residual, tied embeddings, grouped-query attention, linear rope scaling, bf16,
padding; plus a greedy-generation case (KV cache with partial rotary and qk LayerNorm), and
stablelm_defaults/: a minimal config.json with the values StableLmConfig fills in for it.
"""
import json
import os
import sys

import torch
from transformers import StableLmConfig, StableLmForCausalLM
from transformers.modeling_utils import no_init_weights

from make_llama_fixtures import write_case, write_generation_case

BASE = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)

CASES = {
    # name: (config overrides, save dtype, padded batch?); head_dim is 16 throughout.
    # StableCode 3B's choices: a quarter of each head rotates, q/k/v carry a bias, untied head.
    "stablelm": (dict(partial_rotary_factor=0.25, use_qkv_bias=True, rope_theta=1000000.0), torch.float32, False),
    "stablelm_full_rotary": (dict(partial_rotary_factor=1.0, tie_word_embeddings=True, num_key_value_heads=2),
                             torch.float32, False),
    "stablelm_qk_norm": (dict(partial_rotary_factor=0.5, qk_layernorm=True, num_key_value_heads=2, layer_norm_eps=1e-6),
                         torch.float32, False),
    "stablelm_parallel": (dict(use_parallel_residual=True, use_qkv_bias=True, qk_layernorm=True,
                               tie_word_embeddings=True, num_key_value_heads=1), torch.float32, False),
    "stablelm_linear_rope": (dict(rope_scaling={"type": "linear", "factor": 4.0}, rope_theta=100000.0,
                                  use_parallel_residual=True), torch.float32, False),
    "stablelm_bf16": (dict(use_qkv_bias=True, num_key_value_heads=2), torch.bfloat16, False),
    "stablelm_padded": (dict(use_qkv_bias=True, qk_layernorm=True, num_key_value_heads=2), torch.float32, True),
}


def random_stablelm(overrides, seed, std=0.02):
    """A StableLmForCausalLM whose every parameter is random, norms and biases included.

    transformers' own init fails on qk_layernorm's bias-free LayerNorms (it zeroes a None bias),
    and would leave biases at zero and norms at one, which a model ignoring them would still
    match; so weights are drawn here: normal(0, std) matrices, 1 + 0.1 N(0, 1) norm weights,
    0.1 N(0, 1) biases.
    """
    torch.manual_seed(seed)
    config = StableLmConfig(**{**BASE, **overrides})
    config._attn_implementation = "eager"
    with no_init_weights():
        model = StableLmForCausalLM(config)
    model.tie_weights()  # skipped along with the init: a tied head must be the embedding itself
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    return model.eval()


def write_defaults_case(out):
    """A config.json with only the required fields, and what StableLmConfig makes of it."""
    d = os.path.join(out, "stablelm_defaults")
    os.makedirs(d, exist_ok=True)
    # 32 heads: StableLmConfig's default num_key_value_heads is 32, whatever num_attention_heads is.
    minimal = {"model_type": "stablelm", "vocab_size": 101, "hidden_size": 256, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 32}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(minimal, f, indent=2)
    filled = StableLmConfig(**{k: v for k, v in minimal.items() if k != "model_type"}).to_dict()
    with open(os.path.join(d, "transformers.json"), "w") as f:
        json.dump(filled, f, indent=2)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (overrides, dtype, padded) in CASES.items():
        write_case(out, name, random_stablelm(overrides, 4321 + sum(map(ord, name))), dtype, padded)
    # A large init makes the next-token distribution peaked, so greedy choices are not near-ties.
    gen = random_stablelm(dict(partial_rotary_factor=0.25, use_qkv_bias=True, qk_layernorm=True,
                               num_key_value_heads=2), 98, std=0.3)
    write_generation_case(out, "generate_stablelm", gen)
    write_defaults_case(out)
    print(f"wrote {len(CASES) + 2} StableLM transformers fixtures to {out}")


if __name__ == "__main__":
    main()
