"""The original BIMT notebook's relocate with its brute-force search: each candidate position y of the neuron at x
is scored by the full connection cost of a deep-copied model with that swap made (the notebook's way; ~27.6 s
per call on MNIST in the notebook).

Benchmark-only, kept out of the library: ``bench_memory_original.py`` meters it (claim 4: the brute force, not
swapping as such, costs the memory), and ``tests/hooked_bimt/test_swaps_original.py`` checks that the library's
fast search (``hooked_bimt.swaps_original``) makes the same decisions. The visiting order, the ties (the first
position within 64 eps max|C| of the minimum) and the optimizer moments are the library's, as its docstring says.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch.optim import Optimizer

from hooked_bimt.cost import connection_cost, distance_factors
from hooked_bimt.model import HookedMLP
from hooked_bimt.swaps import importance
from hooked_bimt.swaps_original import MOMENTS, Swap, first_min, listed_positions, swap_state_rows
from hooked_bimt.training import Training


def _brute_choice(model: HookedMLP, swap: Callable[[HookedMLP, int], None], n: int, factors: list[float],
                  y_star: float) -> int:
    """Full cost of a swapped model copy for every candidate (``swap(copy, y)`` makes the swap)."""
    costs = []
    for y in range(n):
        trial = copy.deepcopy(model)
        swap(trial, y)
        costs.append(connection_cost(trial, factors, y_star))
        del trial
    cost = torch.stack(costs)
    return first_min(cost, 64 * torch.finfo(cost.dtype).eps * float(cost.abs().max()))


def _hidden_layer(model: HookedMLP, block: int, factors: list[float], top_k: int, optimizer: Optimizer | None,
                  y_star: float) -> list[Swap]:
    swaps = []
    for x in listed_positions(importance(model, block + 1), top_k):
        y = _brute_choice(model, lambda trial, y: trial.swap_neurons(block, x, y), model.widths[block + 1], factors,
                          y_star)
        if y != x:
            model.swap_neurons(block, x, y, optimizer=optimizer)
            swaps.append((block + 1, x, y))
    return swaps


def _output_layer(model: HookedMLP, factors: list[float], top_k: int, optimizer: Optimizer | None, moments: str,
                  y_star: float) -> list[Swap]:
    """Positions are ring slots; ``at[s]`` is the class in slot s (``out_perm`` inverted)."""
    layer, n = model.n_layers, model.widths[-1]
    at = torch.argsort(model.out_perm).tolist()
    last = model.linears[-1]
    params = [last.weight] + ([last.bias] if last.bias is not None else [])
    swaps = []
    for x in listed_positions(importance(model, layer)[at], top_k):
        y = _brute_choice(model, lambda trial, y: trial.swap_positions(layer, at[x], at[y]), n, factors, y_star)
        if y != x:
            model.swap_positions(layer, at[x], at[y])
            if optimizer is not None and moments == "in_place":
                swap_state_rows(optimizer, params, at[x], at[y])
            at[x], at[y] = at[y], at[x]
            swaps.append((layer, x, y))
    return swaps


def brute_force_swaps(
    model: HookedMLP,
    top_k: int = 30,
    distance_factor: float | Sequence[float] = 2.0,
    y_star: float = 0.5,
    optimizer: Optimizer | None = None,
    moments: str = "in_place",
) -> list[Swap]:
    """``swaps_original.original_swaps`` (same arguments, same swaps returned), every candidate scored by brute force."""
    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {MOMENTS}, got {moments!r}")
    factors = distance_factors(model, distance_factor)
    swaps: list[Swap] = []
    with torch.no_grad():
        for block in range(len(model.blocks)):
            if factors[block] != 0 or factors[block + 1] != 0:
                swaps += _hidden_layer(model, block, factors, top_k, optimizer if moments == "moved" else None, y_star)
        if factors[-1] != 0:
            swaps += _output_layer(model, factors, top_k, optimizer, moments, y_star)
    return swaps


class BruteForceTraining(Training):
    """``hooked_bimt.training.Training`` for an ``*_original`` regime, its relocation scored by brute force."""

    def move_neurons(self) -> int:
        if not self.regime.is_original:
            raise ValueError(f"the brute-force search is the original notebook's; {self.regime.name!r} is not an "
                             "*_original regime")
        cfg = self.config
        return len(brute_force_swaps(self.model, cfg.top_k, self.swap_factors, cfg.y_star, self.optimizer,
                                     cfg.original_moments))
