"""The BIMT connection cost (Liu, Gan & Tegmark 2023), SPEC section 2.

For linear layer l with weight W_l (out x in), bias b_l and in-plane L1 distances D_l[j, i] from
sender i to receiver j::

    cc = sum_l mean( |W_l| * (A_l * D_l + y*) ) + sum_l mean( |b_l| * y* )

A_l = 0 everywhere gives plain L1 (scaled by y*); the MNIST defaults use A = 2 except on the last layer.
Training adds the cost's gradient straight to ``.grad`` (``add_cost_grad``), with the scales
S_l = A_l * D_l + y* cached (``cost_scales``):

    d(lambda cc)/dW_l = lambda * sign(W_l) * S_l / numel(W_l),   d(lambda cc)/db_l = lambda * sign(b_l) * y* / numel(b_l)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.geometry import l1_distance

if TYPE_CHECKING:
    from hooked_bimt.model import HookedMLP


def distance_factors(model: "HookedMLP", distance_factor: float | Sequence[float]) -> list[float]:
    """One A per linear layer: a sequence is taken as is, a number applies to every layer."""
    if isinstance(distance_factor, (int, float)):
        return [float(distance_factor)] * model.n_layers
    factors = [float(a) for a in distance_factor]
    if len(factors) != model.n_layers:
        raise ValueError(f"distance_factor has {len(factors)} entries for {model.n_layers} linear layers")
    return factors


def layer_distances(model: "HookedMLP", layer: int) -> Float[Tensor, "out in"]:
    """D for ``linears[layer]``: L1 distance from each neuron of layer ``layer`` to each of ``layer + 1``."""
    return l1_distance(model.coords(layer + 1), model.coords(layer))


def connection_cost(
    model: "HookedMLP", distance_factor: float | Sequence[float] = 2.0, y_star: float = 0.5
) -> Float[Tensor, ""]:
    """Scalar connection cost of ``model``; differentiable in its weights and biases."""
    factors = distance_factors(model, distance_factor)
    total = model.linears[0].weight.new_zeros(())
    for l, (lin, a) in enumerate(zip(model.linears, factors)):
        scale = a * layer_distances(model, l) + y_star if a != 0 else y_star
        total = total + (lin.weight.abs() * scale).mean()
        if lin.bias is not None:
            total = total + (lin.bias.abs() * y_star).mean()
    return total


def cost_scale(model: HookedMLP, layer: int, a: float, y_star: float) -> Tensor | float:
    """S_l = A_l * D_l + y* for ``linears[layer]`` (a plain number where A_l = 0)."""
    return a * layer_distances(model, layer) + y_star if a != 0 else float(y_star)


def cost_scales(model: HookedMLP, factors: Sequence[float], y_star: float) -> list[Tensor | float]:
    """S_l = A_l * D_l + y* per linear layer (a plain number where A_l = 0)."""
    return [cost_scale(model, l, a, y_star) for l, a in enumerate(factors)]


def add_cost_grad(model: HookedMLP, scales: Sequence[Tensor | float], lam: float, y_star: float) -> None:
    """``.grad += d(lam * cc)/d(param)`` for every weight and bias (formula in the module docstring)."""
    with torch.no_grad():
        for lin, s in zip(model.linears, scales):
            w = lin.weight
            if isinstance(s, Tensor):
                w.grad.addcmul_(w.sign(), s, value=lam / w.numel())
            else:
                w.grad.add_(w.sign(), alpha=lam * s / w.numel())
            if lin.bias is not None:
                lin.bias.grad.add_(lin.bias.sign(), alpha=lam * y_star / lin.bias.numel())
