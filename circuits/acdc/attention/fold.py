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

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from circuits.acdc.attention.gather import run


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
    centred, var = _centred(x)
    return {"c": centred, "var": var, "R": torch.einsum("bthd,hde->bthe", centred, w_hat)}


def _centred(x: Tensor) -> tuple[Tensor, Tensor]:
    """``b~`` and the biased ``var`` over the last axis."""
    centred = x - x.mean(-1, keepdim=True)
    return centred, centred.pow(2).mean(-1)


def _moments(t: Tensor) -> tuple[Tensor, Tensor]:
    """``mean(t)`` and ``var(t) = |t|^2 / d - mean(t)^2`` over the last axis (fast reductions, no temporary)."""
    mean_t = t.mean(-1)
    return mean_t, torch.linalg.vector_norm(t, dim=-1).square_().div_(t.shape[-1]).sub_(mean_t.square())


def _normalised(moved: Tensor, mean_t: Tensor, var_t: Tensor, dots: Tensor, var: Tensor, R: Tensor, colsum: Tensor,
                bias: Tensor, eps: float, d: int) -> Tensor:
    """``(b~ W^ + t W^ - mean(t) 1^T W^) / s + c`` (module docstring) from its pieces, in place in ``moved``."""
    scale = torch.rsqrt(dots.mul_(2.0 / d).add_(var).add_(var_t).add_(eps)).unsqueeze(-1)
    return moved.addcmul_(mean_t.unsqueeze(-1), colsum, value=-1.0).add_(R).mul_(scale).add_(bias)


class Plan(NamedTuple):
    """How ``project`` multiplies: per pattern read, its index, the heads reading it (``gather.run``: a slice when they
    are a run) and their ``W^`` as one ``(|sel| dh, d)`` matrix (``F.linear``'s faster layout); every head's ``W^``
    summed over ``d``; all ``W^``; the pattern each head reads (``inverse`` as ints)."""

    groups: list[tuple[int, Any, Tensor]]
    colsum: Tensor
    w_hat: Tensor
    reads: list[int]


def plan(w_hat: Float[Tensor, "k d dh"], inverse: Tensor, u: int) -> Plan:
    """``project``'s ``Plan`` for ``k`` heads reading ``u`` patterns (head ``h`` reads pattern ``inverse[h]``)."""
    k, d, dh = w_hat.shape
    groups: list[tuple[int, Any, Tensor]] = []
    for p in range(u):
        sel = torch.nonzero(inverse == p).flatten()
        if sel.numel():
            groups.append((p, run(sel), w_hat[sel].transpose(1, 2).reshape(sel.numel() * dh, d).contiguous()))
    return Plan(groups, w_hat.sum(1), w_hat, inverse.tolist())


def _dots(t: Float[Tensor, "u n batch pos d"], c: Float[Tensor, "batch pos k d"], inverse: Tensor,
          how: Plan) -> Float[Tensor, "n batch pos k"]:
    """``<b~_h, t_{inverse[h]}>`` per state and head: with few patterns, every pattern against every head in one
    batched product over the positions, each head's taken; with patterns for half the heads or more, one dot
    product per head (cheaper there on the 2-core VM: ``u`` of 6 over 8 heads, 4 states: 1.2 against 2.0 ms)."""
    u, n, B, T, d = t.shape
    k = c.shape[2]
    if u == 1:
        return torch.einsum("nbtd,btkd->nbtk", t[0], c)
    if 2 * u >= k:
        out = t.new_empty(n, B, T, k)
        for h, p in enumerate(how.reads):
            out[..., h] = torch.linalg.vecdot(t[p], c[:, :, h])
        return out
    every = torch.bmm(t.permute(2, 3, 0, 1, 4).reshape(B * T, u * n, d), c.reshape(B * T, k, d).transpose(1, 2))
    every = every.view(B, T, u, n, k).permute(3, 0, 1, 2, 4)
    return every.gather(3, inverse.view(1, 1, 1, 1, k).expand(n, B, T, 1, k)).squeeze(3)


