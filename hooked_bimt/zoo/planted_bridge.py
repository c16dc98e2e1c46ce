"""A planted ground-truth circuit on a TransformerLens 4 bridge: a GPT-2 whose weights are set by hand.

The task is ``planted_attn_only``'s (predict the FIRST token at the last position; clean and corrupted
batches differ only in token 0), built inside a real ``GPT2LMHeadModel`` (layer norms, biases, MLPs)
and wrapped as a bridge. Residual dimensions: token one-hots ``T``, position one-hots ``P``, a "moved"
block ``M`` and an output block ``U`` (``d_vocab`` each, ``P`` has ``n_ctx``), zero padding to a
multiple of the head count. Every head's query and key read only ``P``; ``L0H0`` attends from the
last position to position 0 and copies ``T -> M``, ``L1H0`` attends to the last position and copies
``M -> U``, the unembedding reads ``U``. ``L0H1`` / ``L1H1`` are distractors writing ``eps`` times the
same; every other head and every MLP writes exactly 0 (zero output weights and biases).

Why the layer norms do not spoil it: each residual vector is a sum of one-hots with the same weights
whatever the tokens, so all residual vectors of a position are permutations of one another and share
their mean and variance; ``LN(x) = (x - mean) / std`` is then linear in the token one-hots, and a head
whose query and key read only ``P`` attends identically in every run (patched ones included). True
circuit (SPEC 7 names): ``embed.hook_out -> blocks.0.attn.hook_v_input[0]``,
``blocks.0.attn.hook_result[0] -> blocks.1.attn.hook_v_input[0]``, ``blocks.1.attn.hook_result[0] ->
blocks.1.hook_out``. Edges from zero-output senders have exactly zero effect under resample ablation
(``a = a' = 0``); edges into their inputs too; the distractors' effects are O(eps^2) under KL.
"""

from __future__ import annotations

from typing import Union

import torch

from circuits.graph import Edge
from circuits.planted import PlantedCircuit


def planted_gpt2_bridge(d_vocab: int = 4, n_ctx: int = 4, n_heads: int = 2, eps: float = 0.01, scale: float = 4.0,
                        n_batch: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64,
                        device: Union[str, torch.device] = "cpu") -> PlantedCircuit:
    """A 2-layer GPT-2 bridge with the planted first-token circuit (module docstring); ``n_heads >= 2``."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    if d_vocab < 2 or n_ctx < 2 or n_heads < 2:
        raise ValueError(f"need d_vocab >= 2, n_ctx >= 2 and n_heads >= 2, got {(d_vocab, n_ctx, n_heads)}")
    V = d_vocab
    T, P = list(range(V)), list(range(V, V + n_ctx))
    M, U = list(range(V + n_ctx, 2 * V + n_ctx)), list(range(2 * V + n_ctx, 3 * V + n_ctx))
    d_head = -(-(3 * V + n_ctx) // n_heads)
    d_head = max(d_head, V)
    d_model = n_heads * d_head
    cfg = GPT2Config(n_layer=2, n_head=n_heads, n_embd=d_model, vocab_size=V, n_positions=n_ctx, n_inner=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)
    hf = GPT2LMHeadModel(cfg).to(torch.float64)
    sharp = 40.0 * d_head ** 0.5  # query . key scale / sqrt(d_head): the softmax is one-hot to ~1e-17
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln" in name:  # layer norms: weight 1, bias 0
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()
        tr = hf.transformer
        tr.wte.weight[:, T] = torch.eye(V, dtype=torch.float64)
        tr.wpe.weight[:, P] = torch.eye(n_ctx, dtype=torch.float64)
        for layer, target in ((0, 0), (1, n_ctx - 1)):
            attn = tr.h[layer].attn  # Conv1D: x @ weight; c_attn's output columns are [q heads | k heads | v heads]
            src, dst = (T, M) if layer == 0 else (M, U)
            for h, strength in ((0, 1.0), (1, eps)):
                q0, k0, v0 = h * d_head, d_model + h * d_head, 2 * d_model + h * d_head
                attn.c_attn.weight[P, q0] = sharp            # every query asks for feature 0 ...
                attn.c_attn.weight[P[target], k0] = 1.0      # ... which only the target position's key has
                attn.c_attn.weight[src, v0 : v0 + V] = torch.eye(V, dtype=torch.float64)
                attn.c_proj.weight[h * d_head : h * d_head + V, dst] = strength * torch.eye(V, dtype=torch.float64)
        hf.lm_head.weight[:, U] = scale * torch.eye(V, dtype=torch.float64)
    hf = hf.to(dtype).eval()
    bridge = build_bridge_from_module(hf, "GPT2LMHeadModel", hf_config=cfg, tokenizer=None, device=device)
    bridge.eval()
    gen = torch.Generator().manual_seed(seed)
    rest = torch.randint(0, V, (n_batch, n_ctx - 1), generator=gen)
    first = torch.randint(0, V, (n_batch,), generator=gen)
    other = (first + torch.randint(1, V, (n_batch,), generator=gen)) % V
    clean = torch.cat([first[:, None], rest], 1).to(device)
    corrupted = torch.cat([other[:, None], rest], 1).to(device)
    true = {Edge("embed.hook_out", 0, "blocks.0.attn.hook_v_input", 0),
            Edge("blocks.0.attn.hook_result", 0, "blocks.1.attn.hook_v_input", 0),
            Edge("blocks.1.attn.hook_result", 0, "blocks.1.hook_out", 0)}
    return PlantedCircuit(bridge, clean, corrupted, true, "kl")
