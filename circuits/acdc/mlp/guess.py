"""First guesses of the fast MLP engine's decisions (``circuits.acdc.mlp.engine``): a per-example model of the KL.

Guesses only decide which candidate states are scored together; every decision is verified on scored states,
so a wrong guess costs time, never a different circuit.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from circuits.acdc.mlp.state import State


class Polynomial:
    """A per-example polynomial model of the KL in the receiver input ``z_j``, over the range the chain can reach.

    The KL is a mean of per-example terms ``F_b`` and ``z_j[b]`` moves only example b's, so the sequential loop's
    effect of candidate i, with ``C_b`` example b's input when it is tested, is ``mean_b F_b(C_b + d_bi) - F_b(C_b)``.
    Each ``F_b`` is replaced by its interpolant of degree ``deg`` through ``deg + 1`` equispaced points spanning
    every input the loop can visit if it removes edges (``z0`` plus any prefix sum of the changes, widened by the
    largest single change): one scoring pass of ``deg + 1`` states per receiver. Built once per receiver, it
    stays accurate as removals move ``z_j`` (a quadratic model at ``z0`` mispredicts ~10x more often). The guesses
    are the model's own sequential loop (``loop``), compiled: cheap next to the scoring it steers.
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
        # the sequential loop's inputs as contiguous float64 arrays on the CPU (``loop``); dT: (n, b)
        self._np = (self.coef.T.contiguous().cpu().numpy(), self.origin.cpu().numpy(), self.scale.cpu().numpy(),
                    d.T.to(torch.float64).contiguous().cpu().numpy())

    def loop(self, threshold: float, start: int, end: int, z: Tensor) -> Tensor:
        """The model's own sequential loop over candidates ``start..end`` from the accepted input ``z`` (b,): each
        candidate's model effect at the model's state when it is tested, removed iff below ``threshold``; the
        model's exact decisions, one compiled pass (``_model_loop``)."""
        coef, origin, scale, dT = self._np
        out = np.empty(end - start, dtype=np.bool_)
        _model_loop(coef, origin, scale, dT[start:end], z.to(torch.float64).cpu().numpy(), float(threshold), out)
        return torch.from_numpy(out).to(z.device)

    def _value(self, z: Tensor) -> Tensor:
        u = (z - self.origin) * self.scale
        out = self.coef[-1].expand_as(u)
        for c in range(self.coef.shape[0] - 2, -1, -1):
            out = torch.addcmul(self.coef[c], out, u)
        return out


@numba.njit(cache=True, nogil=True)
def _model_loop(coef, origin, scale, dT, z, threshold, out):  # pragma: no cover - compiled (tested through ``loop``)
    """``Polynomial.loop``'s sequential loop: ``coef`` (b, deg + 1), ``dT`` (n, b), ``z`` (b,); writes ``out`` (n,)."""
    n, b = dT.shape
    top = coef.shape[1] - 1
    c = z.copy()
    cur = np.empty(b)  # the model at each example's current input
    new = np.empty(b)
    for e in range(b):
        u = (c[e] - origin[e]) * scale[e]
        v = coef[e, top]
        for p in range(top - 1, -1, -1):
            v = v * u + coef[e, p]
        cur[e] = v
    for i in range(n):
        total = 0.0
        for e in range(b):
            d = dT[i, e]
            if d != 0.0:
                u = (c[e] + d - origin[e]) * scale[e]
                v = coef[e, top]
                for p in range(top - 1, -1, -1):
                    v = v * u + coef[e, p]
                new[e] = v
                total += v - cur[e]
        removed = total / b < threshold
        out[i] = removed
        if removed:
            for e in range(b):
                d = dT[i, e]
                if d != 0.0:
                    c[e] += d
                    cur[e] = new[e]
