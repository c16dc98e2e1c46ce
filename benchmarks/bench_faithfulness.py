"""Benchmark: ``circuits.faithfulness_curve`` with its levels batched into one forward pass vs one pass per level.

    PYTHONPATH=. python benchmarks/bench_faithfulness.py

A random 2-layer, 4-head GPT-2 bridge (batch 16, 5 tokens) and a random 784-100-100-10 ``HookedMLP`` (batch 64),
float64, EAP scores (KL), MIB's 10 levels; the mean of 3 curves after a warm-up, both modes in one process.
Prints the seconds per curve, the CPR (identical in both modes) and the ratio.
"""
import time

import torch

import circuits
import circuits.faithfulness as F
from transformer_lens.model_bridge.sources import build_bridge_from_module
from transformers import GPT2Config, GPT2LMHeadModel
from hooked_bimt.model import HookedMLP
torch.manual_seed(0)
cfg = GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=20, n_positions=16, initializer_range=0.3)
b = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg, tokenizer=None, device="cpu")
x = torch.randint(0, 20, (16, 5)); y = torch.randint(0, 20, (16, 5))
m = HookedMLP((784, 100, 100, 10)).double().eval(); cx = torch.rand(64, 784, dtype=torch.float64); cy = torch.rand(64, 784, dtype=torch.float64)
orig = F.run_masks
for name, model, c, d in (("gpt2 2L4H bridge, batch 16", b, x, y), ("784-100-100-10 MLP, batch 64", m, cx, cy)):
    s = circuits.eap(model, c, d, "kl")
    res = {}
    for mode in ("one pass per level", "batched"):
        F.run_masks = orig if mode == "batched" else (lambda *a, **k: orig(*a, rows_per_pass=1, **k))
        circuits.faithfulness_curve(model, s, c, d)  # warm
        t = time.perf_counter()
        for _ in range(3): cu = circuits.faithfulness_curve(model, s, c, d)
        res[mode] = (time.perf_counter() - t) / 3
        print(name, mode, f"{res[mode]:.3f} s", cu.cpr)
    print(name, "speed-up", f"{res['one pass per level'] / res['batched']:.2f}x")
