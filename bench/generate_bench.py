"""Generation speed: xft-tool generate against transformers' generate, same checkpoint, same
prompts, greedy, on this machine (CPU here; add --device cuda on a GPU machine for transformers,
and xft uses the GPU when the model is loaded there).

usage: generate_bench.py XFT_TOOL OUT_DIR [--layers 4] [--hidden 512] [--batch 4] [--new 64] [--model DIR]
--model: a real Hugging Face Llama directory (SmolLM2 from scripts/import_gguf.py, say) instead of
a random one; --dtype bfloat16 runs both sides in bf16.
Writes OUT_DIR/generate.md and .json with tokens/s of both and their ratio.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="a Hugging Face Llama directory (default: a random Llama)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    if args.model:
        model_dir = args.model
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        model.generation_config.eos_token_id = None  # every row generates --new tokens on both sides
        described = f"{os.path.basename(os.path.normpath(model_dir))} ({model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, vocab {model.config.vocab_size})"
    else:
        config = LlamaConfig(vocab_size=32256, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                             num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                             num_key_value_heads=args.hidden // 64, rope_theta=100000.0,
                             rope_scaling={"type": "linear", "factor": 4.0}, eos_token_id=None, bos_token_id=1)
        model = LlamaForCausalLM(config).eval()
        model_dir = os.path.join(args.out, "model")
        model.save_pretrained(model_dir, safe_serialization=True)
        described = f"{args.layers} layers, hidden {args.hidden}, vocab 32256"
    model = model.to(getattr(torch, args.dtype))
    prompts = torch.randint(3, min(32000, model.config.vocab_size), (args.batch, args.prompt))
    model = model.to(args.device)
    with torch.no_grad():
        model.generate(input_ids=prompts[:, :4].to(args.device), max_new_tokens=2, do_sample=False, pad_token_id=0)
        t0 = time.perf_counter()
        hf = model.generate(input_ids=prompts.to(args.device), attention_mask=torch.ones_like(prompts).to(args.device),
                            max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, pad_token_id=0)
        hf_s = time.perf_counter() - t0
    hf_tokens = args.batch * args.new
    cmd = [args.tool, "generate", "--model", model_dir, "--max-new-tokens", str(args.new), "--dtype", args.dtype,
           "--ignore-eos"]
    for row in prompts.tolist():
        cmd += ["--prompt-ids", ",".join(map(str, row))]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    m = re.search(r"generated (\d+) tokens in ([0-9.e+-]+) s", res.stderr)
    xft_tokens, xft_s = int(m.group(1)), float(m.group(2))
    same = [list(map(int, l.split(","))) for l in res.stdout.strip().splitlines()] == hf[:, args.prompt:].tolist()
    row = {"date": time.strftime("%Y-%m-%d"), "device": args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
           "torch_threads": torch.get_num_threads(), "model": described, "dtype": args.dtype,
           "batch": args.batch, "prompt": args.prompt, "new_tokens": args.new,
           "transformers_tokens_per_s": hf_tokens / hf_s, "xft_tokens_per_s": xft_tokens / xft_s,
           "xft_wall_s_including_load": wall, "ratio_xft_over_transformers": (xft_tokens / xft_s) / (hf_tokens / hf_s),
           "same_tokens": same}
    with open(os.path.join(args.out, "generate.json"), "w") as f:
        json.dump(row, f, indent=2)
    with open(os.path.join(args.out, "generate.md"), "w") as f:
        f.write("| date | device | model | batch x new | transformers tok/s | xft tok/s | xft / transformers | same tokens |\n")
        f.write("|---|---|---|---|---|---|---|---|\n")
        f.write(f"| {row['date']} | {row['device']} | {row['model']} | {args.batch} x {args.new} | "
                f"{row['transformers_tokens_per_s']:.1f} | {row['xft_tokens_per_s']:.1f} | "
                f"{row['ratio_xft_over_transformers']:.2f} | {same} |\n")
    print(open(os.path.join(args.out, "generate.md")).read())


if __name__ == "__main__":
    main()
