"""SPEC 8's ``relocate``: greedy, cost-lowering, function-preserving swaps of MLP neurons, heads and residual dims.

For a set of neurons that trade places (the residual stream, one MLP layer, one layer's heads), the
position-dependent part of the connection cost of neuron a placed at position p is, summed over the penalised
maps that touch the set (each map's other side is a different set, whose positions stay fixed),

    M[a, p] = sum_maps A / numel(W) * sum_o |W_a[o]| * |x_p - x_o|

(W_a: the weights of a, as receiver or sender; x_o the coordinates on the map's other side). Swapping the
neurons at positions x and y changes the cost by exactly M[x, y] + M[y, x] - M[x, x] - M[y, y], so one matrix
scores every candidate at once and ``hooked_bimt.swaps.greedy_order`` (the MNIST rule: the top-k neurons by
importance, followed as they move, each to its best position if that lowers the cost beyond rounding) decides.
For units made of blocks of dimensions (heads, key/value groups), the block moves together:
M_block[h, g] = sum_t M_dim[h*size + t, g*size + t].

Importance (SPEC 8): |incoming| + |outgoing| weight summed over the maps (residual: every map reading or writing
the stream); a head's is the mean over its dimensions of the sum over q, k, v and the output map.

Each architecture lists its sets as ``SwapSet``s (how to score them, how to swap two of their units) in the order
they are visited; the loop is the same for all. GPT-2: blocks from the last to the first (per block its MLP
neurons, then its heads), then the residual stream, as the original visits its layers from the output back.
Llama (``llama``): per block, last to first, its MLP neurons (gate and up rows, down columns), its key/value groups
(each group's k/v rows and its query heads' q rows and o columns: M_group = M_kv-block + M_q-block, importance the
mean over the group's k/v dimensions plus the mean over its query dimensions), then the query heads within each
group (q rows and o columns, as GPT-2's heads); then the residual stream.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.swaps import greedy_order
from hooked_bimt.transformer.cost import check_cost_args
from hooked_bimt.transformer.geometry import PenalisedMap, dims, penalised_maps
from hooked_bimt.transformer.llama import is_llama
from hooked_bimt.transformer.swaps import swap_heads, swap_kv_groups, swap_mlp_neurons, swap_residual

ALL = slice(None)
READS_STREAM = ("attn.qkv", "attn.q", "attn.k", "attn.v", "mlp.in", "mlp.gate", "mlp.up")  # + the unembedding
Sides = list[tuple[PenalisedMap, bool, slice]]  # (map, the set is its receiver, the set's rows of it)


def _side(m: PenalisedMap, as_receiver: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(|W| as (neurons of the set x other side), the set's coordinates, the other side's coordinates)."""
    w = m.out_in().detach().abs()
    return (w, m.x_out, m.x_in) if as_receiver else (w.T, m.x_in, m.x_out)


def position_costs(sides: Sides, factor: float) -> Float[Tensor, "n n"]:
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


def importance_of(sides: Sides) -> Float[Tensor, " n"]:
    """Sum of |weights| in and out of each neuron of the set."""
    return sum(_side(m, r)[0][rows].sum(1) for m, r, rows in sides)


@dataclass(frozen=True)
class SwapSet:
    """One set of units that trade places: ``score()`` is (M, importance) for the weights as they are when the set
    is visited; ``swap(x, y)`` exchanges the units at positions x and y (function-preserving)."""

    score: Callable[[], tuple[Tensor, Tensor]]
    swap: Callable[[int, int], None]


def _block_sides(maps: dict[str, PenalisedMap], l: int, d: dict[str, int]) -> tuple[Sides, Sides]:
    """GPT-2: (MLP-neuron sides, head-dimension sides) of block ``l``; q/k/v folds as three row slices."""
    mlp = [(maps[f"blocks.{l}.mlp.in"], True, ALL), (maps[f"blocks.{l}.mlp.out"], False, ALL)]
    n = d["d_model"]
    qkv = maps[f"blocks.{l}.attn.qkv"]
    heads = [(qkv, True, slice(f * n, (f + 1) * n)) for f in range(3)] + [(maps[f"blocks.{l}.attn.out"], False, ALL)]
    return mlp, heads


def _residual_sides(maps: dict[str, PenalisedMap]) -> Sides:
    """Every map: the residual is the sender of a map that reads the stream, the receiver of one that writes it."""
    return [(m, not (name == "unembed" or name.split(".", 2)[-1] in READS_STREAM), ALL) for name, m in maps.items()]


def _head_matrix(m_dim: Tensor, n_head: int) -> Tensor:
    """M_block[h, g] = sum_t M_dim[h*size + t, g*size + t] for ``n_head`` blocks of equal size."""
    dh = m_dim.shape[0] // n_head
    return torch.einsum("htgt->hg", m_dim.reshape(n_head, dh, n_head, dh)).clone()


