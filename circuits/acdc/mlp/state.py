"""The fast MLP engine's view of the current circuit (``circuits.acdc.mlp.engine``): activations, commits, and the
metric of candidate states that differ from the current circuit in one receiver neuron's input ``z_{k+1}[j]``.

A change of ``z_{k+1}[j]`` travels to the logits only through edges still in the circuit (absent edges carry
``a'``); downstream of receiver layer k+1 every edge is final while it is processed (ACDC goes output-first), so
the present-weight slices a change of neuron j goes through are built once per receiver (``downstream``).
Two ways to score: whole states (``scores``: each state's z column for every example) and pairs
(``pair_scores``: one example's KL term of one state, for the examples a candidate actually moves).
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.acdc.loop import Problem
from circuits.metrics import ChangedKL
from circuits.patching import run_with_mask


class State:
    """The current circuit's activations and the per-layer data the engine reads."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.conns = p.graph.connections
        self.L = len(self.conns)
        # the declared nonlinearity of each hidden layer: A[k+1] = acts[k](Z[k+1]) (Graph.activations)
        self.acts = [p.graph.activations[c.receiver] for c in self.conns[:-1]]
        self.W = [c.weight().detach() for c in self.conns]
        self.M = [p.mask[(c.sender, c.receiver)] for c in self.conns]
        self.P = [p.a_prime[c.sender] for c in self.conns]
        self.passes = 0  # batched verification passes (speculation), or compiled-loop calls (``compiled``)
        self.block: dict[int, int] = {}  # current adaptive block length per layer
        # KL (the default metric) is scored on the changed logits only (``ChangedKL``); its delta-free terms
        # only change when a decision is committed (``version``), so they are cached per receiver.
        self.kl = ChangedKL(p.full_logits.detach()) if p.metric.kind == "kl" else None
        self._down: dict[tuple[int, int], list[tuple[Tensor, Tensor]]] = {}
        self._rows: dict[tuple[int, int], tuple[int, list]] = {}
        self._base: dict[tuple[str, int, int], tuple[int, tuple[Tensor, ...]]] = {}
        self.version = 0
        self.refresh()

    def refresh(self) -> None:
        """Recompute sender activations A[k] and receiver inputs Z[k+1] of the current circuit."""
        hooks = tuple({c.sender for c in self.conns} | {c.receiver for c in self.conns})
        _, cache = run_with_mask(self.p.model, self.p.clean, self.p.a_prime, self.p.mask, self.p.graph, hooks)
        self.A = [cache[c.sender].clone() for c in self.conns]
        self.Z = [None] + [cache[c.receiver].clone() for c in self.conns]

    def commit(self, k: int, j: int, zj: Tensor) -> None:
        """Set ``z_{k+1}[j] = zj`` and update what lies downstream through edges still in the circuit."""
        self.version += 1
        self.Z[k + 1][:, j] = zj
        if k + 1 == self.L:
            return
        new = self.acts[k](zj)
        d_act = (new - self.A[k + 1][:, j]).unsqueeze(-1)
        self.A[k + 1][:, j] = new
        idx = torch.tensor([j], device=zj.device)
        for m in range(k + 1, self.L):
            sub = (self.W[m] * self.M[m])[:, idx]
            rows = torch.nonzero(sub.any(dim=1)).flatten()
            z = self.Z[m + 1][:, rows] + d_act @ sub[rows].T
            self.Z[m + 1][:, rows] = z
            if m + 1 == self.L:
                return
            new = self.acts[m](z)
            d_act = new - self.A[m + 1][:, rows]
            self.A[m + 1][:, rows] = new
            idx = rows

    def downstream(self, k: int, j: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(rows, present weights, z rows, a rows) per layer from neuron j of layer k+1 to the logits,
        through the circuit; the weights are final while j is processed, z and a change on commits."""
        key = (k, j)
        if key not in self._down:
            chain, idx = [], torch.tensor([j], device=self.W[k].device)
            for m in range(k + 1, self.L):
                sub = self.W[m][:, idx] * self.M[m][:, idx]  # present weights out of the changed neurons
                rows = torch.nonzero(sub.any(dim=1)).flatten()
                chain.append((rows, sub[rows]))
                idx = rows
            self._down[key] = chain
        cached = self._rows.get(key)
        if cached is None or cached[0] != self.version:
            chain = self._down[key]
            cached = (self.version, [(rows, sub, self.Z[m + 1][:, rows].contiguous(),
                                      self.A[m + 1][:, rows].contiguous() if m + 1 < self.L else None)
                                     for m, (rows, sub) in enumerate(chain, start=k + 1)])
            self._rows[key] = cached
        return cached[1]

    def cached(self, key: tuple[str, int, int], make) -> tuple[Tensor, ...]:
        hit = self._base.get(key)
        if hit is None or hit[0] != self.version:
            hit = (self.version, make())
            self._base[key] = hit
        return hit[1]

    def scores(self, k: int, j: int, zj: Tensor, per_example: bool = False) -> Tensor:
        """Metric of the circuit with ``z_{k+1}[j]`` replaced by each row of ``zj`` (n, batch); KL only:
        ``per_example`` gives the (n, batch) per-example KL instead of its mean."""
        n, b = zj.shape
        if k + 1 == self.L:
            rows = torch.tensor([j], device=zj.device)
            return self._score_logits((k, j), rows, (zj - self.Z[self.L][:, j]).unsqueeze(-1), per_example)
        d_act = (self.acts[k](zj) - self.A[k + 1][:, j]).unsqueeze(-1)  # (n, b, 1)
        for m, (rows, sub, z_rows, a_rows) in enumerate(self.downstream(k, j), start=k + 1):
            if m + 1 == self.L:
                # (classes, n*b) = sub @ d_act^T: a few output rows, many columns; read back as an (n, b, r) view
                delta = torch.mm(sub, d_act.reshape(-1, d_act.shape[-1]).T).reshape(-1, n, b)
                return self._score_logits((k, j), rows, delta, per_example, classes_first=True)
            # z + d_act @ sub.T in one op; from the single changed neuron it is an outer product
            z = torch.addcmul(z_rows, d_act, sub.T) if sub.shape[1] == 1 else torch.baddbmm(
                z_rows.expand(n, -1, -1), d_act, sub.T.expand(n, -1, -1))
            d_act = self.acts[m](z) - a_rows
        raise AssertionError("unreachable")

    def _score_logits(self, key: tuple[int, int], rows: Tensor, delta: Tensor, per_example: bool = False,
                      classes_first: bool = False) -> Tensor:
        """Metric of each state whose logits are the current ones plus ``delta`` (n, b, r) on classes ``rows``
        (``ChangedKL`` for KL: equal to the metric's KL in exact arithmetic, only the changed classes touched)."""
        x0 = self.Z[self.L]
        if classes_first and self.kl is None:
            delta = delta.permute(1, 2, 0)
            classes_first = False
        if self.kl is None:
            logits = x0.unsqueeze(0).repeat(delta.shape[0], 1, 1)
            logits[:, :, rows] += delta
            return self.p.metric.many(logits, self.p.full_logits)
        base = self.cached(("base", *key), lambda: self.kl.base(x0, rows))
        return self.kl(base, rows, delta, per_example, classes_first)

    def example_kl(self) -> Tensor:
        """The current circuit's per-example KL terms ``(batch,)`` (KL only)."""
        return self.cached(("example", -1, -1), lambda: self.kl.per_example(self.Z[self.L]))

    def pair_scores(self, k: int, j: int, zv: Tensor, ex: Tensor) -> Tensor:
        """Per-example KL of example ``ex[q]`` with ``z_{k+1}[ex[q], j] = zv[q]``, for each pair q (KL, hidden
        receiver only); every other example keeps its current value."""
        d_act = (self.acts[k](zv) - self.A[k + 1][:, j].index_select(0, ex)).unsqueeze(-1)  # (P, 1)
        for m, (rows, sub, z_rows, a_rows) in enumerate(self.downstream(k, j), start=k + 1):
            if m + 1 == self.L:
                base = self.cached(("pair", k, j), lambda: self.kl.pair_base(self.Z[self.L], rows))
                return self.kl.at(base, torch.mm(sub, d_act.T), ex)
            z = z_rows.index_select(0, ex)  # a gathered copy: updated in place
            z = z.addcmul_(d_act, sub.T) if sub.shape[1] == 1 else z.addmm_(d_act, sub.T)
            d_act = self.acts[m](z).sub_(a_rows.index_select(0, ex))
        raise AssertionError("unreachable")
