"""Scoring candidate states of one receiver node by recomputing only what changes (the fast attention engine's
inner step on the bridges ``circuits.acdc.attention.blocks`` can read).

A candidate state differs from the current circuit only in receiver node ``R[r]``'s input, by ``extra``. The
change reaches a later node only through a present edge out of a changed node, and the metric reads only the
logits at its positions ``P``. So, with every activation of the current circuit cached (``baseline``):

* level of a sender node (what of it is needed): 0 nothing, 1 positions ``P``, 2 every position; the output
  needs ``P``; a head needed at its query positions needs its k/v inputs at every position; a sender's level is
  the largest level of the receivers it still has an edge into (edges of later layers are final: ACDC runs
  output-first);
* a changed head is recomputed alone (its new query, or its KV group's new keys/values, with the other
  inputs cached), and only at its level's positions; the difference ``delta = new - cached`` is what the
  receivers downstream add through their present edges:  ``x_r' = x_r + sum_{present s->r} delta_s``;
* the ``n`` candidate states are stacked on a leading axis and go through these small tensor ops together
  (``circuits.acdc.attention.scorer.Scorer``).

The result equals a full patched forward pass of each state (the same maths in another order of additions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from circuits.acdc.attention import fold as bridge_fold
from circuits.graph import Graph
from circuits.acdc.attention.blocks import BridgeBlocks
from circuits.models.transformer_bridge import INPUT, mlp_in_hook, mlp_out_hook, output_hook, qkv_hook, result_hook

ROLES = ("q", "k", "v")


def mix(delta: Tensor, absent: Tensor, sender_heads: bool, receiver_heads: bool) -> Tensor:
    """The absent edges' share of a receiver input, for SPEC 7's contributions (a sender's output summed into
    the residual stream, copied to every receiver head): ``term[..., r, :] = sum_s absent[r, s] delta[..., s, :]``.
    ``delta`` is ``(..., pos, [head,] d)``; ``absent`` is ``(n_receiver_nodes, n_sender_nodes)``."""
    if sender_heads and receiver_heads:
        return torch.einsum("...sd,rs->...rd", delta, absent)
    if sender_heads:
        return torch.einsum("...sd,s->...d", delta, absent[0])
    if receiver_heads:
        return delta.unsqueeze(-2) * absent[:, 0].unsqueeze(-1)
    return delta * absent[0, 0]


def metric_positions(metric: Any, full: Tensor) -> Tensor:
    """The positions the metric reads, probed: a position whose logits set to NaN make the metric NaN is read;
    changing every other position must leave the metric unchanged exactly (else: every position)."""
    T = full.shape[1]
    every = torch.arange(T, device=full.device)
    base = metric.many(full.unsqueeze(0), full)
    read = []
    for t in range(T):
        x = full.clone()
        x[:, t] = float("nan")
        if bool(torch.isnan(metric.many(x.unsqueeze(0), full)).any()):
            read.append(t)
    if not read:
        return every
    x = full.clone()
    others = [t for t in range(T) if t not in read]
    x[:, others] = x[:, others] * 1.5 + 1.0
    if not bool(torch.equal(metric.many(x.unsqueeze(0), full), base)):
        return every
    return torch.tensor(read, dtype=torch.long, device=full.device)


def _absent_term(graph: Graph, mask: Any, a_prime: dict, acts: dict, receiver: str) -> Optional[Tensor]:
    """``sum_{removed s->r} (a'_s - a_s)`` per receiver node, as the patching rule adds it (SPEC 4)."""

    term = None
    for conn in graph.connections_into(receiver):
        m = mask[(conn.sender, receiver)]
        if bool(m.all()):
            continue
        t = mix(a_prime[conn.sender] - acts[conn.sender], (~m).to(a_prime[conn.sender].dtype),
                 graph.nodes[conn.sender].axis is not None, graph.nodes[receiver].axis is not None)
        term = t if term is None else term + t
    return term


@dataclass
class Baseline:
    """Every activation of the current circuit's patched run (``baseline``): ``acts`` (senders), ``x`` (receiver
    inputs), ``proj`` (q/k/v per layer and role), ``logits``, the rotary tables ``rot`` and sequence length ``T``;
    on LayerNorm layers ``fold`` / ``fold_w`` (``fold.cache`` of each q/k/v input, ``fold.weights``) and
    ``mlp_fold`` / ``mlp_fold_w`` (``fold.mlp_cache`` of each MLP input, ``fold.mlp_weights``). Mutable: the
    scorer moves it to the new circuit after a node's removals (``Scorer.keep``)."""

    acts: dict[str, Tensor]
    rot: Any
    T: int
    x: dict[str, Tensor] = field(default_factory=dict)
    proj: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    fold: dict[str, Any] = field(default_factory=dict)
    fold_w: dict[str, Any] = field(default_factory=dict)
    mlp_fold: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # ``fold.mlp_cache`` per layer
    mlp_fold_w: dict[int, bridge_fold.MLPFold] = field(default_factory=dict)
    logits: Tensor = field(default_factory=lambda: torch.empty(0))


def baseline(bb: BridgeBlocks, graph: Graph, clean: Tensor, a_prime: dict, mask: Any) -> Baseline:
    """The current circuit's ``Baseline``, computed by the functional blocks."""
    B, T = clean.shape
    e, pos = bb.embed(clean)
    acts: dict[str, Tensor] = {INPUT: e}
    resid = e + pos
    rot = bb.rot(T, e.device, e.dtype)
    every = torch.arange(T, device=e.device)
    st = Baseline(acts=acts, rot=rot, T=T)
    group = torch.arange(bb.n_heads, device=e.device) // (bb.n_heads // bb.n_kv)
    for layer in range(bb.n_layers):
        proj = {}
        for role in ROLES:
            hook = qkv_hook(layer, role)
            n = graph.nodes[hook].count
            x = resid.unsqueeze(2).expand(B, T, n, bb.d_model)
            term = _absent_term(graph, mask, a_prime, acts, hook)
            x = x + term if term is not None else x.clone()  # owned: ``Scorer.commit`` updates it in place
            st.x[hook] = x
            proj[role] = bb.project(layer, role, x, torch.arange(n, device=e.device), rot, every)
            if bridge_fold.usable(bb, layer):
                st.fold_w[hook] = bridge_fold.weights(bb, layer, role)
                st.fold[hook] = bridge_fold.cache(x, st.fold_w[hook][0])
        st.proj[layer] = proj
        z = bb.attend(proj["q"], proj["k"][:, :, group], proj["v"][:, :, group], every)
        res = bb.result(layer, z, torch.arange(bb.n_heads, device=e.device))
        acts[result_hook(layer)] = res
        block_in = resid  # what a parallel block's MLP reads
        resid = resid + res.sum(2) + bb.attn_bias(layer, res)
        if mlp_in_hook(layer) in graph.nodes:
            hook = mlp_in_hook(layer)
            term = _absent_term(graph, mask, a_prime, acts, hook)
            x = block_in if bb.parallel else resid
            x = x + term if term is not None else x.clone()
            st.x[hook] = x
            if bridge_fold.mlp_usable(bb, layer):
                st.mlp_fold_w[layer] = bridge_fold.mlp_weights(bb, layer)
                st.mlp_fold[layer] = bridge_fold.mlp_cache(x, st.mlp_fold_w[layer])
            out = bb.mlp(layer, x)
            acts[mlp_out_hook(layer)] = out
            resid = resid + out
    out = output_hook(bb.n_layers)
    term = _absent_term(graph, mask, a_prime, acts, out)
    st.x[out] = resid + term if term is not None else resid.clone()
    st.logits = bb.unembed(st.x[out])
    return st


def levels(bb: BridgeBlocks, graph: Graph, mask: Any) -> dict[str, list[int]]:
    """Per sender hook, each node's level (module docstring), from the present edges of ``mask``."""
    need: dict[str, list[int]] = {}  # receiver hook -> level of each receiver node's input
    lvl: dict[str, list[int]] = {}
    need[graph.output] = [1]

    def sender_level(hook: str) -> list[int]:
        out = torch.zeros(graph.nodes[hook].count, dtype=torch.long)
        for conn in graph.connections:
            if conn.sender != hook or conn.receiver not in need:
                continue
            m = mask[(hook, conn.receiver)].cpu()
            level = torch.tensor(need[conn.receiver], dtype=torch.long).unsqueeze(1)  # (receiver nodes, 1)
            out = torch.maximum(out, (m * level).amax(0))  # a sender node's largest level over its present edges
        return out.tolist()

    per_group = bb.n_heads // bb.n_kv
    for layer in reversed(range(bb.n_layers)):
        if mlp_in_hook(layer) in graph.nodes:
            lvl[mlp_out_hook(layer)] = sender_level(mlp_out_hook(layer))
            need[mlp_in_hook(layer)] = lvl[mlp_out_hook(layer)]
        heads = lvl[result_hook(layer)] = sender_level(result_hook(layer))
        need[qkv_hook(layer, "q")] = heads
        kv = [2 if any(heads[g * per_group:(g + 1) * per_group]) else 0 for g in range(bb.n_kv)]
        need[qkv_hook(layer, "k")] = need[qkv_hook(layer, "v")] = kv
    lvl[INPUT] = sender_level(INPUT)
    return lvl
