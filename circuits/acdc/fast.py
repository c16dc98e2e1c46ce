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
  by the reference's own computation (``fast_ties.Ties``), so rounding cannot make the engines disagree.
* KL in float64 (the default discovery): ACDC's own sequential loop over a receiver's senders, compiled
  (``fast_compiled``, on the CPU): each candidate's state scored once, on the examples it moves, in order.
* Otherwise (other metrics, float32 discovery, nonlinearities the compiled loop does not know),
  speculate and verify: guess each remaining sender's decision (KL: the sequential loop run on a per-example
  polynomial model of the KL over the inputs the loop can reach, ``fast_guess.Polynomial``, from the accepted
  state before each block; other metrics: "removed", then the effects measured in the last pass), build the
  chain of states the sequential loop would visit under those guesses (exclusive prefix sums of the removed
  ``d_i``), score all of them in one batched pass, and accept decisions up to the first that differs from its
  guess. Every accepted decision was scored at exactly the state the sequential loop has.
  Chains are cut into blocks of about twice the last run of correct predictions (at most ``_BLOCK``).
* Scoring: whole states (``_Dense``), or, for KL on hidden receivers where removals move only some examples
  (MNIST pixels equal in both images of a pair), only the (state, example) pairs that move (``_Pairs``).
"""

from __future__ import annotations

import gc
from itertools import repeat
from typing import Any

import torch
from torch import Tensor

from circuits.acdc import fast_compiled
from circuits.acdc.fast_guess import Polynomial
from circuits.acdc.fast_state import State
from circuits.acdc.fast_ties import Ties, settle_ties
from circuits.acdc.loop import Problem, clean_up
from circuits.graph import Edge, Graph

_BLOCK = 192  # most candidate states scored per verification pass
_GROW = 2.0  # next block: _GROW x the decisions the last pass accepted (adaptive, within [_MIN_BLOCK, _BLOCK])
_MIN_BLOCK = 8
_PREDICT = True  # guesses from a per-example polynomial model of the KL (``fast_guess.Polynomial``)
_DEGREE = 6  # ... of this degree
_MIN_MODEL = 8  # ... for receivers with more candidates than this
_PAIRS = True  # KL, hidden receivers: score only the (state, example) pairs a candidate moves (``_Pairs``)
_PAIRS_MAX = 0.75  # ... when candidates move at most this share of the (candidate, example) pairs
_TRANSPOSED = True  # last hop as sub @ d_act^T (``State.scores``)
_EXACT_LOOP = True  # KL in float64: ACDC's own loop, compiled (``fast_compiled``); else speculation


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


class _Dense:
    """Chains scored as whole states (any metric): ``effect_i = T_i - T_(last predicted removal before i)``."""

    def __init__(self, st: State, k: int, j: int, d: Tensor, current: Tensor) -> None:
        self.st, self.k, self.j, self.d, self.current = st, k, j, d, current

    def chain(self, pos: int, z0: Tensor, pred: Tensor) -> Tensor:
        d = self.d[:, pos : pos + len(pred)]
        taken = d * pred.to(d.dtype)  # (b, n)
        self.T = T = self.st.scores(self.k, self.j, (z0.unsqueeze(1) + torch.cumsum(taken, dim=1) - taken + d).T)
        n = len(pred)
        at = torch.where(pred, torch.arange(n, device=pred.device), -1)
        last = torch.cat([at.new_full((1,), -1), torch.cummax(at, dim=0).values[:-1]])  # last removal before i
        before = torch.where(last >= 0, T[last.clamp(min=0)], self.current)
        return (T - before).to(torch.float64)

    def accept(self, pos: int, m: int, outcome: Tensor) -> None:
        took = outcome[: m + 1]
        if bool(took.any()):
            self.current = self.T[: m + 1][took][-1]


class _Pairs:
    """Chains scored only where they move (KL, hidden receivers). Removing candidate i changes ``z_j[b]`` by
    ``d[b, i]``, zero on the examples where ``a'_i == a_i`` (about half the pixels of an MNIST pair), and the KL is a
    mean of per-example terms ``F_b``, so

        effect_i = (1/B) sum_{b: d[b,i] != 0} (F_b(state_i) - F_b(before_i))

    with ``F_b(before_i)`` the value at the last (predicted) removal before i that moved example b, or the current
    circuit's. Equal to the whole-state difference in exact arithmetic; about half the work of ``_Dense`` here.
    The pairs of each candidate are listed once per receiver (candidate-major), so a block's pairs are a slice.
    """

    def __init__(self, st: State, k: int, j: int, d: Tensor) -> None:
        self.st, self.k, self.j = st, k, j
        self.dT = d.T.contiguous()  # (n, b)
        self.nz = self.dT != 0
        b = d.shape[0]
        self.flat = torch.nonzero(self.nz.reshape(-1)).flatten()  # i * b + example, candidate-major
        self.row, self.ex = self.flat // b, self.flat % b
        self.ptr = [0] + torch.cumsum(self.nz.sum(dim=1), dim=0).tolist()
        self.cur = st.example_kl().clone()  # per-example KL terms of the current state
        self.current = self.cur.mean()
        self.idx = torch.arange(b, device=d.device)

    def chain(self, pos: int, z0: Tensor, pred: Tensor) -> Tensor:
        n, end = len(pred), pos + len(pred)
        dT, nz = self.dT[pos:end], self.nz[pos:end]
        p0, p1 = self.ptr[pos], self.ptr[end]
        flat, ex, row = self.flat[p0:p1] - pos * dT.shape[1], self.ex[p0:p1], self.row[p0:p1] - pos
        taken = dT * pred.unsqueeze(1).to(dT.dtype)
        states = torch.cumsum(taken, dim=0).sub_(taken).add_(dT).add_(z0)  # (n, b), as _Dense
        vals = self.st.pair_scores(self.k, self.j, states.reshape(-1).index_select(0, flat), ex)
        self.F = F = torch.zeros_like(states)
        F.reshape(-1).index_copy_(0, flat, vals)
        order = torch.arange(n, device=dT.device).unsqueeze(1)
        last = torch.cummax(torch.where(nz & pred.unsqueeze(1), order, -1), dim=0).values
        last = torch.cat([torch.full_like(last[:1], -1), last[:-1]])  # last predicted mover strictly before
        before = torch.where(last >= 0, F.gather(0, last.clamp(min=0)), self.cur).reshape(-1).index_select(0, flat)
        eff = torch.zeros(n, dtype=torch.float64, device=dT.device)
        return eff.index_add_(0, row, (vals - before).to(torch.float64)).div_(dT.shape[1])

    def accept(self, pos: int, m: int, outcome: Tensor) -> None:
        acc = self.nz[pos : pos + m + 1] & outcome[: m + 1].unsqueeze(1)
        if bool(acc.any()):
            last = torch.where(acc, torch.arange(m + 1, device=acc.device).unsqueeze(1), -1).amax(dim=0)
            self.cur = torch.where(last >= 0, self.F[last.clamp(min=0), self.idx], self.cur)
            self.current = self.cur.mean()


def _receiver(st: State, ties: Ties, k: int, j: int, cand: Tensor, diff: Tensor, current: Tensor):
    """Decide the candidate senders ``cand`` (ascending, nonzero change) of receiver j of layer k+1.

    Guesses: the model's sequential loop (KL: ``fast_guess.Polynomial``, rerun from the accepted state after a
    failed prediction), else "removed" and, after a failed prediction, the effects measured in that pass."""
    thr, n = st.p.threshold, len(cand)
    d = diff[:, cand] * st.W[k][j, cand]  # (b, n): change of z_j when each edge is removed
    if st.compiled:
        return fast_compiled.decide(st, ties, k, j, d)
    z0 = st.Z[k + 1][:, j].clone()
    effects = torch.empty(n, dtype=torch.float64, device=d.device)  # holds re-scored ties exactly
    removed = torch.zeros(n, dtype=torch.bool, device=d.device)
    guess = torch.ones(n, dtype=torch.bool, device=d.device)
    G = Polynomial(st, k, j, z0, d, _DEGREE) if st.kl is not None and _PREDICT and n > _MIN_MODEL else None
    pairs = st.kl is not None and k + 1 < st.L and _PAIRS and float((d != 0).double().mean()) <= _PAIRS_MAX
    scorer = _Pairs(st, k, j, d) if pairs else _Dense(st, k, j, d, current)
    pos, blk = 0, st.block.get(k, _BLOCK)
    while pos < n:
        end = min(n, pos + blk)  # bounded chains: a failed prediction wastes at most one block
        if G is not None:  # the model's loop from the accepted state, for this block
            guess[pos:end] = G.loop(thr, pos, end, z0)
        pred = guess[pos:end]
        eff = scorer.chain(pos, z0, pred)
        st.passes += 1
        outcome = eff < thr
        wrong = torch.nonzero(outcome != pred).flatten()
        m = int(wrong[0]) if len(wrong) else len(pred) - 1
        m = settle_ties(st, ties, k, j, pos, m, eff, outcome, removed, scorer.current)
        missed = m + 1 < len(pred)
        # adaptive length: about twice the run of correct predictions, so a failure wastes little
        blk = min(_BLOCK, max(min(_MIN_BLOCK, _BLOCK), int(_GROW * (m + 1)) if missed else 2 * blk))
        effects[pos : pos + m + 1] = eff[: m + 1]
        removed[pos : pos + m + 1] = outcome[: m + 1]
        scorer.accept(pos, m, outcome)
        took = outcome[: m + 1]
        if bool(took.any()):
            z0 = z0 + d[:, pos : pos + m + 1][:, took].sum(dim=1)
        pos += m + 1
        if missed and G is None:
            guess[pos:end] = eff[m + 1 :] < thr
    st.block[k] = blk
    return effects, removed, scorer.current, z0


def fast_engine(p: Problem) -> tuple[dict, dict[Edge, float], int]:
    """Same contract as ``circuits.acdc.reference.reference_engine``; ``p.flops`` gets the downstream FLOP count."""
    st = State(p, _TRANSPOSED)
    st.compiled = _EXACT_LOOP and fast_compiled.supports(st)
    ties = Ties(st)
    logits = st.Z[st.L]
    current = p.metric(logits, p.full_logits).detach().reshape(())
    records: list[tuple[int, int, Tensor, Tensor]] = []
    thr = p.threshold
    ks = range(st.L - 1, -1, -1)
    if p.progress:
        from circuits.progress import progress_bar

        ks = progress_bar(ks, desc="acdc layers (fast)")
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


def _effects_in_test_order(st: State, records: list[tuple[int, int, Tensor, Tensor]]) -> dict[Edge, float]:
    """Effects keyed by edge, inserted in the order the sequential loop tests them (as the reference does).

    Tens of thousands of ``Edge`` tuples: the cyclic garbage collector is paused while they are built (each
    allocation of a tracked object counts towards a collection that would scan them all again; none of them can
    be part of a cycle), which makes this ~6x faster."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _effects_dict(st, records)
    finally:
        if enabled:
            gc.enable()


def _effects_dict(st: State, records: list[tuple[int, int, Tensor, Tensor]]) -> dict[Edge, float]:
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
        keys = map(tuple.__new__, repeat(Edge, n), zip(repeat(sender, n), senders, repeat(receiver, n), repeat(j, n)))
        effects_out.update(zip(keys, eff[order].tolist()))
    return effects_out