def _unit_scores(sides: Sides, factor: float) -> tuple[Tensor, Tensor]:
    return position_costs(sides, factor), importance_of(sides)


def _block_scores(sides: Sides, factor: float, n_blocks: int) -> tuple[Tensor, Tensor]:
    """Blocks of dimensions moving together: M_block, and each block's mean importance over its dimensions."""
    m = _head_matrix(position_costs(sides, factor), n_blocks)
    return m, importance_of(sides).reshape(n_blocks, -1).mean(1)


def _group_scores(kv: Sides, q: Sides, factor: float, n_kv: int) -> tuple[Tensor, Tensor]:
    """Key/value groups: their k/v blocks and their query heads' blocks move together (module docstring)."""
    (m_kv, s_kv), (m_q, s_q) = _block_scores(kv, factor, n_kv), _block_scores(q, factor, n_kv)
    return m_kv + m_q, s_kv + s_q


def _gpt2_sets(module: Any, d: dict[str, int], factor: float, opt: Any) -> Iterator[SwapSet]:
    maps = {m.name: m for m in penalised_maps(module)}  # the parameters themselves: swaps act in place
    for l in reversed(range(d["n_layer"])):
        mlp, heads = _block_sides(maps, l, d)
        yield SwapSet(partial(_unit_scores, mlp, factor), partial(swap_mlp_neurons, module, l, optimizer=opt))
        yield SwapSet(partial(_block_scores, heads, factor, d["n_head"]), partial(swap_heads, module, l, optimizer=opt))
    yield SwapSet(partial(_unit_scores, _residual_sides(maps), factor), partial(swap_residual, module, optimizer=opt))


def _swap_in_group(module: Any, layer: int, first: int, opt: Any, x: int, y: int) -> None:
    swap_heads(module, layer, first + x, first + y, optimizer=opt)


def _llama_sets(module: Any, d: dict[str, int], factor: float, opt: Any) -> Iterator[SwapSet]:
    maps = {m.name: m for m in penalised_maps(module)}
    per, dh = d["n_head"] // d["n_kv"], d["d_head"]
    for l in reversed(range(d["n_layer"])):
        b = {k.split(".", 2)[-1]: m for k, m in maps.items() if k.startswith(f"blocks.{l}.")}
        mlp = [(b["mlp.gate"], True, ALL), (b["mlp.up"], True, ALL), (b["mlp.down"], False, ALL)]
        yield SwapSet(partial(_unit_scores, mlp, factor), partial(swap_mlp_neurons, module, l, optimizer=opt))
        kv = [(b["attn.k"], True, ALL), (b["attn.v"], True, ALL)]
        q = [(b["attn.q"], True, ALL), (b["attn.out"], False, ALL)]
        yield SwapSet(partial(_group_scores, kv, q, factor, d["n_kv"]),
                      partial(swap_kv_groups, module, l, optimizer=opt))
        for g in range(d["n_kv"] if per > 1 else 0):
            rows = slice(g * per * dh, (g + 1) * per * dh)
            sides = [(b["attn.q"], True, rows), (b["attn.out"], False, rows)]
            yield SwapSet(partial(_block_scores, sides, factor, per), partial(_swap_in_group, module, l, g * per, opt))
    yield SwapSet(partial(_unit_scores, _residual_sides(maps), factor), partial(swap_residual, module, optimizer=opt))


def check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")


def relocate(module: Any, top_k: int = 30, distance_factor: float = 2.0, y_star: float = 0.5,
             optimizer: Optional[torch.optim.Optimizer] = None) -> int:
    """Move each of the ``top_k`` most important units of every set (MLP neurons, heads, key/value groups under
    Llama's GQA, residual dimensions) to the position that minimises SPEC 8's connection cost (with A =
    ``distance_factor``), greedily; returns the number of swaps. Takes a ``GPT2LMHeadModel`` or a
    ``LlamaForCausalLM``.

    The function computed is unchanged and the cost never increases. ``y_star`` shifts every candidate equally
    (it is checked, never changes a choice). ``optimizer``: its per-parameter state moves with the weights."""
    check_top_k(top_k)
    check_cost_args(distance_factor, y_star)
    d = dims(module)
    if float(distance_factor) == 0:
        return 0  # every position costs the same: nothing to gain
    sets = (_llama_sets if is_llama(module) else _gpt2_sets)(module, d, float(distance_factor), optimizer)
    n_swaps = 0
    with torch.no_grad():
        for unit_set in sets:
            m, importance = unit_set.score()
            for x, y in greedy_order(m, importance, top_k):
                unit_set.swap(x, y)
                n_swaps += 1
    return n_swaps
