"""The primitives of SPEC 8's geometry, shared by every architecture: neuron lines, a penalised map, and the
refusal of a module a TransformerBridge has rewired. ``geometry`` (GPT-2) and ``llama`` build on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn


def line(n: int, device: Any = None) -> Float[Tensor, " n"]:
    """``n`` evenly spaced cell centres in [0, 1]: (i + 1/2) / n (float64)."""
    return (torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n


def folded(n: int, folds: int, device: Any = None) -> Float[Tensor, " folds_n"]:
    """``folds`` copies of ``line(n)`` one after another (the original BioLinear's ``out_fold``)."""
    return line(n, device).repeat(folds)


@dataclass(frozen=True)
class PenalisedMap:
    """One linear map of the cost: ``weight`` read as (out x in) is ``weight.T`` when ``transposed``."""

    name: str
    weight: nn.Parameter
    transposed: bool
    bias: Optional[nn.Parameter]
    x_out: Float[Tensor, " n_out"]
    x_in: Float[Tensor, " n_in"]

    def out_in(self) -> Float[Tensor, "n_out n_in"]:
        """The weight as (out x in), a view (differentiable)."""
        return self.weight.T if self.transposed else self.weight

    def distances(self) -> Float[Tensor, "n_out n_in"]:
        """D[j, i] = |x_out[j] - x_in[i]| (1-D; the layer gap enters the cost as y*)."""
        return (self.x_out[:, None] - self.x_in[None, :]).abs()


def plain(module: nn.Module) -> nn.Module:
    """``module`` itself; refuse one a TransformerBridge has rewired (its maps are no longer the HF ones)."""
    if hasattr(module, "_original_component"):
        raise ValueError(
            f"{type(module).__name__} is wrapped by a TransformerLens TransformerBridge (building a bridge rewires the "
            "Hugging Face module in place and splits its fused q/k/v map); BIMT operations need the plain "
            "Hugging Face module: use TrainResult.module, or build the bridge from a copy (to_bridge does)")
    return module
