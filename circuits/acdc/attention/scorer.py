"""Scoring stacked candidate states of one receiver node against a cached run of the current circuit
(``circuits.acdc.attention.delta.baseline``): only the changed heads / MLPs and what they reach through present
edges are recomputed, at the positions their level needs (``bridge_delta.levels``).

The change of receiver node ``r``'s input is the sum of the changed senders' deltas over its present edges,
``t_r = sum_{present s->r} delta_s``. Receiver nodes with the same present edges from the changed senders get
the same ``t``: it is summed once per distinct pattern (``_sums``), and on LayerNorm models the heads sharing
it are projected together with the norm folded into the weights (``circuits.acdc.attention.fold``), so no
per-head copy of the residual stream is normalised per state. Head deltas are kept as (new, cached) and summed
per pattern before the difference (the cached sums have no state axis).

Each ``logits`` call records its cache updates instead of writing them; ``keep(j)`` makes state ``j`` of that
call the new baseline (the engine keeps the state of a node's last removal, which it has already scored).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from circuits.acdc.attention import fold as bridge_fold
from circuits.acdc.attention.delta import ROLES, Baseline
from circuits.graph import Graph
from circuits.acdc.attention.blocks import BridgeBlocks
from circuits.models.transformer_bridge import mlp_in_hook, mlp_out_hook, qkv_hook, result_hook

_Parts = list[tuple[Tensor, Tensor, int, bool]]  # (new (n, B, T_l, [a,] d), cached (B, T_l, ...), level, per-head)


def _take(t: Tensor, positions: Tensor, nodes: Tensor, full: tuple[int, int]) -> Tensor:
    """``t[:, positions][:, :, nodes]``, without copying when both are everything."""
    if positions.numel() != full[0]:
        t = t[:, positions]
    return t if nodes.numel() == full[1] else t[:, :, nodes]


class Scorer:
    """Scores stacked candidate states of receiver nodes of one hook against a ``baseline`` (module docstring)."""

    def __init__(self, bb: BridgeBlocks, graph: Graph, mask: Any, st: Baseline, lvl: dict, P: Tensor) -> None:
        self.bb, self.graph, self.mask, self.st, self.lvl = bb, graph, mask, st, lvl
        dev = st.logits.device
        self.pos = {1: P, 2: torch.arange(st.T, device=dev)}
        self.group = torch.arange(bb.n_heads, device=dev) // (bb.n_heads // bb.n_kv)
        # changed sender hook -> (its changed nodes or None, new and cached outputs at its level's positions, level)
        self.delta: dict[str, tuple[Optional[Tensor], Tensor, Tensor, int]] = {}
        self.writes: list[Callable[[int], None]] = []  # the last pass's cache updates, run by ``keep(j)``
        # what depends on the masks only (fixed while one receiver node is decided: every mask read here is
        # downstream of it): per receiver hook, the rows, patterns and changed senders of ``_changes`` / ``_role``
        self.memo: dict[Any, Any] = {}

    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for while this node is decided: what depends on the masks and
        the baseline only (cached activations at the positions and nodes a pass reads, their pattern sums), which
        no pass of the node changes (the baseline moves after the node, ``keep``; a new ``Scorer`` decides the
        next node)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def _changes(self, receiver: str) -> tuple[list[int], Optional[Tensor], _Parts]:
        """Receiver nodes with a present edge from a changed sender, their present-edge rows over the changed
        sender nodes ``(k, K)``, and the changed senders' deltas in the rows' column order."""
        if receiver not in self.memo:
            senders, cols = [], []
            for conn in self.graph.connections_into(receiver):
                if conn.sender in self.delta:
                    idx, m = self.delta[conn.sender][0], self.mask[(conn.sender, receiver)]
                    cols.append(m[:, idx] if idx is not None else m[:, :1])
                    senders.append(conn.sender)
            if not senders:
                self.memo[receiver] = [], None, senders
            else:
                present = torch.cat(cols, 1)
                hit = present.any(1)
                self.memo[receiver] = torch.nonzero(hit).flatten().tolist(), present[hit], senders
        rows, present, senders = self.memo[receiver]
        parts = [(new, old, slevel, idx is not None) for idx, new, old, slevel in (self.delta[s] for s in senders)]
        return rows, present, parts

    def _sums(self, parts: _Parts, patterns: Tensor, level: int, key: Any = None) -> Tensor:
        """``t_u = sum_{s in pattern u} (new_s - cached_s)`` at ``level``'s positions, ``(n, B, T_level, U, d)``:
        the new outputs summed into one tensor, the cached ones (no state axis) apart and, under ``key``, once per
        node; one difference at the end. A sender known at the metric positions only but read at every position
        adds there alone (the other positions feed only outputs nothing reads)."""
        new = self._pattern_sum([(t, slevel, heads) for t, _, slevel, heads in parts], patterns, level, 2)
        make = lambda: self._pattern_sum([(t, slevel, heads) for _, t, slevel, heads in parts], patterns, level, 1)[0]
        old = make() if key is None else self._once(("cached sums", key, level), make)
        return new[0].sub_(old) if new[1] else new[0] - old

    def _pattern_sum(self, parts: list[tuple[Tensor, int, bool]], patterns: Tensor, level: int, axis: int
                     ) -> tuple[Tensor, bool]:
        """Per pattern, the sum of the parts ``(t, level of t, per-head)`` it reads, at ``level``'s positions (axis
        ``axis`` of each ``t``); and whether the result is a new tensor (else a view of a part)."""
        terms: list[Tensor] = []
        off = 0
        fresh = False  # whether the single term (if only one) is a new tensor
        for t, slevel, heads in parts:
            a = t.shape[axis + 1] if heads else 1
            p = patterns[:, off:off + a]
            off += a
            if not bool(p.any()):
                continue
            every = p.shape[0] == 1 and bool(p.all())
            if not heads:
                t = t.unsqueeze(-2)
                fresh = not bool(p.all())
                if fresh:
                    t = t * p[:, 0].to(t.dtype).unsqueeze(-1)
            elif a == 1:  # one changed node: a broadcast product, not a matrix product of width 1
                t, fresh = (t, False) if every else (t * p.to(t.dtype), True)
            else:
                fresh = True
                t = t.sum(-2, keepdim=True) if every else torch.matmul(p.to(t.dtype), t)  # (U, a) @ (..., a, d)
            if slevel > level:
                t, fresh = t.index_select(axis, self.pos[level]), True
            elif slevel < level:
                t, fresh = self._widen(t, axis - 1), True
            terms.append(t)
        terms.sort(key=lambda t: -t.shape[-2])  # the widest first: the others add into it in place
        if len(terms) == 1:
            return terms[0], fresh
        total = terms[0] + terms[1]
        for t in terms[2:]:
            total.add_(t)
        return total, True

    def _widen(self, t: Tensor, axis: int) -> Tensor:
        """``t`` known at the metric positions (axis ``axis``), zero at every other position."""
        shape = list(t.shape)
        shape[axis + 1] = self.pos[2].numel()
        full = t.new_zeros(shape)
        full.index_copy_(axis + 1, self.pos[1], t)
        return full

    def _project(self, layer: int, role: str, nodes: Tensor, t: Tensor, inverse: Tensor, positions: Tensor) -> Tensor:
        """New q/k/v of receiver nodes ``nodes`` at ``positions``: their cached input plus ``t[..., inverse[i], :]``."""
        bb, st, hook = self.bb, self.st, qkv_hook(layer, role)
        full = (st.T, st.x[hook].shape[2])
        fold = st.fold.get(hook)
        if fold is None:
            x = self._once(("input", hook), lambda: _take(st.x[hook], positions, nodes, full)) + t[..., inverse, :]
            out = bb.project(layer, role, x, nodes, st.rot, positions)
        else:
            def cached() -> tuple[Tensor, ...]:
                w_hat, bias = st.fold_w[hook]
                return (*(_take(fold[key], positions, nodes, full) for key in ("c", "var", "R")), w_hat[nodes],
                        bias[nodes])
            c, var, R, w_hat, bias = self._once(("input", hook), cached)
            out = bridge_fold.project(c, var, R, t, inverse, w_hat, bias, bb.layers[layer].norm1.eps)
            out = bb.rotate(out, role, st.rot, positions, layer)
        def write(j: int) -> None:
            x = _take(st.x[hook], positions, nodes, full) + t[j][..., inverse, :]
            at = (slice(None), positions.unsqueeze(1), nodes.unsqueeze(0))
            st.x[hook][at] = x
            if fold is not None:
                for key, value in bridge_fold.cache(x, st.fold_w[hook][0][nodes]).items():
                    fold[key][at] = value
        self.writes.append(write)
        return out

    def _role(self, layer: int, role: str, idx: Tensor, positions: Tensor, level: int, plan: tuple) -> Tensor:
        """q/k/v of receiver nodes ``idx`` at ``positions`` for the ``n`` states: recomputed where changed."""
        proj = self.st.proj[layer][role]
        cur = self._once(("proj", layer, role), lambda: _take(proj, positions, idx, (self.st.T, proj.shape[2])))
        rows, present, parts, start = plan
        ids = idx.tolist()
        keep = [i for i, h in enumerate(ids) if h in rows]
        if not keep:
            return cur.unsqueeze(0)
        nodes = idx[keep]
        if start is not None:
            t, inverse = start[:, :, positions].unsqueeze(-2), torch.zeros(1, dtype=torch.long, device=idx.device)
        else:
            key = (layer, role, tuple(keep))
            if key not in self.memo:
                sub = present[[rows.index(h) for h in nodes.tolist()]]
                patterns, inverse = torch.unique(sub.to(torch.uint8), dim=0, return_inverse=True)
                self.memo[key] = patterns.bool(), inverse
            patterns, inverse = self.memo[key]
            t = self._sums(parts, patterns, level, key)
        new = self._project(layer, role, nodes, t, inverse, positions)
        if len(keep) == len(ids):
            out = new
        else:
            out = cur.unsqueeze(0).expand(new.shape[0], *cur.shape).clone()
            out[:, :, :, keep] = new
        self.writes.append(lambda j: proj.__setitem__((slice(None), positions.unsqueeze(1), idx.unsqueeze(0)), out[j]))
        return out

    def _attention(self, layer: int, start: Optional[tuple[str, int, Tensor]]) -> None:
        bb, st, dev = self.bb, self.st, self.st.logits.device
        heads_lvl = self.lvl[result_hook(layer)]
        plans = {}
        for role in ROLES:
            if start is not None and start[0] == role:
                plans[role] = ([start[1]], None, [], start[2])
            else:
                plans[role] = (*self._changes(qkv_hook(layer, role)), None)
        q, k, v = (set(plans[role][0]) for role in ROLES)
        affected = [h for h in range(bb.n_heads) if heads_lvl[h] and (h in q or int(self.group[h]) in k
                                                                       or int(self.group[h]) in v)]
        if not affected:
            return
        level = max(heads_lvl[h] for h in affected)
        qp = self.pos[level]
        A = torch.tensor(affected, device=dev)
        groups = sorted({int(self.group[h]) for h in affected})
        G = torch.tensor(groups, device=dev)
        every = self.pos[2]
        new = {role: self._role(layer, role, idx, positions, lv, plans[role])
               for role, idx, positions, lv in (("q", A, qp, level), ("k", G, every, 2), ("v", G, every, 2))}
        kv_k, kv_v = new["k"], new["v"]
        if groups != affected:
            where = torch.tensor([groups.index(int(self.group[h])) for h in affected], device=dev)
            kv_k, kv_v = kv_k[..., where, :], kv_v[..., where, :]
        res = bb.result(layer, bb.attend(new["q"], kv_k, kv_v, qp), A)
        cached = self._once(("result", layer), lambda: _take(st.acts[result_hook(layer)], qp, A, (st.T, bb.n_heads)))
        self.delta[result_hook(layer)] = (A, res, cached, level)
        acts = st.acts[result_hook(layer)]
        self.writes.append(lambda j: acts.__setitem__((slice(None), qp.unsqueeze(1), A.unsqueeze(0)), res[j]))

    def _mlp(self, layer: int, start: Optional[Tensor]) -> None:
        hook, out = mlp_in_hook(layer), mlp_out_hook(layer)
        level = self.lvl[out][0]
        if not level:
            return
        positions = self.pos[level]
        if start is not None:
            d = start[:, :, positions]
        else:
            rows, present, parts = self._changes(hook)
            if not rows:
                return
            d = self._sums(parts, present, level, hook)[..., 0, :]
        x_cached, out_cached = self._once(("mlp", layer), lambda: (self.st.x[hook][:, positions],
                                                                  self.st.acts[out][:, positions]))
        x = x_cached + d
        new = self.bb.mlp(layer, x)
        self.delta[out] = (None, new, out_cached, level)
        def write(j: int) -> None:
            self.st.x[hook][:, positions], self.st.acts[out][:, positions] = x[j], new[j]
        self.writes.append(write)

    def logits(self, receiver: str, r: int, extra: Tensor) -> Tensor:
        """Logits ``(n, B, T, vocab)`` of the ``n`` states: ``extra[j]`` added to ``receiver[r]``'s input."""
        self.delta, self.writes = {}, []
        graph, bb, st = self.graph, self.bb, self.st
        n = extra.shape[0]
        P = self.pos[1]
        d: Optional[Tensor]
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
            rows, present, parts = self._changes(graph.output)
            d = self._sums(parts, present, 1, graph.output)[..., 0, :] if rows else None
        logits = st.logits.unsqueeze(0).expand(n, *st.logits.shape)
        if d is None:
            return logits
        out = logits.clone()
        x = self._once("output", lambda: st.x[graph.output][:, P]) + d
        out[:, :, P] = bb.unembed(x)
        def write(j: int) -> None:
            st.x[graph.output][:, P], st.logits[:, P] = x[j], out[j, :, P]
        self.writes.append(write)
        return out

    def keep(self, j: int, writes: Optional[list] = None) -> None:
        """Make the baseline state ``j`` of the last ``logits`` call (or of the pass that recorded ``writes``):
        every activation it recomputed is written back. Activations nobody reads (level 0, positions outside a
        node's level: its level is final, as the edges out of it are) are left stale."""
        for write in self.writes if writes is None else writes:
            write(j)
        self.writes = []
