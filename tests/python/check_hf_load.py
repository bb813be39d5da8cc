"""Loads a model directory written by xft with transformers and compares its logits.

usage: check_hf_load.py MODEL_DIR EXPECTED.safetensors [tolerance]
EXPECTED holds input_ids [B, T] and logits [B, T, V] computed by xft. Exits 1 on a mismatch.
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def main():
    model_dir, expected_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    expected = load_file(expected_path)
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits.float()
    diff = (logits - expected["logits"]).abs().max().item()
    print(f"transformers vs xft: max abs diff {diff:.3e} (tolerance {tol:.1e})")
    sys.exit(0 if diff <= tol else 1)


if __name__ == "__main__":
    main()
