"""Scoring candidate states of one receiver node by recomputing only what changes (the fast attention engine's
inner step on GPT-2 / Llama bridges, ``circuits.models.bridge_blocks``).

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
* the ``n`` candidate states are stacked on a leading axis and go through these small tensor ops together.

The result equals a full patched forward pass of each state (the same maths in another order of additions).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from circuits.graph import Graph
from circuits.models.bridge_blocks import BridgeBlocks
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


def baseline(bb: BridgeBlocks, graph: Graph, clean: Tensor, a_prime: dict, mask: Any) -> dict:
    """Every activation of the current circuit's patched run: ``acts`` (senders), ``x`` (receiver inputs),
    ``q``/``k``/``v`` per layer, ``logits``."""
    B, T = clean.shape
    e, pos = bb.embed(clean)
    acts: dict[str, Tensor] = {INPUT: e}
    resid = e + pos
    rot = bb.rot(T, e.device, e.dtype)
    every = torch.arange(T, device=e.device)
    st: dict[str, Any] = {"acts": acts, "x": {}, "proj": {}, "rot": rot, "T": T}
    group = torch.arange(bb.n_heads, device=e.device) // (bb.n_heads // bb.n_kv)
    for layer in range(bb.n_layers):
        proj = {}
        for role in ROLES:
            hook = qkv_hook(layer, role)
            n = graph.nodes[hook].count
            x = resid.unsqueeze(2).expand(B, T, n, bb.d_model)
            term = _absent_term(graph, mask, a_prime, acts, hook)
            x = x + term if term is not None else x.clone()  # owned: ``Scorer.commit`` updates it in place
            st["x"][hook] = x
            proj[role] = bb.project(layer, role, x, torch.arange(n, device=e.device), rot, every)
        st["proj"][layer] = proj
        z = bb.attend(proj["q"], proj["k"][:, :, group], proj["v"][:, :, group], every)
        res = bb.result(layer, z, torch.arange(bb.n_heads, device=e.device))
        acts[result_hook(layer)] = res
        resid = resid + res.sum(2) + bb.attn_bias(layer, res)
        if mlp_in_hook(layer) in graph.nodes:
            hook = mlp_in_hook(layer)
            term = _absent_term(graph, mask, a_prime, acts, hook)
            x = resid + term if term is not None else resid.clone()
            st["x"][hook] = x
            out = bb.mlp(layer, x)
            acts[mlp_out_hook(layer)] = out
            resid = resid + out
    out = output_hook(bb.n_layers)
    term = _absent_term(graph, mask, a_prime, acts, out)
    st["x"][out] = resid + term if term is not None else resid.clone()
    st["logits"] = bb.unembed(st["x"][out])
    return st


def levels(bb: BridgeBlocks, graph: Graph, mask: Any) -> dict[str, list[int]]:
    """Per sender hook, each node's level (module docstring), from the present edges of ``mask``."""
    need: dict[str, list[int]] = {}  # receiver hook -> level of each receiver node's input
    lvl: dict[str, list[int]] = {}
    need[graph.output] = [1]

    def sender_level(hook: str) -> list[int]:
        out = [0] * graph.nodes[hook].count
        for conn in graph.connections:
            if conn.sender != hook or conn.receiver not in need:
                continue
            m = mask[(hook, conn.receiver)]
            for r, level in enumerate(need[conn.receiver]):
                if level:
                    for s in torch.nonzero(m[r]).flatten().tolist():
                        out[s] = max(out[s], level)
        return out

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


