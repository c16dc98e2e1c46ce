"""SPEC 8's ``relocate``: greedy, cost-lowering, function-preserving swaps of MLP neurons, heads and residual dims.

For a set of neurons that trade places (the residual stream, one MLP layer, one layer's heads), the
position-dependent part of the connection cost of neuron a placed at position p is, summed over the penalised
maps that touch the set (each map's other side is a different set, whose positions stay fixed),

    M[a, p] = sum_maps A / numel(W) * sum_o |W_a[o]| * |x_p - x_o|

(W_a: the weights of a, as receiver or sender; x_o the coordinates on the map's other side). Swapping the
neurons at positions x and y changes the cost by exactly M[x, y] + M[y, x] - M[x, x] - M[y, y], so one matrix
scores every candidate at once and ``hooked_bimt.swaps.greedy_order`` (the MNIST rule: the top-k neurons by
importance, followed as they move, each to its best position if that lowers the cost beyond rounding) decides.
For heads, the block of d_head dimensions moves together: M_head[h, g] = sum_t M_dim[h*d_head + t, g*d_head + t].

Importance (SPEC 8): |incoming| + |outgoing| weight summed over the maps (residual: every map reading or writing
the stream); a head's is the mean over its dimensions of the sum over q, k, v and the output map.
Order: blocks from the last to the first (per block its MLP neurons, then its heads), then the residual stream,
as the original visits its layers from the output back.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.swaps import greedy_order
from hooked_bimt.transformer.cost import check_cost_args
from hooked_bimt.transformer.geometry import PenalisedMap, dims, penalised_maps
from hooked_bimt.transformer.llama import is_llama
from hooked_bimt.transformer.swaps import swap_heads, swap_mlp_neurons, swap_residual


def _side(m: PenalisedMap, as_receiver: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(|W| as (neurons of the set x other side), the set's coordinates, the other side's coordinates)."""
    w = m.out_in().detach().abs()
    return (w, m.x_out, m.x_in) if as_receiver else (w.T, m.x_in, m.x_out)


def position_costs(sides: list[tuple[PenalisedMap, bool, slice]], factor: float) -> Float[Tensor, "n n"]:
    """M[a, p] over ``sides`` ((map, set is its receiver, which of the map's receivers/senders are the set))."""
    m_total = None
    for m, as_receiver, rows in sides:
        w, here, other = _side(m, as_receiver)
        w, here = w[rows], here[rows]
        c = factor / m.weight.numel()
        dist = (here[:, None] - other[None, :]).abs().T.to(w.dtype)  # (other x positions)
        part = c * (w @ dist)
        m_total = part if m_total is None else m_total + part
    return m_total


def importance_of(sides: list[tuple[PenalisedMap, bool, slice]]) -> Float[Tensor, " n"]:
    """Sum of |weights| in and out of each neuron of the set."""
    return sum(_side(m, r)[0][rows].sum(1) for m, r, rows in sides)


def _block_sides(maps: dict[str, PenalisedMap], l: int, d: dict[str, int]) -> tuple[list, list]:
    """(MLP-neuron sides, head-dimension sides) of block ``l``; q/k/v folds as three row slices."""
    mlp = [(maps[f"blocks.{l}.mlp.in"], True, slice(None)), (maps[f"blocks.{l}.mlp.out"], False, slice(None))]
    n = d["d_model"]
    qkv = maps[f"blocks.{l}.attn.qkv"]
    heads = [(qkv, True, slice(f * n, (f + 1) * n)) for f in range(3)] + [(maps[f"blocks.{l}.attn.out"], False, slice(None))]
    return mlp, heads


def _residual_sides(maps: dict[str, PenalisedMap]) -> list:
    out = []
    for name, m in maps.items():
        if name.endswith("qkv") or name.endswith("mlp.in") or name == "unembed":
            out.append((m, False, slice(None)))  # reads the stream: the residual is its sender
        else:
            out.append((m, True, slice(None)))  # embed, attention out, MLP out write it
    return out


def _head_matrix(m_dim: Tensor, n_head: int) -> Tensor:
    """M_head[h, g] = sum_t M_dim[h*d_head + t, g*d_head + t]."""
    dh = m_dim.shape[0] // n_head
    return torch.einsum("htgt->hg", m_dim.reshape(n_head, dh, n_head, dh)).clone()


def check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")


def relocate(module: Any, top_k: int = 30, distance_factor: float = 2.0, y_star: float = 0.5,
             optimizer: Optional[torch.optim.Optimizer] = None) -> int:
    """Move each of the ``top_k`` most important MLP neurons, heads and residual dimensions to the position that
    minimises SPEC 8's connection cost (with A = ``distance_factor``), greedily; returns the number of swaps.

    The function computed is unchanged and the cost never increases. ``y_star`` shifts every candidate equally
    (it is checked, never changes a choice). ``optimizer``: its per-parameter state moves with the weights."""
    check_top_k(top_k)
    check_cost_args(distance_factor, y_star)
    if is_llama(module):
        raise NotImplementedError("relocate is GPT-2 only for now; a Llama module has SPEC 8's cost and swaps "
                                  "(connection_cost, swap_residual, swap_mlp_neurons, swap_heads, swap_kv_groups)")
    d = dims(module)
    if float(distance_factor) == 0:
        return 0  # every position costs the same: nothing to gain
    n_swaps = 0
    with torch.no_grad():
        for l in reversed(range(d["n_layer"])):
            maps = {m.name: m for m in penalised_maps(module)}
            mlp_sides, head_sides = _block_sides(maps, l, d)
            m = position_costs(mlp_sides, distance_factor)
            for x, y in greedy_order(m, importance_of(mlp_sides), top_k):
                swap_mlp_neurons(module, l, x, y, optimizer)
                n_swaps += 1
            m_dim = position_costs(head_sides, distance_factor)
            score = importance_of(head_sides).reshape(d["n_head"], d["d_head"]).mean(1)
            for h, g in greedy_order(_head_matrix(m_dim, d["n_head"]), score, top_k):
                swap_heads(module, l, h, g, optimizer)
                n_swaps += 1
        sides = _residual_sides({m.name: m for m in penalised_maps(module)})
        for x, y in greedy_order(position_costs(sides, distance_factor), importance_of(sides), top_k):
            swap_residual(module, x, y, optimizer)
            n_swaps += 1
    return n_swaps
