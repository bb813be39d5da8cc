#!/usr/bin/env python3
"""A self-contained world for the training benchmarks, made without any download.

    bench/make_bench_world.py DIR [--device cuda] [--hidden 1024] [--layers 8] [--steps 60]

writes
  DIR/base/             a randomly initialised Llama (transformers' LlamaForCausalLM,
                        config.json + safetensors), the dense model the pipelines upcycle
  DIR/data.jsonl        pre-tokenised instruction records ({"prompt_ids", "response_ids"}),
                        so that no tokenizer is needed
  DIR/experiment.json   an experiment config over both: every stage on --device, the MoE stage
                        with the 1.3B recipe's routing (8 experts, top-6, lambda 0.75) and
                        --steps steps, the other stages one step (only the MoE stage is timed)

for `bench/dist_overhead.sh DIR/experiment.json` (scripts/gpu_check.sh runs both).
--base MODEL_DIR uses that Hugging Face Llama (a real pretrained model, e.g. SmolLM2 from
scripts/import_gguf.py) instead of random weights, its vocabulary for the token ids;
--precision and --experts (N,K) set the stages' precision and the MoE's experts and top-k.
"""
import argparse
import json
import os
import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--records", type=int, default=2048)
    ap.add_argument("--length", type=int, default=512, help="tokens per record (prompt + response)")
    ap.add_argument("--steps", type=int, default=60, help="MoE stage steps")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", help="a Hugging Face Llama directory to use instead of random weights")
    ap.add_argument("--precision", help="every stage's precision (default: bf16_autocast on CUDA, fp32 on CPU)")
    ap.add_argument("--experts", default="8,6", help="MoE experts and top-k (the shared one included)")
    ap.add_argument("--fused-optimizer", action="store_true", help="AdamW as torch's fused kernel in every stage")
    a = ap.parse_args()

    os.makedirs(a.dir, exist_ok=True)
    torch.manual_seed(a.seed)
    base = os.path.abspath(a.base) if a.base else os.path.join(a.dir, "base")
    if a.base:
        with open(os.path.join(base, "config.json")) as f:
            a.vocab = json.load(f)["vocab_size"]
        link = os.path.join(a.dir, "base")  # where bench/torch_eager_train.py loads the model from
        if not os.path.lexists(link):
            os.symlink(base, link)
    else:
        make_random_llama(a, base)
    precision = a.precision or ("bf16_autocast" if a.device.startswith("cuda") else "fp32")
    num_experts, top_k = (int(x) for x in a.experts.split(","))
    write_world(a, base, precision, num_experts, top_k)


def make_random_llama(a, base):
    heads = max(1, a.hidden // 64)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=(a.hidden * 11 // 4 + 63) // 64 * 64,
                      num_hidden_layers=a.layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max(2048, a.length), bos_token_id=1, eos_token_id=2,
                      tie_word_embeddings=False, torch_dtype="float32")
    LlamaForCausalLM(cfg).save_pretrained(base, safe_serialization=True)


def write_world(a, base, precision, num_experts, top_k):
    rng = random.Random(a.seed)
    with open(os.path.join(a.dir, "data.jsonl"), "w") as f:
        for _ in range(a.records):
            n = a.length - 2  # BOS and EOS are added around each record
            p = n // 4
            ids = [rng.randrange(3, a.vocab) for _ in range(n)]
            f.write(json.dumps({"prompt_ids": ids[:p], "response_ids": ids[p:]}) + "\n")

    def stage(steps):
        return {"max_steps": steps, "global_batch": a.micro_batch, "micro_batch": a.micro_batch,
                "optimizer": "adamw", "lr": 1e-4, "warmup": 0, "save_every": 0, "device": a.device,
                "precision": precision, "fused_optimizer": a.fused_optimizer}

    experiment = {
        "comment": "made by bench/make_bench_world.py: random weights and token ids, for timing only",
        "run_dir": os.path.join(a.dir, "run"),
        "base_model": base,
        "data": {"path": os.path.join(a.dir, "data.jsonl"), "format": "pretokenized", "bos_id": 1, "eos_id": 2,
                 "max_length": a.length},
        "save_dtype": "bfloat16",
        "moe": {"num_experts": num_experts, "top_k": top_k, "routing": "xft", "router": "linear"},
        "merge": {"shared_rate": 0.75},
        "sft_train": stage(1),
        "moe_train": stage(a.steps),
        "merge_train": stage(1),
        "ewa_train": stage(1),
    }
    with open(os.path.join(a.dir, "experiment.json"), "w") as f:
        json.dump(experiment, f, indent=2)
    print(f"bench world in {a.dir}: {base}, {a.records} records of {a.length} tokens")


if __name__ == "__main__":
    main()
