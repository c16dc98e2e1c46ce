"""The fast ACDC engine for MLP-shaped graphs: the reference's decisions, without a forward pass per edge.

Applies when every connection has a dense ``weight``, connection k feeds only connection k+1 (via
``Graph.node_output``), nodes are neurons on the last axis and the graph declares every hidden node's
elementwise nonlinearity (``Graph.activations``; never read from the model's class). Why it is exact:

* Removing edge i->j while testing receiver layer k+1 changes only ``z_{k+1}[j]``, by
  ``d_i = W[j,i] (a'_k[i] - a_k[i])`` (a vector over the batch). Layers <= k are fixed (ACDC goes
  output-first) and the change travels downstream only through edges still in the circuit, since
  absent edges carry ``a'``: ``dz_{m+1} = (a_m^new - a_m) @ (W_m * present_m).T`` over the neurons
  that changed.
* Ties, as the reference: an edge with ``a'_i == a_i`` on every example or ``W[j,i] == 0`` has effect
  exactly 0 by rule (``loop.unchanged_edges``); an effect within rounding of the threshold is re-scored
  by the reference's own computation (``_Ties``), so rounding cannot make the engines disagree.
* Speculate and verify: predict each remaining sender's decision (first: the sequential loop run on a
  quadratic per-example model of the KL, ``_predict``, or "removed" for other metrics; after a failed
  prediction: its effect measured in that pass plus the model's interaction with the flipped decision,
  ``_reguess``), build the chain of states the sequential
  loop would visit under those predictions (exclusive prefix sums of the removed ``d_i``), score
  all of them in one batched pass, and accept decisions up to the first that differs from its
  prediction. Every accepted decision was scored at exactly the state the sequential loop has.
  Chains are cut into blocks of about twice the last run of correct predictions (at most ``_BLOCK``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuits.acdc.loop import Problem, clean_up
from circuits.graph import Edge, Graph
from circuits.metrics import ChangedKL, _kl
from circuits.patching import run_with_mask

_BLOCK = 192  # most candidate states scored per verification pass
_GROW = 2.0  # next block: _GROW x the decisions the last pass accepted (adaptive, within [_MIN_BLOCK, _BLOCK])
_MIN_BLOCK = 8
_PREDICT = True  # first guesses from a quadratic model of the KL (``_predict``)
_CORRECT = True  # re-guesses after a failed prediction corrected by the quadratic model (_reguess)
_TRANSPOSED = True  # last hop as sub @ d_act^T (see scores)
_SWEEPS = 12  # Jacobi sweeps of that model's sequential recursion


def supports(model: Any, graph: Graph) -> bool:
    """Whether ``graph`` is a plain MLP chain this engine handles (otherwise use the reference)."""
    conns = graph.connections
    if any(c.receiver not in graph.activations for c in conns[:-1]):
        return False  # a hidden node whose nonlinearity is not declared: only a forward pass knows it
    if any(c.weight is None for c in conns) or conns[-1].receiver != graph.output:
        return False
    if len({c.sender for c in conns}) != len(conns) or len({c.receiver for c in conns}) != len(conns):
        return False
    if any(graph.nodes[h].axis != -1 for h in graph.nodes):
        return False
    return all(graph.node_output.get(a.receiver) == b.sender for a, b in zip(conns[:-1], conns[1:]))


class _State:
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
        self.flops = 0
        self.passes = 0  # batched verification passes (speculation rounds)
        self.block: dict[int, int] = {}  # current adaptive block length per layer
        # KL (the default metric) is scored on the changed logits only, see _score_logits.
        self.kl = ChangedKL(p.full_logits.detach()) if p.metric.fn is _kl else None
        # Downstream of a receiver is final while it is processed (ACDC goes output-first), so the
        # present-weight slices it propagates through are built once per receiver; the KL terms of the
        # unchanged logits only change when a decision is committed (``version``).
        self._down: dict[tuple[int, int], list[tuple[Tensor, Tensor]]] = {}
        self._rows: dict[tuple[int, int], tuple[int, list]] = {}
        self._base: dict[tuple[int, int], tuple[int, tuple[Tensor, Tensor, Tensor]]] = {}
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

    def _downstream(self, k: int, j: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
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
            cached = (self.version, [(rows, sub, self.Z[m + 1][:, rows], self.A[m + 1][:, rows] if m + 1 < self.L else None)
                                     for m, (rows, sub) in enumerate(chain, start=k + 1)])
            self._rows[key] = cached
        return cached[1]

    def scores(self, k: int, j: int, zj: Tensor, per_example: bool = False) -> Tensor:
        """Metric of the circuit with ``z_{k+1}[j]`` replaced by each row of ``zj`` (n, batch); KL only:
        ``per_example`` gives the (n, batch) per-example KL instead of its mean."""
        n, b = zj.shape
        if k + 1 == self.L:
            rows = torch.tensor([j], device=zj.device)
            return self._score_logits((k, j), rows, (zj - self.Z[self.L][:, j]).unsqueeze(-1), per_example)
        d_act = (self.acts[k](zj) - self.A[k + 1][:, j]).unsqueeze(-1)  # (n, b, 1)
        for m, (rows, sub, z_rows, a_rows) in enumerate(self._downstream(k, j), start=k + 1):
            self.flops += 2 * n * b * sub.shape[0] * sub.shape[1]
            if m + 1 == self.L:
                # (classes, n*b) = sub @ d_act^T: a few output rows, many columns, about 2x faster than
                # d_act @ sub.T for the narrow sub of the first layer; read back as an (n, b, r) view
                if _TRANSPOSED:
                    delta = torch.mm(sub, d_act.reshape(-1, d_act.shape[-1]).T).reshape(-1, n, b)
                    return self._score_logits((k, j), rows, delta, per_example, classes_first=True)
                return self._score_logits((k, j), rows, d_act @ sub.T, per_example)
            # z + d_act @ sub.T in one op; from the single changed neuron it is an outer product
            z = torch.addcmul(z_rows, d_act, sub.T) if sub.shape[1] == 1 else torch.baddbmm(
                z_rows.expand(n, -1, -1), d_act, sub.T.expand(n, -1, -1))
            d_act = self.acts[m](z) - a_rows
        raise AssertionError("unreachable")

    def _score_logits(self, key: tuple[int, int], rows: Tensor, delta: Tensor, per_example: bool = False,
                      classes_first: bool = False) -> Tensor:
        """Metric of each state whose logits are the current ones plus ``delta`` (n, b, r) on classes ``rows``.

        For KL only the changed classes are touched (``circuits.metrics.ChangedKL``, equal to the metric's
        KL in exact arithmetic); its delta-free terms are cached per receiver until the next commit.
        """
        x0 = self.Z[self.L]
        if classes_first and self.kl is None:
            delta = delta.permute(1, 2, 0)
            classes_first = False
        if self.kl is None:
            logits = x0.unsqueeze(0).repeat(delta.shape[0], 1, 1)
            logits[:, :, rows] += delta
            return self.p.metric.many(logits, self.p.full_logits)
        cached = self._base.get(key)
        if cached is None or cached[0] != self.version:
            cached = (self.version, self.kl.base(x0, rows))
            self._base[key] = cached
        return self.kl(cached[1], rows, delta, per_example, classes_first)


def _predict(st: _State, k: int, j: int, z0: Tensor, d: Tensor) -> Tensor:
    """Guessed decisions from a quadratic model of the KL in ``z_j`` (a guess only: every decision is verified).

    The KL is a mean of per-example terms and ``z_j[b]`` moves only example b's logits, so
    ``KL(z0 + u) ~ KL(z0) + mean_b (g_b u_b + h_b u_b^2 / 2)`` with g, h from central differences at a
    step ``s`` of the size of the changes (one pass, 3 states). Removing candidate i after the removed
    set R then costs ``a_i + sum_{i' in R, i' < i} G[i, i']`` with ``a_i = mean_b (g_b d_ib + h_b d_ib^2 / 2)``
    and ``G = (d h) d^T / B``: the sequential loop on that model, solved by a few Jacobi sweeps.
    """
    s = float(d.abs().amax(dim=0).median()) or 1.0
    f = st.scores(k, j, torch.stack([z0, z0 + s, z0 - s]), per_example=True).to(torch.float64)
    g, h = (f[1] - f[2]) / (2 * s), (f[1] - 2 * f[0] + f[2]) / (s * s)
    dt = d.T.to(torch.float64)  # (n, b)
    a = ((g * dt + 0.5 * h * dt * dt).mean(dim=-1)).cpu().numpy()
    G = ((dt * h) @ dt.T / dt.shape[1]).cpu().numpy()
    # the recursion's fixed point, Jacobi style: out = (a + strictly-lower(G) @ out < thr), a few sweeps
    lower, thr = np.tril(G, -1), st.p.threshold
    out = a < thr
    for _ in range(_SWEEPS):
        out = a + lower @ out < thr
    return torch.from_numpy(out).to(d.device), torch.from_numpy(G).to(d.device)


def _chain(st: _State, k: int, j: int, z0: Tensor, d: Tensor, pred: Tensor, current: Tensor):
    """Score the states the sequential loop visits if the decisions are ``pred``; returns (T, before)."""
    taken = d * pred.to(d.dtype)  # (b, n)
    excl = torch.cumsum(taken, dim=1) - taken
    T = st.scores(k, j, (z0.unsqueeze(1) + excl + d).T)
    n = len(pred)
    pos = torch.where(pred, torch.arange(n, device=pred.device), torch.full_like(pred, -1, dtype=torch.long))
    last = torch.cummax(pos, dim=0).values
    last_before = torch.cat([torch.full((1,), -1, dtype=torch.long, device=pred.device), last[:-1]])
    before = torch.where(last_before >= 0, T[last_before.clamp(min=0)], current)
    return T, before


class _Ties:
    """Near-ties decided exactly as the reference decides them, so rounding cannot flip a decision.

    An effect within ``tol`` of the threshold (``tol = 32 eps (1 + max|full logits|) (1 + |current|)``,
    far above the engines' measured disagreement: <= 1 eps of the KL) is re-scored the reference's way:
    ``Problem.score`` of the same two masks the reference compares (the state with the edge removed, and
    the state of its last scored removal, ``scored``), subtracted in Python floats. Elsewhere the two
    engines' effects differ by less than ``tol`` and fall on the same side of the threshold.
    """

    def __init__(self, st: _State) -> None:
        self.st, self.p = st, st.p
        self.scored = {key: m.clone() for key, m in self.p.mask.items()}  # the reference's ``current`` state
        eps = torch.finfo(self.p.full_logits.dtype).eps
        self.unit = 32 * eps * (1.0 + float(self.p.full_logits.abs().max()))
        self.rescored = 0

    def row(self, upto: int, decided: Tensor) -> Tensor:
        """Row j of mask k when sender ``upto`` is tested: rule-zero senders before it gone (if thr > 0),
        ``decided`` (removal flags of the first candidates) applied, the rest as at the receiver's start."""
        r, zero_c, cand = self.row0.clone(), self.zero_c, self.cand
        if self.p.threshold > 0:
            r[zero_c[zero_c < upto]] = False
        r[cand[: len(decided)][decided]] = False
        return r

    def score_row(self, k: int, j: int, row: Tensor) -> float:
        conn = self.st.conns[k]
        mask = dict(self.p.mask)
        mk = self.st.M[k].clone()
        mk[j] = row
        mask[(conn.sender, conn.receiver)] = mk
        return self.p.score(mask)

    def effect(self, k: int, j: int, q: int, decided: Tensor) -> float:
        """The reference's effect of removing candidate ``q`` after the decisions ``decided`` (len q)."""
        self.rescored += 1
        cand = self.cand
        new = self.score_row(k, j, self.row(int(cand[q]), torch.cat([decided, decided.new_ones(1)])))
        gone = torch.nonzero(decided).flatten()
        if len(gone):
            last = int(gone[-1])
            cur = self.score_row(k, j, self.row(int(cand[last]), decided[: last + 1]))
        else:
            cur = self.p.score(self.scored)
        return new - cur

    def start(self, row0: Tensor, zero_c: Tensor, cand: Tensor) -> None:
        self.row0, self.zero_c, self.cand = row0, zero_c, cand

    def committed(self, k: int, j: int, removed: Tensor) -> None:
        """After receiver j's decisions: the state of its last scored removal becomes ``scored``."""
        last = int(torch.nonzero(removed).flatten()[-1])
        self.scored = {key: m.clone() for key, m in self.p.mask.items()}
        conn = self.st.conns[k]
        self.scored[(conn.sender, conn.receiver)][j] = self.row(int(self.cand[last]), removed[: last + 1])


def _settle_ties(st: _State, ties: _Ties, k: int, j: int, pos: int, m: int, eff: Tensor, outcome: Tensor,
                 removed: Tensor, current: Tensor) -> int:
    """Re-decide the near-ties among the first ``m + 1`` of this pass the reference's way (in place);
    returns the new last accepted index (a re-decided tie that differs from the prediction ends the pass)."""
    near = torch.nonzero((eff[: m + 1] - st.p.threshold).abs() <= ties.unit * (1.0 + abs(float(current)))).flatten()
    for q in near.tolist():
        was = bool(outcome[q])
        e = ties.effect(k, j, pos + q, torch.cat([removed[:pos], outcome[:q]]))
        eff[q], outcome[q] = e, e < st.p.threshold
        if bool(outcome[q]) != was and q < m:
            return q
    return m


def _reguess(G: Tensor | None, pos: int, m: int, eff: Tensor, outcome: Tensor, pred: Tensor, thr: float) -> Tensor:
    """Guesses for the rest of a pass whose prediction failed at ``m``: the effects measured there (at a state
    that wrongly has candidate m removed or kept), corrected by the quadratic model's interaction
    ``G[i, m]`` for the flipped decision: ``eff_i + (removed_m - predicted_m) G[i, m] < thr``."""
    rest = eff[m + 1 :]
    if G is not None and _CORRECT and len(rest):
        flip = float(outcome[m]) - float(pred[m])
        rest = rest + flip * G[pos + m + 1 : pos + len(pred), pos + m]
    return rest < thr


def _receiver(st: _State, ties: _Ties, k: int, j: int, cand: Tensor, diff: Tensor, current: Tensor):
    """Decide the candidate senders ``cand`` (ascending, nonzero change) of receiver j of layer k+1."""
    thr = st.p.threshold
    d = diff[:, cand] * st.W[k][j, cand]  # (b, n): change of z_j when each edge is removed
    z0 = st.Z[k + 1][:, j].clone()
    effects = torch.empty(len(cand), dtype=torch.float64, device=d.device)  # holds re-scored ties exactly
    removed = torch.zeros(len(cand), dtype=torch.bool, device=d.device)
    # first guess: the quadratic model's (KL), else every edge goes (most do); after a failed prediction,
    # the outcomes of the last pass
    if st.kl is not None and _PREDICT and len(cand) > 8:
        guess, G = _predict(st, k, j, z0, d)
    else:
        guess, G = torch.ones(len(cand), dtype=torch.bool, device=d.device), None
    pos, blk = 0, st.block.get(k, _BLOCK)
    while pos < len(cand):
        end = min(len(cand), pos + blk)  # bounded chains: a failed prediction wastes at most one block
        dd, pred = d[:, pos:end], guess[pos:end]
        T, before = _chain(st, k, j, z0, dd, pred, current)
        st.passes += 1
        eff = (T - before).to(torch.float64)
        outcome = eff < thr
        wrong = torch.nonzero(outcome != pred).flatten()
        m = int(wrong[0]) if len(wrong) else len(pred) - 1
        m = _settle_ties(st, ties, k, j, pos, m, eff, outcome, removed, current)
        guess[pos + m + 1 : end] = _reguess(G, pos, m, eff, outcome, pred, thr)
        # adaptive length: about twice the run of correct predictions, so a failure wastes little
        blk = min(_BLOCK, max(min(_MIN_BLOCK, _BLOCK), int(_GROW * (m + 1)) if m + 1 < len(pred) else 2 * blk))
        effects[pos : pos + m + 1] = eff[: m + 1]
        removed[pos : pos + m + 1] = outcome[: m + 1]
        took = outcome[: m + 1]
        if bool(took.any()):
            z0 = z0 + dd[:, : m + 1][:, took].sum(dim=1)
            current = T[: m + 1][took][-1]
        pos += m + 1
    st.block[k] = blk
    return effects, removed, current, z0


def fast_engine(p: Problem) -> tuple[dict, dict[Edge, float], int]:
    """Same contract as ``circuits.acdc.reference.reference_engine``; ``p.flops`` gets the downstream FLOP count."""
    st = _State(p)
    ties = _Ties(st)
    logits = st.Z[st.L]
    current = p.metric(logits, p.full_logits).detach().reshape(())
    records: list[tuple[int, int, Tensor, Tensor]] = []
    thr = p.threshold
    ks = range(st.L - 1, -1, -1)
    if p.progress:
        from tqdm.auto import tqdm

        ks = tqdm(ks, desc="acdc layers (fast)")
    for k in ks:
        diff = st.P[k] - st.A[k]  # A[k] is fixed while layer k+1 is processed
        moved = (diff != 0).any(dim=0)  # tie rule (acdc.unchanged_edges): a'_i == a_i or W[j,i] == 0
        for j in range(st.M[k].shape[0]):
            if k + 1 < st.L and not bool(st.M[k + 1][:, j].any()):
                st.M[k][j, :] = False
                continue
            present = st.M[k][j]
            live = moved & (st.W[k][j] != 0)
            zero_c = torch.nonzero(present & ~live).flatten()
            cand = torch.nonzero(present & live).flatten()
            ties.start(present.clone(), zero_c, cand)
            if len(zero_c):  # effect exactly 0: removed iff 0 < threshold; the state does not change
                records.append((k, j, zero_c, torch.zeros(len(zero_c), dtype=torch.float64, device=present.device)))
                if 0.0 < thr:
                    st.M[k][j, zero_c] = False
            if not len(cand):
                continue
            effects, removed, current, zj = _receiver(st, ties, k, j, cand, diff, current)
            records.append((k, j, cand, effects))
            if bool(removed.any()):
                st.M[k][j, cand[removed]] = False
                ties.committed(k, j, removed)
                st.commit(k, j, zj)
    clean_up(p.graph, p.mask)
    p.flops, p.passes, p.rescored = st.flops, st.passes, ties.rescored
    return p.mask, _effects_in_test_order(st, records), sum(len(r[2]) for r in records)


def _effects_in_test_order(st: _State, records: list[tuple[int, int, Tensor, Tensor]]) -> dict[Edge, float]:
    """Effects keyed by edge, inserted in the order the sequential loop tests them (as the reference does)."""
    grouped: dict[tuple[int, int], list[tuple[Tensor, Tensor]]] = {}
    for k, j, idx, eff in records:
        grouped.setdefault((k, j), []).append((idx, eff))
    effects_out: dict[Edge, float] = {}
    for (k, j), parts in grouped.items():
        idx = torch.cat([a for a, _ in parts]) if len(parts) > 1 else parts[0][0]
        eff = torch.cat([b for _, b in parts]) if len(parts) > 1 else parts[0][1]
        order = torch.argsort(idx)
        sender, receiver = st.conns[k].sender, st.conns[k].receiver
        senders = idx[order].tolist()
        n = len(senders)
        keys = map(Edge._make, zip([sender] * n, senders, [receiver] * n, [j] * n))  # 4x faster than Edge(...)
        effects_out.update(zip(keys, eff[order].tolist()))
    return effects_out
