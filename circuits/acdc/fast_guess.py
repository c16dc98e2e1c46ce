"""First guesses of the fast MLP engine's decisions (``circuits.acdc.fast``): a per-example model of the KL.

Guesses only decide which candidate states are scored together; every decision is verified on scored states,
so a wrong guess costs time, never a different circuit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.acdc.fast_state import State


class Polynomial:
    """A per-example polynomial model of the KL in the receiver input ``z_j``, over the range the chain can reach.

    The KL is a mean of per-example terms ``F_b`` and ``z_j[b]`` moves only example b's, so the sequential loop's
    effect of candidate i, with ``C_b`` example b's input when it is tested, is ``mean_b F_b(C_b + d_bi) - F_b(C_b)``.
    Each ``F_b`` is replaced by its interpolant of degree ``deg`` through ``deg + 1`` equispaced points spanning
    every input the loop can visit if it removes edges (``z0`` plus any prefix sum of the changes, widened by the
    largest single change): one scoring pass of ``deg + 1`` states per receiver. Built once per receiver, it
    stays accurate as removals move ``z_j`` (a quadratic model at ``z0`` mispredicts ~10x more often).
    """

    def __init__(self, st: State, k: int, j: int, z0: Tensor, d: Tensor, deg: int) -> None:
        path = torch.cumsum(d, dim=1)  # (b, n): z_j - z0 with every edge so far removed
        reach = d.abs().amax(dim=1)
        lo = path.amin(dim=1).clamp(max=0) - reach
        width = path.amax(dim=1).clamp(min=0) + reach - lo
        width = torch.where(width > 0, width, torch.ones_like(width))
        t = torch.linspace(0, 1, deg + 1, dtype=torch.float64, device=d.device)
        points = (z0 + lo).unsqueeze(0) + t.to(d.dtype).unsqueeze(1) * width.unsqueeze(0)  # (deg + 1, b)
        f = st.scores(k, j, points, per_example=True).to(torch.float64)
        vander = t.unsqueeze(1) ** torch.arange(deg + 1, device=d.device, dtype=torch.float64)
        self.coef = torch.linalg.solve(vander, f)  # (deg + 1, b): F_b(origin + u * width) = sum_p coef_p u^p
        self.origin, self.scale = (z0 + lo).to(torch.float64), 1.0 / width.to(torch.float64)
        self.dT = d.T.to(torch.float64)  # (n, b)

    def _value(self, z: Tensor) -> Tensor:
        u = (z - self.origin) * self.scale
        out = self.coef[-1].expand_as(u)
        for c in range(self.coef.shape[0] - 2, -1, -1):
            out = torch.addcmul(self.coef[c], out, u)
        return out

    def guess(self, threshold: float, start: int, end: int, z: Tensor, init: Tensor, sweeps: int) -> Tensor:
        """The model's sequential loop for candidates ``start..end`` from the accepted input ``z`` (b,), solved by
        sweeps from ``init`` that each settle at least the first decision that changes (at most ``sweeps``).

        A sweep evaluates the model at the states before each candidate (``C_i``) and after the last; a removed
        candidate's state ``C_i + d_i`` is ``C_{i+1}``, so only kept candidates need one more evaluation."""
        out, lo = init.clone(), 0
        z = z.to(torch.float64)
        for _ in range(sweeps):
            dt = self.dT[start + lo : end]
            if not len(dt):
                break
            taken = dt * out[lo:].unsqueeze(1).to(dt.dtype)
            states = torch.cat([z.unsqueeze(0), torch.cumsum(taken, dim=0).add_(z)])  # C_0 .. C_r
            values = self._value(states)
            after = values[1:].clone()
            kept = torch.nonzero(~out[lo:]).flatten()
            if len(kept):
                after[kept] = self._value(states[kept] + dt[kept])
            new = (after - values[:-1]).mean(dim=1) < threshold
            changed = torch.nonzero(new != out[lo:]).flatten()
            if not len(changed):
                break
            first = int(changed[0])
            out[lo:] = new  # decisions before ``first`` are settled; the rest are Jacobi guesses
            z = z + (dt[: first + 1] * out[lo : lo + first + 1].unsqueeze(1).to(dt.dtype)).sum(dim=0)
            lo += first + 1
        return out