class Scorer:
    """Scores stacked candidate states of receiver nodes of one hook against a ``baseline`` (module docstring)."""

    def __init__(self, bb: BridgeBlocks, graph: Graph, mask: Any, st: dict, lvl: dict, P: Tensor) -> None:
        self.bb, self.graph, self.mask, self.st, self.lvl = bb, graph, mask, st, lvl
        dev = st["logits"].device
        self.pos = {1: P, 2: torch.arange(st["T"], device=dev)}
        self.group = torch.arange(bb.n_heads, device=dev) // (bb.n_heads // bb.n_kv)
        self.delta: dict[str, tuple[Optional[Tensor], Tensor, int]] = {}
        self.commit = False

    def _term(self, receiver: str, level: int, rows: Optional[Tensor]) -> Optional[Tensor]:
        """``sum_{present s->r} delta_s`` at ``level``'s positions: ``(n, B, Tl, |rows|, d)`` (``rows``: receiver
        heads) or ``(n, B, Tl, d)`` (one-node receiver); None when no changed sender has a present edge."""
        term = None
        for conn in self.graph.connections_into(receiver):
            if conn.sender not in self.delta:
                continue
            idx, D, slevel = self.delta[conn.sender]
            m = self.mask[(conn.sender, receiver)]
            m = m[rows] if rows is not None else m[:1]
            present = (m[:, idx] if idx is not None else m[:, :1]).to(D.dtype)
            if not bool(present.any()):
                continue
            if slevel > level:
                D = D[:, :, self.pos[level]]
            elif slevel < level:  # known at P only, read at every position (a head computed with deeper ones):
                full = D.new_zeros(*D.shape[:2], self.pos[2].numel(), *D.shape[3:])  # the positions outside P
                full[:, :, self.pos[1]] = D  # feed only outputs at positions outside P, which nothing reads
                D = full
            if idx is not None:
                t = torch.einsum("nbtad,ra->nbtrd", D, present)
            else:
                t = D.unsqueeze(-2) * present[:, 0].unsqueeze(-1)
            if rows is None:
                t = t[..., 0, :]
            term = t if term is None else term + t
        return term

    def _changed_rows(self, receiver: str) -> list[int]:
        rows: set[int] = set()
        for conn in self.graph.connections_into(receiver):
            if conn.sender in self.delta:
                idx = self.delta[conn.sender][0]
                m = self.mask[(conn.sender, receiver)]
                m = m[:, idx] if idx is not None else m[:, :1]
                rows |= set(torch.nonzero(m.any(1)).flatten().tolist())
        return sorted(rows)

    def _attention(self, layer: int, start: Optional[tuple[str, int, Tensor]]) -> None:
        bb, st, dev = self.bb, self.st, self.st["logits"].device
        heads_lvl = self.lvl[result_hook(layer)]
        changed = {role: self._changed_rows(qkv_hook(layer, role)) for role in ROLES}
        if start is not None:
            changed[start[0]] = [start[1]]
        affected = [h for h in range(bb.n_heads) if heads_lvl[h] and (h in changed["q"] or int(self.group[h]) in
                                                                       changed["k"] or int(self.group[h]) in changed["v"])]
        if not affected:
            return
        level = max(heads_lvl[h] for h in affected)
        qp, every = self.pos[level], self.pos[2]
        A = torch.tensor(affected, device=dev)
        groups = sorted({int(self.group[h]) for h in affected})
        G = torch.tensor(groups, device=dev)
        proj = st["proj"][layer]
        new: dict[str, Tensor] = {}
        for role, idx, positions in (("q", A, qp), ("k", G, every), ("v", G, every)):
            ids = idx.tolist()
            cur = proj[role][:, positions][:, :, idx]
            recompute = [i for i, h in enumerate(ids) if h in changed[role]]
            if not recompute:
                new[role] = cur.unsqueeze(0)
                continue
            nodes = idx[recompute]
            hook = qkv_hook(layer, role)
            if start is not None and start[0] == role:
                d = start[2][:, :, positions].unsqueeze(-2)
            else:
                d = self._term(hook, level if role == "q" else 2, nodes)
            x = st["x"][hook][:, positions][:, :, nodes] + d
            out = cur.unsqueeze(0).expand(d.shape[0], *cur.shape).clone()
            out[:, :, :, recompute] = bb.project(layer, role, x, nodes, st["rot"], positions)
            new[role] = out
            if self.commit:
                st["x"][hook][:, positions.unsqueeze(1), nodes.unsqueeze(0)] = x[0]
                proj[role][:, positions.unsqueeze(1), idx.unsqueeze(0)] = out[0]
        where = torch.tensor([groups.index(int(self.group[h])) for h in affected], device=dev)
        z = bb.attend(new["q"], new["k"][..., where, :], new["v"][..., where, :], qp)
        res = bb.result(layer, z, A)
        self.delta[result_hook(layer)] = (A, res - st["acts"][result_hook(layer)][:, qp][:, :, A], level)
        if self.commit:
            st["acts"][result_hook(layer)][:, qp.unsqueeze(1), A.unsqueeze(0)] = res[0]

    def _mlp(self, layer: int, start: Optional[Tensor]) -> None:
        hook, out = mlp_in_hook(layer), mlp_out_hook(layer)
        level = self.lvl[out][0]
        if not level:
            return
        positions = self.pos[level]
        d = start[:, :, positions] if start is not None else self._term(hook, level, None)
        if d is None:
            return
        x = self.st["x"][hook][:, positions] + d
        new = self.bb.mlp(layer, x)
        self.delta[out] = (None, new - self.st["acts"][out][:, positions], level)
        if self.commit:
            self.st["x"][hook][:, positions], self.st["acts"][out][:, positions] = x[0], new[0]

    def logits(self, receiver: str, r: int, extra: Tensor) -> Tensor:
        """Logits ``(n, B, T, vocab)`` of the ``n`` states: ``extra[j]`` added to ``receiver[r]``'s input."""
        self.delta = {}
        graph, bb, st = self.graph, self.bb, self.st
        n = extra.shape[0]
        P = self.pos[1]
        if receiver == graph.output:
            d = extra[:, :, P]
        else:
            layer = int(receiver.split(".")[1])
            if receiver == mlp_in_hook(layer):
                self._mlp(layer, extra)
            else:
                role = receiver.rsplit("_", 2)[-2][-1]
                self._attention(layer, (role, r, extra))
                if mlp_in_hook(layer) in graph.nodes:
                    self._mlp(layer, None)
            for later in range(layer + 1, bb.n_layers):
                self._attention(later, None)
                if mlp_in_hook(later) in graph.nodes:
                    self._mlp(later, None)
            d = self._term(graph.output, 1, None)
        logits = st["logits"].unsqueeze(0).expand(n, *st["logits"].shape)
        if d is None:
            return logits
        out = logits.clone()
        x = st["x"][graph.output][:, P] + d
        out[:, :, P] = bb.unembed(x)
        if self.commit:
            st["x"][graph.output][:, P], st["logits"][:, P] = x[0], out[0, :, P]
        return out

    def update(self, receiver: str, r: int, offset: Tensor) -> None:
        """Make the baseline the circuit with ``offset`` added to ``receiver[r]``'s input (accepted removals):
        every recomputed activation is written back. Activations nobody reads (level 0, positions outside a
        node's level: its level is final, as the edges out of it are) are left stale."""
        self.commit = True
        try:
            self.logits(receiver, r, offset.unsqueeze(0))
        finally:
            self.commit = False
