"""Loads a model directory written by xft with transformers and compares its logits.

usage: check_hf_load.py MODEL_DIR EXPECTED.safetensors [tolerance] [class]
EXPECTED holds input_ids [B, T] and logits [B, T, V] computed by xft. `class` is the transformers
model class that must load it (default LlamaForCausalLM); the directory's config must be of that
class's model_type, and every checkpoint tensor must fill exactly the class's parameters (no
missing, unexpected or misshapen tensor, which from_pretrained would otherwise only warn about).
`class` "remote:NAME" loads through AutoModelForCausalLM with trust_remote_code=True (an xft MoE:
the directory's own modeling file) and requires the model built to be of class NAME.
Exits 1 on any mismatch.
"""
import atexit
import os
import shutil
import sys
import tempfile

# Remote code is copied into a module cache: one of this run's own, so that runs in parallel and
# the user's cache never see each other's files. Set before transformers reads it at import.
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="xft-hf-modules-")
atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], True)

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def load(model_dir, name):
    kwargs = dict(torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    if name.startswith("remote:"):
        model, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, **kwargs)
        if type(model).__name__ != name[len("remote:"):]:
            print(f"AutoModelForCausalLM built {type(model).__name__}, expected {name[len('remote:'):]}")
            sys.exit(1)
        return model, info
    cls = getattr(transformers, name)
    config = transformers.AutoConfig.from_pretrained(model_dir)
    if config.model_type != cls.config_class.model_type:
        print(f"config model_type {config.model_type!r}, but {cls.__name__} expects {cls.config_class.model_type!r}")
        sys.exit(1)
    return cls.from_pretrained(model_dir, **kwargs)


def main():
    model_dir, expected_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    model, info = load(model_dir, sys.argv[4] if len(sys.argv) > 4 else "LlamaForCausalLM")
    cls = type(model)
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
