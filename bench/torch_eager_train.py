#!/usr/bin/env python3
"""PyTorch eager training on a bench world (bench/make_bench_world.py): the baseline that
bench/cpu_train_bench.py times xft against.

    bench/torch_eager_train.py WORLD --stage sft|moe --steps N --threads T --micro-batch B

sft: transformers' LlamaForCausalLM from WORLD/base + torch.optim.AdamW, batches of B records of
WORLD/data.jsonl (BOS + prompt + response + EOS, prompt tokens out of the loss), as xft's SFT
stage trains them. moe: the same model with every MLP upcycled to the world's MoE (8 experts,
expert 0 shared, top-6, paper Eq. 2 weights, cv2 aux loss 0.01), written the way the authors'
reference code runs its experts: a Python loop over the experts, each gathering its tokens.
--autocast bf16 runs forward and loss under torch.autocast (bf16 matmuls, fp32 weights and
optimizer), --adamw foreach|fused picks torch's multi-tensor or fused AdamW (default: torch's
choice), --profile FILE writes the torch profiler's Chrome trace of the steps after the first
(bench/profile_summary.py reads it, and xft's XFT_PROFILE traces, the same way).
Prints one JSON line: tokens/s of each step, the peak RSS of the process (bytes).
"""
import argparse
import json
import os
import random
import resource
import time

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


class LoopMoe(torch.nn.Module):
    """Upcycled FFN (paper 3.1), reference style: router, shared expert 0, per-expert loop."""

    def __init__(self, mlp, num_experts, top_k, coef=0.01):
        super().__init__()
        d = mlp.gate_proj.in_features
        self.experts = torch.nn.ModuleList()
        for _ in range(num_experts):
            e = type(mlp)(mlp.config)
            e.load_state_dict(mlp.state_dict())
            self.experts.append(e)
        self.router = torch.nn.Linear(d, num_experts - 1, bias=False)
        torch.nn.init.normal_(self.router.weight, std=0.02)
        self.k = top_k - 1
        self.coef = coef
        self.aux = None

    def forward(self, x):
        shape = x.shape
        xt = x.reshape(-1, shape[-1])
        s = torch.softmax(self.router(xt).float(), -1)
        v, idx = s.topk(self.k, -1)
        smax = v[:, :1]
        w = torch.softmax(v, -1) * smax  # Eq. 2: routed weights sum to s_max, shared gets 1 - s_max
        out = self.experts[0](xt).float() * (1 - smax)
        importance = torch.zeros(s.shape[1], device=x.device)
        load = torch.zeros(s.shape[1], device=x.device)
        for e in range(s.shape[1]):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            y = self.experts[e + 1](xt[tok]).float() * w[tok, slot].unsqueeze(1)
            out = out.index_add(0, tok, y)
            importance[e] = s[tok, slot].sum()
            load[e] = tok.numel()

        def cv2(t):
            return t.var() / (t.mean() ** 2 + 1e-10)

        self.aux = self.coef * (cv2(importance) + cv2(load))
        return out.to(x.dtype).view(shape)


def batches(world, micro_batch, seed):
    recs = [json.loads(l) for l in open(os.path.join(world, "data.jsonl"))]
    rows = []
    for r in recs:
        ids = [1] + r["prompt_ids"] + r["response_ids"] + [2]
        labels = [-100] * (1 + len(r["prompt_ids"])) + r["response_ids"] + [2]
        rows.append((ids, labels))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    i = 0
    while True:
        take = [rows[order[(i + j) % len(rows)]] for j in range(micro_batch)]
        i += micro_batch
        yield torch.tensor([t[0] for t in take]), torch.tensor([t[1] for t in take])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("--stage", choices=["sft", "moe"], default="sft")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    ap.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default")
    ap.add_argument("--profile", help="write the profiler's Chrome trace (steps after the first) here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(os.path.join(a.world, "base"), torch_dtype=torch.float32)
    moes = []
    if a.stage == "moe":
        cfg = json.load(open(os.path.join(a.world, "experiment.json")))["moe"]
        for layer in model.model.layers:
            layer.mlp = LoopMoe(layer.mlp, cfg["num_experts"], cfg["top_k"])
            moes.append(layer.mlp)
    model.train()
    impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[a.adamw]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, **impl)
    data = batches(a.world, a.micro_batch, 0)
    rates = []
    prof = None
    for step in range(a.steps):
        if a.profile and step == 1:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        ids, labels = next(data)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
            for m in moes:
                loss = loss + m.aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rates.append(ids.numel() / (time.perf_counter() - t0))
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(a.profile)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tokens_per_s": rates, "peak_rss": peak, "loss": loss.item()}))


if __name__ == "__main__":
    main()
