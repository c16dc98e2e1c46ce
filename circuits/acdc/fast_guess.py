"""First guesses of the fast MLP engine's decisions (``circuits.acdc.fast``): a quadratic model of the KL.

Guesses only decide which candidate states are scored together; every decision is verified on scored states,
so a wrong guess costs time, never a different circuit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.acdc.fast_state import State


class Quadratic:
    """A per-example quadratic model of the KL in the receiver input ``z_j``.

    The KL is a mean of per-example terms and ``z_j[b]`` moves only example b's logits, so
    ``KL(z0 + u) ~ KL(z0) + mean_b (g_b u_b + h_b u_b^2 / 2)`` with g, h from central differences at a step ``s``
    of the size of the changes (one pass, 3 states). Removing candidate i (change ``d[:, i]`` of ``z_j``) after the
    removed set R then costs ``a_i + sum_{i' in R, i' < i} G[i, i']`` with ``a_i = mean_b (g_b d_bi + h_b d_bi^2/2)``
    and ``G[i, i'] = mean_b d_bi h_b d_bi'``. ``G`` is never formed: the interaction with the removals before i is
    ``mean_b d_bi h_b C_bi`` with ``C`` the exclusive prefix sum of the removed changes (``O(n b)``, not ``O(n^2 b)``).
    """

    def __init__(self, st: State, k: int, j: int, z0: Tensor, d: Tensor) -> None:
        s = float(d.abs().amax(dim=0).median()) or 1.0
        f = st.scores(k, j, torch.stack([z0, z0 + s, z0 - s]), per_example=True).to(torch.float64)
        g, h = (f[1] - f[2]) / (2 * s), (f[1] - 2 * f[0] + f[2]) / (s * s)
        self.d = d.to(torch.float64)  # (b, n)
        self.a = (g.unsqueeze(1) * self.d + 0.5 * h.unsqueeze(1) * self.d * self.d).mean(dim=0)  # (n,)
        self.dh = self.d * (h / self.d.shape[0]).unsqueeze(1)  # (b, n): G[i, i'] = dh[:, i] . d[:, i']

    def guess(self, threshold: float, sweeps: int) -> Tensor:
        """The sequential loop on the model, ``out_i = a_i + sum_{i' < i, out_i'} G[i, i'] < threshold``, solved
        by Jacobi sweeps (a fixed point is final: the sweeps stop there)."""
        out = self.a < threshold
        for _ in range(sweeps):
            taken = self.d * out.to(self.d.dtype)
            inter = (self.dh * (torch.cumsum(taken, dim=1) - taken)).sum(dim=0)
            new = self.a + inter < threshold
            if bool(torch.equal(new, out)):
                break
            out = new
        return out

    def column(self, rows: slice, col: int) -> Tensor:
        """``G[rows, col]``: the model's interaction of candidates ``rows`` with candidate ``col``."""
        return self.d[:, col] @ self.dh[:, rows]