def project(c: Float[Tensor, "batch pos k d"], var: Float[Tensor, "batch pos k"], R: Float[Tensor, "batch pos k dh"],
            t: Float[Tensor, "u n batch pos d"], inverse: Tensor, how: Plan, bias: Float[Tensor, "k dh"],
            eps: float) -> Float[Tensor, "n batch pos k dh"]:
    """``proj_h`` of the module docstring for ``k`` heads, head ``h`` changed by ``t[inverse[h]]`` in each of ``n``
    states (``t`` pattern-first; cache entries ``c``, ``var``, ``R`` at the positions and heads wanted; ``how``:
    ``plan(W^ of the heads, inverse, u)``). ``t~ W^`` is computed as ``t W^ - mean(t) 1^T W^`` and ``var(t)`` from
    two reductions, so ``t~`` is never materialised."""
    k, d, dh = how.w_hat.shape
    u, n, B, T = t.shape[:4]
    mean_t, var_t = _moments(t)  # (u, n, B, T)
    dots = _dots(t, c, inverse, how)
    if u == 1:
        var_t, mean_t = var_t[0].unsqueeze(-1), mean_t[0].unsqueeze(-1)  # broadcast over the k heads
        moved = F.linear(t[0], how.groups[0][2]).view(n, B, T, k, dh)
    else:
        var_t, mean_t = var_t[inverse].permute(1, 2, 3, 0), mean_t[inverse].permute(1, 2, 3, 0)
        moved = t.new_empty(n, B, T, k, dh)
        for p, sel, w in how.groups:
            moved[:, :, :, sel] = F.linear(t[p], w).view(n, B, T, w.shape[0] // dh, dh)
    return _normalised(moved, mean_t, var_t, dots, var, R, how.colsum, bias, eps, d)


# ---------------------------------------------------------------------------- the MLP's input projection
# The same algebra for an MLP's first linear map ``LN(x) W_in + b_in`` (``W^ = diag(w) W_in``,
# ``c = beta W_in + b_in``).
# When only heads of the MLP's own layer changed (a state of a receiver in that layer), ``t = sum_h (z'_h - z_h)
# W_O[h]`` has rank ``d_head`` per head, so ``t W^ = sum_h z'_h (W_O[h] W^) - sum_h z_h W_O[h] W^``: a product of
# width ``d_head`` per head for the states, the cached part once per node (``Scorer``).


class MLPFold(NamedTuple):
    """``W^`` as ``(d_mlp, d)`` (``F.linear``'s layout), its sums over ``d``, the constant ``c``, ``W_O[h] W^`` per
    head as ``(H, d_mlp, d_head)``, and the norm's ``eps``."""

    w_hat: Tensor
    colsum: Tensor
    bias: Tensor
    per_head: Tensor
    eps: float


def mlp_usable(bb: Any, layer: int) -> bool:
    """Whether layer ``layer``'s MLP reads a LayerNorm with weights in the input's dtype through one (ungated) map."""
    w, _, _, rms, style = bb.layers[layer].norm2
    return not rms and not style and w is not None and bb.layers[layer].mlp.W_gate is None and not bb.parallel


def mlp_weights(bb: Any, layer: int) -> MLPFold:
    L = bb.layers[layer]
    w, beta, eps = L.norm2.weight, L.norm2.bias, L.norm2.eps
    w_in, b_in = L.mlp.W_in, L.mlp.b_in  # (d_mlp, d)
    w_hat = w_in * w.unsqueeze(0)
    bias = F.linear(beta if beta is not None else torch.zeros_like(w), w_in, b_in)
    per_head = torch.einsum("hed,md->hme", L.W_O, w_hat).contiguous()
    return MLPFold(w_hat, w_hat.sum(1), bias, per_head, eps)


def mlp_cache(x: Float[Tensor, "*b d"], weights: MLPFold) -> dict[str, Tensor]:
    """``b~``, ``var`` and ``R = b~ W^`` of cached MLP inputs ``x``."""
    centred, var = _centred(x)
    return {"c": centred, "var": var, "R": F.linear(centred, weights.w_hat)}


def mlp_pre(cache: tuple[Tensor, Tensor, Tensor], t: Float[Tensor, "n *b d"], moved: Float[Tensor, "n *b m"],
            weights: MLPFold) -> Float[Tensor, "n *b m"]:
    """``LN(b + t) W_in + b_in`` from the cache ``(b~, var, R)`` of ``b`` and ``moved = t W^``."""
    c, var, R = cache
    mean_t, var_t = _moments(t)
    return _normalised(moved, mean_t, var_t, (t * c).sum(-1), var, R, weights.colsum, weights.bias, weights.eps,
                       t.shape[-1])
