"""Near-ties of the fast MLP engine (``circuits.acdc.mlp.engine``) decided exactly as the reference decides them."""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.acdc.mlp.state import State


class Ties:
    """Near-ties decided exactly as the reference decides them, so rounding cannot flip a decision.

    An effect within ``tol`` of the threshold (``tol = 32 eps (1 + max|full logits|) (1 + |current|)``,
    far above the engines' measured disagreement: <= 1 eps of the KL) is re-scored the reference's way:
    ``Problem.score`` of the same two masks the reference compares (the state with the edge removed, and
    the state of its last scored removal, ``scored``), subtracted in Python floats. Elsewhere the two
    engines' effects differ by less than ``tol`` and fall on the same side of the threshold.
    """

    def __init__(self, st: State) -> None:
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


def settle_ties(st: State, ties: Ties, k: int, j: int, pos: int, m: int, eff: Tensor, outcome: Tensor,
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
