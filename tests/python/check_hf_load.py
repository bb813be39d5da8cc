"""Loads a model directory written by xft with transformers and compares its logits.

usage: check_hf_load.py MODEL_DIR EXPECTED.safetensors [tolerance] [class]
EXPECTED holds input_ids [B, T] and logits [B, T, V] computed by xft. `class` is the transformers
model class that must load it (default LlamaForCausalLM); the directory's config must be of that
class's model_type, and every checkpoint tensor must fill exactly the class's parameters (no
missing, unexpected or misshapen tensor, which from_pretrained would otherwise only warn about).
Exits 1 on any mismatch.
"""
import sys

import torch
import transformers
from safetensors.torch import load_file


def main():
    model_dir, expected_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    cls = getattr(transformers, sys.argv[4] if len(sys.argv) > 4 else "LlamaForCausalLM")
    config = transformers.AutoConfig.from_pretrained(model_dir)
    if config.model_type != cls.config_class.model_type:
        print(f"config model_type {config.model_type!r}, but {cls.__name__} expects {cls.config_class.model_type!r}")
        sys.exit(1)
    model, info = cls.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager",
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"{cls.__name__} did not load {model_dir} exactly: {problems}")
        sys.exit(1)
    model.eval()
    expected = load_file(expected_path)
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits.float()
    diff = (logits - expected["logits"]).abs().max().item()
    print(f"{cls.__name__}: transformers vs xft: max abs diff {diff:.3e} (tolerance {tol:.1e})")
    sys.exit(0 if diff <= tol else 1)


if __name__ == "__main__":
    main()
