"""Scoring stacked candidate states of one receiver node against a cached run of the current circuit
(``circuits.acdc.attention.delta.baseline``): only the changed heads / MLPs and what they reach through present
edges are recomputed, at the positions their level needs (``bridge_delta.levels``).

The change of receiver node ``r``'s input is the sum of the changed senders' deltas over its present edges,
``t_r = sum_{present s->r} delta_s``. Receiver nodes with the same present edges from the changed senders get
the same ``t``: it is summed once per distinct pattern (``_sums``), and on LayerNorm models the heads sharing
it are projected together with the norm folded into the weights (``circuits.acdc.attention.fold``), so no
per-head copy of the residual stream is normalised per state. Head deltas are kept as (new, cached) and summed
per pattern before the difference (the cached sums have no state axis).

Layout: a changed sender's outputs are kept node-first, ``(a, n, B, T_l, d)`` (an MLP is one node), as the
per-head product ``z_h W_O[h]`` comes out of a batched matrix product; a pattern sum is then one matrix product
``(U, a) @ (a, n B T_l d)`` and the sums come out pattern-first, ``(U, n, B, T_l, d)``, each pattern's change one
contiguous block for the projections that read it.

Position 0 attends to itself alone, so a change of a q or k input leaves every output at position 0 as it was: from
the receiver's next layer on, such a state is recomputed at positions 1.. only (``_first``).

Each ``logits`` call records its cache updates instead of writing them; ``keep(j)`` makes state ``j`` of that
call the new baseline (the engine keeps the state of a node's last removal, which it has already scored).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from circuits.acdc.attention import fold as bridge_fold, recipes
from circuits.acdc.attention.delta import ROLES, Baseline
from circuits.acdc.attention.gather import per_node, put, run, take
from circuits.graph import Graph
from circuits.acdc.attention.blocks import BridgeBlocks
from circuits.models.transformer_bridge import mlp_in_hook, mlp_out_hook, qkv_hook, result_hook

_Parts = list[tuple[Tensor, Tensor, int]]  # (new (a, n, B, T_l, d), cached (a, B, T_l, d), level)


class Scorer:
    """Scores stacked candidate states of receiver nodes of one hook against a ``baseline`` (module docstring)."""

    def __init__(self, bb: BridgeBlocks, graph: Graph, mask: Any, st: Baseline, lvl: dict, P: Tensor,
                 lasting: Optional[dict] = None) -> None:
        self.bb, self.graph, self.mask, self.st, self.lvl = bb, graph, mask, st, lvl
        # what depends only on the weights and on masks of receivers already decided (final: ACDC runs output-first),
        # kept across the nodes of one discovery (``_lasting``)
        self.lasting: dict[Any, Any] = {} if lasting is None else lasting
        dev = st.logits.device
        self.every = torch.arange(st.T, device=dev)
        # positions recomputed per level (absolute), and level 1's within level 2's (``_first``: position 0 may be left
        # out of level 2, set per receiver in ``logits``)
        self.pos, self.rel = {1: P, 2: self.every}, {1: P}
        self.group = [h // (bb.n_heads // bb.n_kv) for h in range(bb.n_heads)]  # each head's KV group
        # changed sender hook -> (its changed nodes or None, new and cached outputs at its level's positions, level)
        self.delta: dict[str, tuple[Optional[Tensor], Tensor, Tensor, int]] = {}
        self.writes: list[Callable[[int], None]] = []  # the last pass's cache updates, run by ``keep(j)``
        self.z: dict[int, Tensor] = {}  # the last pass's recomputed heads' z per layer (``_mlp_low_rank``)
        self.layer = 0  # the receiver's layer
        # what is fixed while one receiver node is decided (every mask read here is downstream of it; the baseline
        # moves after the node): the rows, patterns and changed senders of ``_changes`` / ``_role``, and ``_once``'s
        self.memo: dict[Any, Any] = {}

    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for while this node is decided: what depends on the masks and
        the baseline only (cached activations at the positions and nodes a pass reads, their pattern sums), which
        no pass of the node changes (the baseline moves after the node, ``keep``; a new ``Scorer`` decides the
        next node)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def _lasting(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for in the discovery: what is a function of the weights and of
        the masks into receivers already decided, which no later step changes (the key names everything else it
        depends on)."""
        if key not in self.lasting:
            self.lasting[key] = make()
        return self.lasting[key]

    def _changes(self, receiver: str) -> tuple[list[int], Optional[Tensor], _Parts]:
        """Receiver nodes with a present edge from a changed sender, their present-edge rows over the changed
        sender nodes ``(k, K)``, and the changed senders' deltas in the rows' column order. The rows depend on the
        changed senders' nodes and on the masks into ``receiver``, final (it is downstream of the node decided)."""
        if receiver not in self.memo:
            changed = tuple((c.sender, None if (idx := self.delta[c.sender][0]) is None else tuple(idx.tolist()))
                            for c in self.graph.connections_into(receiver) if c.sender in self.delta)
            self.memo[("changed", receiver)] = changed
            self.memo[receiver] = self._lasting(("rows", receiver, changed), lambda: self._rows(receiver, changed))
        rows, present, senders = self.memo[receiver]
        parts = [(new, old, slevel) for _, new, old, slevel in (self.delta[s] for s in senders)]
        return rows, present, parts

    def _rows(self, receiver: str, changed: tuple) -> tuple[list[int], Optional[Tensor], list[str]]:
        """``_changes``'s rows and present-edge matrix for the changed senders ``changed`` (hook, nodes or None)."""
        if not changed:
            return [], None, []
        cols = []
        for sender, idx in changed:
            m = self.mask[(sender, receiver)]
            cols.append(m[:, list(idx)] if idx is not None else m[:, :1])
        present = torch.cat(cols, 1)
        hit = present.any(1)
        return torch.nonzero(hit).flatten().tolist(), present[hit], [sender for sender, _ in changed]

    def _sums(self, parts: _Parts, patterns: Tensor, level: int, key: Any = None, structure: Any = None) -> Tensor:
        """``t_u = sum_{s in pattern u} (new_s - cached_s)`` at ``level``'s positions, ``(U, n, B, T_level, d)``:
        the new outputs summed into one tensor, the cached ones (no state axis) apart and, under ``key``, once per
        node; one difference at the end. A sender known at the metric positions only but read at every position
        adds there alone (the other positions feed only outputs nothing reads)."""
        def make_recipe() -> list:
            sizes = [t.shape[0] for t, _, _ in parts]
            make = lambda: recipes.recipe(patterns, sizes, parts[0][0].dtype)  # noqa: E731
            return make() if structure is None else self._lasting(("recipe", structure, tuple(sizes)), make)
        recipe = make_recipe() if key is None else self._once(("recipe", key, level), make_recipe)
        new, fresh = self._pattern_sum([(t, slevel) for t, _, slevel in parts], recipe, level)
        make = lambda: self._pattern_sum([(t, slevel) for _, t, slevel in parts], recipe, level)[0]  # noqa: E731
        old = (make() if key is None else self._once(("cached sums", key, level), make)).unsqueeze(1)
        return new.sub_(old) if fresh else new - old

    def _pattern_sum(self, parts: list[tuple[Tensor, int]], recipe: list, level: int) -> tuple[Tensor, bool]:
        """Per pattern, the sum of the node-first parts ``(t (a, ..., T_l, d), level of t)`` it reads
        (``recipes.recipe``), at ``level``'s positions, pattern-first; and whether the result is a new tensor (else a
        view of a part). The first part read makes the result, the others are added into it in place (one pass over
        it each)."""
        out: Optional[Tensor] = None
        fresh = False
        for (t, slevel), (how, w) in zip(parts, recipe):
            if how is None:
                continue
            if slevel > level:
                t = t.index_select(-2, self.rel[level])
            if out is None or not fresh or slevel < level:
                term = recipes.term(t, how, w)
                if slevel < level:
                    term = self._widen(term) if out is None else term
                if out is None:
                    out, fresh = term, term is not t or slevel > level
                elif slevel < level:
                    if not fresh:
                        out, fresh = out.clone(), True
                    out.index_add_(out.dim() - 2, self.rel[1], term)
                else:
                    out, fresh = out + term, True
            elif how in ("all", "sum"):
                out.add_(t if how == "all" else t.sum(0, keepdim=True))
            elif how == "scale":
                out.addcmul_(w.view(-1, *[1] * (t.dim() - 1)), t)
            else:
                out.view(out.shape[0], -1).addmm_(w, t.reshape(t.shape[0], -1))
        assert out is not None
        return out, fresh

    def _widen(self, t: Tensor) -> Tensor:
        """``t`` known at the metric positions (axis -2), zero at every other position."""
        shape = list(t.shape)
        shape[-2] = self.pos[2].numel()
        full = t.new_zeros(shape)
        full.index_copy_(t.dim() - 2, self.rel[1], t)
        return full

    def _project(self, layer: int, role: str, nodes: Tensor, t: Tensor, inverse: Tensor, positions: Tensor) -> Tensor:
        """New q/k/v of receiver nodes ``nodes`` at ``positions``: their cached input plus ``t[..., inverse[i], :]``."""
        bb, st, hook = self.bb, self.st, qkv_hook(layer, role)
        full = (st.T, st.x[hook].shape[2])
        fold = st.fold.get(hook)
        if fold is None:
            x = self._once(("input", hook), lambda: take(st.x[hook], positions, nodes, full)) + per_node(t, inverse)
            out = bb.project(layer, role, x, nodes, st.rot, positions)
        else:
            def weights() -> tuple[bridge_fold.Plan, Tensor]:
                w_hat, bias = st.fold_w[hook]
                return bridge_fold.plan(w_hat[nodes], inverse, t.shape[0]), bias[nodes]
            c, var, R = self._once(("input", hook), lambda: tuple(take(fold[key], positions, nodes, full)
                                                                  for key in ("c", "var", "R")))
            plan, bias = self._once(("plan", hook), lambda: self._lasting(
                ("plan", hook, tuple(nodes.tolist()), tuple(inverse.tolist()), t.shape[0]), weights))
            out = bridge_fold.project(c, var, R, t, inverse, plan, bias, bb.layers[layer].norm1.eps)
            out = bb.rotate(out, role, st.rot, positions, layer)
        def write(j: int) -> None:
            x = take(st.x[hook], positions, nodes, full) + per_node(t[:, j:j + 1], inverse)[0]
            put(st.x[hook], positions, nodes, full, x)
            if fold is not None:  # ``plan.w_hat``: ``W^`` of ``nodes``
                for key, value in bridge_fold.cache(x, plan.w_hat).items():
                    put(fold[key], positions, nodes, full, value)
        self.writes.append(write)
        return out

    def _role(self, layer: int, role: str, idx: Tensor, positions: Tensor, level: int, plan: tuple) -> Tensor:
        """q/k/v of receiver nodes ``idx`` at ``positions`` for the ``n`` states: recomputed where changed."""
        proj = self.st.proj[layer][role]
        cur = self._once(("proj", layer, role), lambda: take(proj, positions, idx, (self.st.T, proj.shape[2])))
        rows, present, parts, start = plan
        keep, nodes, patterns, inverse, key, structure = self._once(
            ("role", layer, role), lambda: self._receivers(layer, role, idx, rows, present, start is not None))
        if not keep:
            return cur.unsqueeze(0)
        if start is not None:
            t = start[:, :, positions].unsqueeze(0)
        else:
            t = self._sums(parts, patterns, level, key, structure)
        new = self._project(layer, role, nodes, t, inverse, positions)
        if len(keep) == idx.numel():
            out = new
        else:
            out = cur.unsqueeze(0).expand(new.shape[0], *cur.shape).clone()
            out[:, :, :, run(keep)] = new
        self.writes.append(lambda j: put(proj, positions, idx, (self.st.T, proj.shape[2]), out[j]))
        return out

    def _receivers(self, layer: int, role: str, idx: Tensor, rows: list[int], present: Optional[Tensor],
                   start: bool) -> tuple:
        """``_role``'s receiver nodes with a changed input (positions in ``idx``, and as nodes), their patterns and
        pattern index (one pattern: the receiver node of a ``start``), and the keys of their pattern sums."""
        keep = [i for i, h in enumerate(idx.tolist()) if h in rows]
        nodes = idx[keep]
        if start or not keep:
            return keep, nodes, None, torch.zeros(1, dtype=torch.long, device=idx.device), None, None
        key = (layer, role, tuple(keep))
        structure = (self.memo[("changed", qkv_hook(layer, role))], key)

        def unique() -> tuple[Tensor, Tensor]:
            sub = present[[rows.index(h) for h in nodes.tolist()]]
            patterns, inverse = torch.unique(sub.to(torch.uint8), dim=0, return_inverse=True)
            return patterns.bool(), inverse
        patterns, inverse = self._lasting(("patterns", structure), unique)
        return keep, nodes, patterns, inverse, key, structure

    def _heads(self, layer: int, plans: dict) -> Optional[tuple]:
        """The heads of ``layer`` to recompute (needed, and a changed q or KV group), their level, and as tensors:
        the heads, their KV groups, and each head's group among those (None when the groups are the heads)."""
        dev, heads_lvl = self.st.logits.device, self.lvl[result_hook(layer)]
        q, k, v = (set(plans[role][0]) for role in ROLES)
        group = self.group
        affected = [h for h in range(self.bb.n_heads) if heads_lvl[h] and (h in q or group[h] in k or group[h] in v)]
        if not affected:
            return None
        groups = sorted({group[h] for h in affected})
        where = None if groups == affected else torch.tensor([groups.index(group[h]) for h in affected], device=dev)
        return (max(heads_lvl[h] for h in affected), torch.tensor(affected, device=dev),
                torch.tensor(groups, device=dev), where)

    def _attention(self, layer: int, start: Optional[tuple[str, int, Tensor]]) -> None:
        bb, st = self.bb, self.st
        plans = {}
        for role in ROLES:
            if start is not None and start[0] == role:
                plans[role] = ([start[1]], None, [], start[2])
            else:
                plans[role] = (*self._changes(qkv_hook(layer, role)), None)
        heads = self._once(("heads", layer), lambda: self._heads(layer, plans))
        if heads is None:
            return
        level, A, G, where = heads
        # the receiver's own layer at every position (its q or k input changed there); the output at position 0, v_0,
        # is then unchanged when position 0 is left out (``_first``)
        qp = self.pos[level]  # where the heads' outputs are needed
        q_at = self.every if start is not None and level == 2 else qp  # where their queries are computed
        kvp = self.every if start is not None else self.pos[2]
        new = {role: self._role(layer, role, idx, positions, lv, plans[role])
               for role, idx, positions, lv in (("q", A, q_at, level), ("k", G, kvp, 2), ("v", G, kvp, 2))}
        kv_k, kv_v = new["k"], new["v"]
        if kvp.numel() < st.T:
            kv_k, kv_v = self._first(layer, "k", G, kv_k), self._first(layer, "v", G, kv_v)
        if where is not None:
            kv_k, kv_v = kv_k[..., where, :], kv_v[..., where, :]
        z = bb.attend(new["q"], kv_k, kv_v, q_at)
        z = self.z[layer] = z[:, :, 1:] if q_at.numel() > qp.numel() else z  # position 0 left out: its output is v_0
        res = bb.result_by_head(layer, z, A)  # (|A|, n, B, T_q, d)
        acts = st.acts[result_hook(layer)]
        cached = self._once(("result", layer), lambda: take(acts, qp, A, (st.T, bb.n_heads)).permute(2, 0, 1, 3)
                            .contiguous())
        self.delta[result_hook(layer)] = (A, res, cached, level)
        self.writes.append(lambda j: put(acts, qp, A, (st.T, bb.n_heads), res[:, j].permute(1, 2, 0, 3)))

    def _first(self, layer: int, role: str, G: Tensor, new: Tensor) -> Tensor:
        """Keys or values ``new`` of KV groups ``G`` from position 1 on, with position 0's as cached in front. Left out
        of a state of a receiver's q or k input (``logits``): position 0 attends to itself alone, so every head's
        output there is its ``v_0``, and no input at position 0 changes, in that layer or later."""
        proj = self.st.proj[layer][role]
        first = self._once(("first", layer, role), lambda: take(proj, self.every[:1], G, (self.st.T, proj.shape[2])))
        return torch.cat((first.expand(new.shape[0], *first.shape), new), dim=2)

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
            d = self._sums(parts, present, level, hook, self.memo[("changed", hook)])[0]
        st = self.st
        x_cached, out_cached = self._once(("mlp", layer), lambda: (st.x[hook][:, positions],
                                                                  st.acts[out][:, positions]))
        pre = None if start is not None else self._mlp_low_rank(layer, d, level)
        new = self.bb.mlp(layer, x_cached + d) if pre is None else self.bb.mlp_out(layer, pre)
        self.delta[out] = (None, new.unsqueeze(0), out_cached.unsqueeze(0), level)
        # the folded cache is read only by states of receivers in this layer (``_mlp_low_rank``); the MLP's input
        # changes only while receivers in this layer or earlier are decided: kept up to date in this layer only
        fold = layer in st.mlp_fold and layer == self.layer
        def write(j: int) -> None:
            x = x_cached + d[j]
            st.x[hook][:, positions], st.acts[out][:, positions] = x, new[j]
            if fold:
                for key, value in bridge_fold.mlp_cache(x, st.mlp_fold_w[layer]).items():
                    st.mlp_fold[layer][key][:, positions] = value
        self.writes.append(write)

    def _mlp_low_rank(self, layer: int, t: Tensor, level: int) -> Optional[Tensor]:
        """The MLP's first map on its changed input, ``LN(b + t) W_in + b_in``, through ``fold.mlp_pre`` with ``t W^``
        from the changed heads' ``z`` (``fold``'s MLP section) when only heads of this layer changed its input
        (a state of a receiver in this layer), at no fewer positions than the MLP needs and fewer than ``d``
        features in all; else None (the MLP on ``b + t``)."""
        hook, res = mlp_in_hook(layer), result_hook(layer)
        if layer not in self.st.mlp_fold or self.memo[hook][2] != [res] or self.delta[res][3] < level:
            return None
        A, _, cached, head_level = self.delta[res]
        n_z = A.numel() * self.bb.d_head
        if n_z >= self.bb.d_model:
            return None
        weights, present = self.st.mlp_fold_w[layer], self.memo[hook][1][0].to(cached.dtype)  # (|A|,)
        positions = self.pos[level]
        z = self.z[layer] if head_level == level else self.z[layer][:, :, self.rel[level]]
        if head_level != level:
            cached = cached[:, :, self.rel[level]]

        def fixed() -> tuple[Tensor, ...]:
            w = (weights.per_head[A] * present.view(-1, 1, 1)).permute(1, 0, 2).reshape(-1, n_z)
            old = F.linear((cached * present.view(-1, 1, 1, 1)).sum(0), weights.w_hat)
            cache = self.st.mlp_fold[layer]
            return w, old, tuple(cache[key][:, positions] for key in ("c", "var", "R"))
        w, old, cache = self._once(("mlp low rank", layer), fixed)
        moved = F.linear(z.reshape(*z.shape[:-2], n_z), w).sub_(old)
        return bridge_fold.mlp_pre(cache, t, moved, weights)

    def logits(self, receiver: str, r: int, extra: Tensor) -> Tensor:
        """Logits ``(n, B, T, vocab)`` of the ``n`` states: ``extra[j]`` added to ``receiver[r]``'s input."""
        self.delta, self.writes, self.z = {}, [], {}
        graph, bb, st = self.graph, self.bb, self.st
        n = extra.shape[0]
        P = self.pos[1]
        d: Optional[Tensor]
        self.layer = bb.n_layers if receiver == graph.output else int(receiver.split(".")[1])
        first = receiver.endswith(("hook_q_input", "hook_k_input")) and int(P[0]) > 0  # ``_first``
        self.pos[2] = self.every[1:] if first else self.every
        self.rel[1] = P - 1 if first else P
        if receiver == graph.output:
            d = extra[:, :, P]
        else:
            layer = self.layer
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
            d = self._sums(parts, present, 1, graph.output, self.memo[("changed", graph.output)])[0] if rows else None
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
