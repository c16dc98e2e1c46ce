"""A layer read at the metric positions only, its changed keys and values taken through the queries (the fast
attention engine's last layer, ``circuits.acdc.attention.scorer``).

Where every changed head of a layer is needed at the metric positions ``P`` only, a state still changes its keys
and values at every position. With LayerNorm folded (``circuits.acdc.attention.fold``: a changed key is
``k[t] = (R[t] + t~[t] W^) / s[t] + c``, ``R = b~ W^``, ``t~`` the centred change, ``s`` the new norm's scale),
nothing needs projecting at every position:

    q . k[t]       = (q . R[t] + t[t] . (W^ q) - mean(t[t]) (1^T W^ q)) / s[t] + c . q
    sum_t pi_t v[t] = sum_t rho_t R[t] + (sum_t rho_t t[t]) W^ - (sum_t rho_t mean(t[t])) 1^T W^ + c,   rho = pi / s

(``sum_t pi_t = 1``): per head, products of width ``|P|`` over the positions instead of ``d_head`` per position
(``W^ q`` and ``sum_t rho_t t[t]`` are ``d``-vectors at the ``|P|`` queries). The same maths as projecting then
attending, in another order of additions. Rotary-free layers of one key/value head per query head, softmax in
the model's dtype (GPT-2's family); ``Scorer`` checks that before taking this path.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.acdc.attention import fold


class Changed(NamedTuple):
    """One role's (k or v) changed heads: their index among the attending heads, the changes ``t`` pattern-first
    ``(U, n, B, T, d)`` and each head's pattern, ``fold.plan`` of their ``W^``, their fold cache at every position
    (``c (B, T, k, d)``, ``var (B, T, k)``, ``R (B, T, k, dh)``), constant ``c`` of ``fold`` (``bias (k, dh)``) and
    the norm's ``eps``."""

    where: Tensor
    t: Tensor
    inverse: Tensor
    plan: fold.Plan
    c: Tensor
    var: Tensor
    R: Tensor
    bias: Tensor
    eps: float


def _scale(ch: Changed) -> tuple[Tensor, Tensor]:
    """``1 / s`` and ``mean(t)`` of each changed head at every position, ``(n, B, k, 1, T)``."""
    mean_t, var_t = fold._moments(ch.t)  # (U, n, B, T)
    dots = fold._dots(ch.t, ch.c, ch.inverse, ch.plan)  # (n, B, T, k)
    per_head = lambda x: x[ch.inverse].permute(1, 2, 0, 3).unsqueeze(3)  # noqa: E731  (U, n, B, T) -> (n, B, k, 1, T)
    rs = fold._rscale(dots, ch.var, var_t[ch.inverse].permute(1, 2, 3, 0), ch.eps, ch.t.shape[-1])
    return rs.permute(0, 1, 3, 2).unsqueeze(3), per_head(mean_t)


def _against(ch: Changed, y: Tensor, transpose: bool) -> Tensor:
    """Per changed head ``h``, ``y_h (n, B, X, d)`` against its change ``t_u (n, B, T, d)``: ``y_h t_u^T (n, B, X, T)``,
    or with ``transpose`` (``y_h (n, B, X, T)``) ``y_h t_u (n, B, X, d)``; stacked ``(n, B, k, X, ·)``."""
    n, B = ch.t.shape[1:3]
    out = []
    for h, u in enumerate(ch.plan.reads):
        tu = ch.t[u].reshape(n * B, *ch.t.shape[3:])
        yh = y[:, :, h].expand(n, *y.shape[1:2], *y.shape[3:]).reshape(n * B, *y.shape[3:])
        out.append(torch.bmm(yh, tu if transpose else tu.transpose(1, 2)))
    return torch.stack(out, 1).view(n, B, len(out), *out[0].shape[1:])


def scores(q: Float[Tensor, "n batch qpos k dh"], ch: Changed) -> Float[Tensor, "n batch k qpos pos"]:
    """``q . k[t]`` of the changed heads (module docstring), ``q`` their queries (``n`` states or 1)."""
    w_hat = ch.plan.w_hat  # (k, d, dh)
    kappa = torch.einsum("nbphe,hde->nbhpd", q, w_hat)
    qR = torch.einsum("nbphe,bthe->nbhpt", q, ch.R)
    qc = torch.einsum("nbphe,he->nbhp", q, ch.plan.colsum).unsqueeze(-1)
    qb = torch.einsum("nbphe,he->nbhp", q, ch.bias).unsqueeze(-1)
    rs, mean_t = _scale(ch)
    moved = _against(ch, kappa, transpose=False)  # (n, B, k, P, T)
    return moved.add_(qR).sub_(mean_t * qc).mul_(rs).add_(qb)


def mix(pi: Float[Tensor, "n batch k qpos pos"], ch: Changed) -> Float[Tensor, "n batch qpos k dh"]:
    """``sum_t pi_t v[t]`` of the changed heads (module docstring), ``pi`` their attention patterns."""
    rs, mean_t = _scale(ch)
    rho = pi * rs
    out = torch.einsum("nbhpt,bthe->nbphe", rho, ch.R)
    omega = _against(ch, rho, transpose=True)  # (n, B, k, P, d)
    out += torch.einsum("nbhpd,hde->nbphe", omega, ch.plan.w_hat)
    out -= torch.einsum("nbhp,he->nbphe", (rho * mean_t).sum(-1), ch.plan.colsum)
    return out.add_(ch.bias)


def attend(q: Float[Tensor, "n batch qpos h dh"], k: Float[Tensor, "batch pos h dh"], v: Float[Tensor, "batch pos h dh"],
           kc: Optional[Changed], vc: Optional[Changed], qpos: Tensor, scale: float, n: int) -> Tensor:
    """Causal attention of queries at ``qpos`` of ``n`` states over every key: the cached keys and values ``k``,
    ``v`` for heads not in ``kc`` / ``vc``, the changed ones through the queries; ``(n, B, |qpos|, h, dh)``."""
    s = torch.einsum("nbqhe,bkhe->nbhqk", q, k).expand(n, -1, -1, -1, -1).clone()
    if kc is not None:
        s[:, :, kc.where] = scores(q[:, :, :, kc.where], kc)
    allowed = torch.arange(k.shape[1], device=q.device).unsqueeze(0) <= qpos.unsqueeze(1)
    pi = torch.softmax(s.mul_(scale).masked_fill_(~allowed, float("-inf")), dim=-1)
    z = torch.einsum("nbhqk,bkhe->nbqhe", pi, v)
    if vc is not None:
        z[:, :, :, vc.where] = mix(pi[:, :, vc.where], vc)
    return z
