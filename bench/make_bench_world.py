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
    a = ap.parse_args()

    os.makedirs(a.dir, exist_ok=True)
    torch.manual_seed(a.seed)
    heads = max(1, a.hidden // 64)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=(a.hidden * 11 // 4 + 63) // 64 * 64,
                      num_hidden_layers=a.layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max(2048, a.length), bos_token_id=1, eos_token_id=2,
                      tie_word_embeddings=False, torch_dtype="float32")
    LlamaForCausalLM(cfg).save_pretrained(os.path.join(a.dir, "base"), safe_serialization=True)

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
                "precision": "bf16_autocast" if a.device.startswith("cuda") else "fp32"}

    experiment = {
        "comment": "made by bench/make_bench_world.py: random weights and token ids, for timing only",
        "run_dir": os.path.join(a.dir, "run"),
        "base_model": os.path.join(a.dir, "base"),
        "data": {"path": os.path.join(a.dir, "data.jsonl"), "format": "pretokenized", "bos_id": 1, "eos_id": 2,
                 "max_length": a.length},
        "save_dtype": "bfloat16",
        "moe": {"num_experts": 8, "top_k": 6, "routing": "xft", "router": "linear"},
        "merge": {"shared_rate": 0.75},
        "sft_train": stage(1),
        "moe_train": stage(a.steps),
        "merge_train": stage(1),
        "ewa_train": stage(1),
    }
    with open(os.path.join(a.dir, "experiment.json"), "w") as f:
        json.dump(experiment, f, indent=2)
    print(f"bench world in {a.dir}: Llama {a.layers}x{a.hidden}, {a.records} records of {a.length} tokens")


if __name__ == "__main__":
    main()
