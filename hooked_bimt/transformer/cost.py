"""SPEC 8's connection cost of a GPT-2-style transformer (the original BioTransformer's ``get_cc``):

    cc = sum_maps mean( |W| * (A * D + y*) ) + sum_maps mean( |b| * y* )

over the penalised maps of ``geometry.penalised_maps`` (W read as out x in, D[j, i] = |x_out[j] - x_in[i]|).
LayerNorm parameters and positional embeddings are not penalised. ``CostTerms`` caches S = A * D + y* per map
in the parameter's own layout, so a training step pays one elementwise product per map; the coordinates never
change (swaps permute weights), so the cache stays valid across swaps.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_bimt.transformer.geometry import penalised_maps


def check_cost_args(distance_factor: Any, y_star: Any) -> None:
    """Both numbers (finite, y* >= 0, A >= 0); a clear error otherwise."""
    for name, v in (("distance_factor", distance_factor), ("y_star", y_star)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 <= float(v) < float("inf")):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def connection_cost(module: Any, distance_factor: float = 2.0, y_star: float = 0.5) -> Float[Tensor, ""]:
    """SPEC 8's cc of a Hugging Face ``GPT2LMHeadModel`` (untied embeddings); a scalar with gradient.

    ``distance_factor`` (A) applies to every penalised map, the unembedding included."""
    check_cost_args(distance_factor, y_star)
    return CostTerms(module, distance_factor, y_star)()


class CostTerms:
    """``cc`` with S = A * D + y* cached per map (in the weight's stored layout); call it for the cost."""

    def __init__(self, module: Any, distance_factor: float, y_star: float) -> None:
        self.terms = []
        for m in penalised_maps(module):
            dtype = m.weight.dtype
            scale = (float(distance_factor) * m.distances() + float(y_star)).to(dtype)
            if m.transposed:
                scale = scale.T.contiguous()
            self.terms.append((m.weight, scale, m.bias))
        self.y_star = float(y_star)

    def __call__(self) -> Float[Tensor, ""]:
        total = self.terms[0][0].new_zeros(())
        for weight, scale, bias in self.terms:
            total = total + (weight.abs() * scale).mean()
            if bias is not None:
                total = total + bias.abs().mean() * self.y_star
        return total
