"""The MLP engine's speculate-and-verify path (``mlp.speculative``; ``circuits.acdc.mlp.engine``'s docstring):
guess each remaining sender's decision, score the chain of states the sequential loop would visit under those
guesses in one batched pass, accept decisions up to the first that differs from its guess.

Guesses (KL: the sequential loop run on a per-example polynomial model of the KL, ``guess.Polynomial``, from the
accepted state before each block; other metrics: "removed", then the effects measured in the last pass) only
decide which states are scored together. Chains are cut into blocks of about twice the last run of correct
predictions (at most ``MLPOptions.block``). Scoring: whole states (``_Dense``), or, for KL on hidden receivers
where removals move only some examples, only the (state, example) pairs that move (``_Pairs``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.acdc.mlp.guess import Polynomial
from circuits.acdc.mlp.state import State
from circuits.acdc.mlp.ties import Ties, settle_ties


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


def decide(st: State, ties: Ties, k: int, j: int, d: Tensor, current: Tensor):
    """Decide the candidates of receiver j of layer k+1 whose removal changes ``z_j`` by the columns of ``d``
    (b, n), in order; returns (effects, removed, current metric, final ``z_j``)."""
    o = st.p.options.mlp
    thr, n = st.p.threshold, d.shape[1]
    z0 = st.Z[k + 1][:, j].clone()
    effects = torch.empty(n, dtype=torch.float64, device=d.device)  # holds re-scored ties exactly
    removed = torch.zeros(n, dtype=torch.bool, device=d.device)
    guess = torch.ones(n, dtype=torch.bool, device=d.device)
    G = Polynomial(st, k, j, z0, d, o.degree) if st.kl is not None and o.predict and n > o.min_model else None
    pairs = st.kl is not None and k + 1 < st.L and o.pairs and float((d != 0).double().mean()) <= o.pairs_max
    scorer = _Pairs(st, k, j, d) if pairs else _Dense(st, k, j, d, current)
    pos, blk = 0, st.block.get(k, o.block)
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
        blk = min(o.block, max(min(o.min_block, o.block), int(o.grow * (m + 1)) if missed else 2 * blk))
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
