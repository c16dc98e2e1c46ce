"""The original BIMT notebook's relocate (KindXiaoming/BIMT, ``mnist_3.5``), re-derived from its
description in issue 14 and SPEC 2 (no code taken from the notebook, which has no licence).

For every layer whose neurons move (each hidden layer in turn, then the output ring):

1. list the top-k *positions* by importance (sum of |incoming| + |outgoing| weights of the neuron there;
   outputs: incoming only), highest first, ties in index order, before any of the layer's swaps;
2. visit the listed positions in that order: the neuron now at position x (one an earlier swap moved
   there included) tries a swap with every position y of its layer, itself included, and moves to an
   argmin over y of the full connection cost C(y), scored with A on *every* linear layer, the last
   included (so outputs swap on the ring and the last hidden layer is pulled toward them).

The notebook evaluates C(y) by brute force, a full cost of a swapped copy per candidate (kept outside the
library, in ``benchmarks/_brute_relocate.py``, for the claim-4 benchmark and as the check of this one). Here the
same decisions come from one matrix per layer: with M[a, p] the position-dependent cost of the neuron at
position a placed at position p (``swaps.hidden_position_costs``),

    C(y) - C(x) = delta(y) = M[x, y] + M[y, x] - M[x, x] - M[y, y],   delta(x) = 0.

Ties: candidates within rounding of the minimum, ``C(y) <= min C + tol``, tie, and the first in index
order wins (a brute-force loop with a first-occurrence argmin, in exact arithmetic). tol is
64 eps max|M| (64 eps max|C| in the brute force). Unlike ``swaps.relocate``, a swap needs no gain:
an equal-cost lower position takes the neuron. Layers whose cost has no distance term are skipped
(every position costs the same there; the notebook's choice would be rounding noise).

Optimizer moments (``moments``): "in_place" leaves them at their *position*, as the notebook does:
hidden moments stay at their index, and since our outputs keep their index (class) and swap ring
slots, an output swap exchanges the two classes' moment rows so that they stay with the slot.
"moved" carries them along with their neuron, like ``swaps.relocate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.cost import distance_factors
from hooked_bimt.swaps import _check_args, hidden_position_costs, importance, output_position_costs, swap_deltas

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from hooked_bimt.model import HookedMLP

Moments = Literal["in_place", "moved"]
MOMENTS = ("in_place", "moved")
Swap = tuple[int, int, int]  # (layer, position, position)


def listed_positions(score: Float[Tensor, " n"], top_k: int) -> list[int]:
    """The top-``top_k`` positions by ``score``, highest first, ties in index order."""
    return torch.argsort(score, descending=True, stable=True)[: min(top_k, score.shape[0])].tolist()


def first_min(cost: Float[Tensor, " n"], tol: float) -> int:
    """The first index whose cost is within ``tol`` of the minimum."""
    return int(torch.nonzero(cost <= cost.min() + tol)[0])


def _choice(m: Float[Tensor, "n n"], x: int, tol: float) -> int:
    """Where the neuron at position ``x`` goes: the first position within ``tol`` of the least C(y) - C(x)."""
    return first_min(swap_deltas(m, x), tol)


def swap_state_rows(optimizer: "Optimizer", params: Sequence[Tensor], c: int, d: int) -> None:
    """Exchange rows ``c`` and ``d`` of every optimizer state tensor shaped like ``params``."""
    idx = torch.tensor([c, d], device=params[0].device)
    rev = torch.tensor([d, c], device=params[0].device)
    for param in params:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, Tensor) and value.shape == param.shape:
                value.index_copy_(0, idx, value.index_select(0, rev))


def _hidden_layer(
    model: "HookedMLP", block: int, factors: list[float], top_k: int, optimizer: "Optimizer | None"
) -> list[Swap]:
    listed = listed_positions(importance(model, block + 1), top_k)
    m = hidden_position_costs(model, block, factors)
    tol = 64 * torch.finfo(model.dtype).eps * float(m.abs().max())
    swaps = []
    for x in listed:
        y = _choice(m, x, tol)
        if y != x:
            model.swap_neurons(block, x, y, optimizer=optimizer)
            m[[x, y]] = m[[y, x]]
            swaps.append((block + 1, x, y))
    return swaps


def _output_layer(
    model: "HookedMLP", factors: list[float], top_k: int, optimizer: "Optimizer | None", moments: str
) -> list[Swap]:
    """Positions are ring slots; ``at[s]`` is the class in slot s (``out_perm`` inverted)."""
    layer = model.n_layers
    at = torch.argsort(model.out_perm).tolist()
    listed = listed_positions(importance(model, layer)[at], top_k)
    m = output_position_costs(model, factors[-1])[at][:, at]  # m[s, t]: the class in slot s, at slot t
    tol = 64 * torch.finfo(m.dtype).eps * float(m.abs().max())
    last = model.linears[-1]
    params = [last.weight] + ([last.bias] if last.bias is not None else [])
    swaps = []
    for x in listed:
        y = _choice(m, x, tol)
        if y != x:
            model.swap_positions(layer, at[x], at[y])
            if optimizer is not None and moments == "in_place":
                swap_state_rows(optimizer, params, at[x], at[y])
            at[x], at[y] = at[y], at[x]
            m[[x, y]] = m[[y, x]]
            swaps.append((layer, x, y))
    return swaps


def original_swaps(
    model: "HookedMLP",
    top_k: int = 30,
    distance_factor: float | Sequence[float] = 2.0,
    y_star: float = 0.5,
    optimizer: "Optimizer | None" = None,
    moments: Moments = "in_place",
) -> list[Swap]:
    """Relocate as the original notebook does (module docstring) and return the swaps made, in order,
    as ``(layer, position, position)``: layer 1..L-1 a hidden layer (positions = indices), L the output
    ring (positions = slots). Arguments as ``relocate_original``."""
    _check_args(model, top_k, y_star)
    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {MOMENTS}, got {moments!r}")
    factors = distance_factors(model, distance_factor)
    hidden_opt = optimizer if moments == "moved" else None
    swaps: list[Swap] = []
    with torch.no_grad():
        for block in range(len(model.blocks)):
            if factors[block] != 0 or factors[block + 1] != 0:
                swaps += _hidden_layer(model, block, factors, top_k, hidden_opt)
        if factors[-1] != 0:
            swaps += _output_layer(model, factors, top_k, optimizer, moments)
    return swaps


def relocate_original(
    model: "HookedMLP",
    top_k: int = 30,
    distance_factor: float | Sequence[float] = 2.0,
    y_star: float = 0.5,
    optimizer: "Optimizer | None" = None,
    moments: Moments = "in_place",
) -> int:
    """The original BIMT notebook's relocate (module docstring); the function computed is unchanged.

    Args:
        model: a ``HookedMLP`` (the ``*_original`` regimes build it with the original's ring phase).
        top_k: positions listed per layer.
        distance_factor: A, a number or one per linear layer; the notebook scores with A on every layer.
        y_star: layer spacing (a constant shift of every candidate's cost: checked, it changes no decision).
        optimizer: its per-parameter state (AdamW moments), handled as ``moments`` says.
        moments: "in_place" (the notebook) or "moved" (with the neuron, as ``swaps.relocate``).

    Returns:
        The number of swaps made (a neuron that stays put is not a swap).
    """
    return len(original_swaps(model, top_k, distance_factor, y_star, optimizer, moments))
