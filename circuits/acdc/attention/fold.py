"""LayerNorm folded into the q/k/v projections of receiver heads whose inputs change by the same amount (the fast
attention engine's per-head inputs, ``circuits.acdc.attention.delta``).

In a candidate state, receiver head ``h``'s input is its cached input plus a change shared by every head with
the same present edges from the changed senders: ``x_h = b_h + t``. With LayerNorm ``(w, beta, eps)`` and the
head's weights ``W_h, bias_h`` (``~`` centres over the ``d`` features, ``<.,.>`` sums over them):

    proj_h = LN(x_h) W_h + bias_h = (b~_h W^_h + t~ W^_h) / s_h + c_h,     W^_h = diag(w) W_h,  c_h = beta W_h + bias_h
    s_h^2  = var(b_h) + 2 <b~_h, t> / d + <t~, t~> / d + eps                (<b~_h, t~> = <b~_h, t> as sum b~_h = 0)

so a state costs one matmul ``t~ W^`` for all the heads sharing ``t`` and one dot product per head, instead of a
LayerNorm of every head's input; the cache holds ``b~_h``, ``var(b_h)`` and ``b~_h W^_h`` per receiver node.
The same algebra as LayerNorm then projection (only the order of floating-point operations differs). RMSNorm
models (Llama: its norm runs in float32 even on float64 inputs) keep the direct path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def usable(bb: Any, layer: int) -> bool:
    """Whether layer ``layer``'s attention norm is a LayerNorm with weights computed in the input's dtype."""
    w, _, _, rms, style = bb.layers[layer].norm1
    return not rms and not style and w is not None


def weights(bb: Any, layer: int, role: str) -> tuple[Tensor, Tensor]:
    """``(W^ (n, d, dh), c (n, dh))`` of the module docstring for role q/k/v (``n``: heads or KV groups)."""
    L = bb.layers[layer]
    W, b = {"q": (L.W_Q, L.b_Q), "k": (L.W_K, L.b_K), "v": (L.W_V, L.b_V)}[role]
    w, beta = L.norm1.weight, L.norm1.bias
    w_hat = w.view(1, -1, 1) * W
    c = torch.zeros(W.shape[0], W.shape[2], dtype=W.dtype, device=W.device)
    if beta is not None:
        c = c + torch.einsum("d,hde->he", beta, W)
    return w_hat, c if b is None else c + b


def cache(x: Float[Tensor, "batch pos n d"], w_hat: Float[Tensor, "n d dh"]) -> dict[str, Tensor]:
    """``b~`` (centred inputs), ``var`` (biased, over ``d``) and ``R = b~ W^`` of cached inputs ``x``."""
    centred = x - x.mean(-1, keepdim=True)
    return {"c": centred, "var": centred.pow(2).mean(-1), "R": torch.einsum("bthd,hde->bthe", centred, w_hat)}


def project(c: Float[Tensor, "batch pos k d"], var: Float[Tensor, "batch pos k"], R: Float[Tensor, "batch pos k dh"],
            t: Float[Tensor, "n batch pos u d"], inverse: Tensor, w_hat: Float[Tensor, "k d dh"],
            bias: Float[Tensor, "k dh"], eps: float) -> Float[Tensor, "n batch pos k dh"]:
    """``proj_h`` of the module docstring for ``k`` heads, head ``h`` changed by ``t[..., inverse[h], :]`` in each
    of ``n`` states (cache entries ``c``, ``var``, ``R`` at the positions and heads wanted). ``t~ W^`` is computed
    as ``t W^ - mean(t) 1^T W^`` and ``var(t)`` from two reductions, so ``t~`` is never materialised."""
    k, d, dh = w_hat.shape
    mean_t = t.mean(-1)  # (n, B, T, u); var(t) = |t|^2 / d - mean(t)^2 (fast reductions, no temporary)
    var_t = torch.linalg.vector_norm(t, dim=-1).square_().div_(d).sub_(mean_t.square())
    if t.shape[-2] == 1:
        dots = torch.einsum("nbtd,btkd->nbtk", t[..., 0, :], c)
        var_t, mean_t = var_t[..., :1], mean_t[..., :1]  # broadcast over the k heads
        moved = F.linear(t[..., 0, :], w_hat.transpose(1, 2).reshape(k * dh, d)).view(*t.shape[:3], k, dh)
    else:
        dots = torch.einsum("nbtud,btkd->nbtuk", t, c)  # every pattern against every head: cheap next to a projection
        dots = dots.gather(3, inverse.view(1, 1, 1, 1, k).expand(*dots.shape[:3], 1, k)).squeeze(3)
        var_t, mean_t = var_t[..., inverse], mean_t[..., inverse]
        moved = t.new_empty(*t.shape[:3], k, dh)
        for u in range(t.shape[-2]):
            sel = torch.nonzero(inverse == u).flatten()
            w = w_hat[sel].transpose(1, 2).reshape(sel.numel() * dh, d)  # (out, in): F.linear's faster layout
            moved[:, :, :, sel] = F.linear(t[..., u, :], w).view(*t.shape[:3], sel.numel(), dh)
    scale = torch.rsqrt(dots.mul_(2.0 / d).add_(var).add_(var_t).add_(eps)).unsqueeze(-1)
    moved.addcmul_(mean_t.unsqueeze(-1), w_hat.sum(1), value=-1.0).add_(R).mul_(scale)
    return moved.add_(bias)
