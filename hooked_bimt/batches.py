"""How training draws its batches of example indices.

- "replacement": every batch is ``batch_size`` indices drawn uniformly with replacement (our default);
- "epochs": the original BIMT notebook's way, a fresh random permutation of the training set each epoch
  cut into consecutive batches, so every example is used exactly once per epoch (the last batch of an
  epoch is smaller when ``batch_size`` does not divide n).
"""

from __future__ import annotations

from typing import Iterator, Literal

import torch
from jaxtyping import Int64
from torch import Tensor

BatchMode = Literal["replacement", "epochs"]
BATCH_MODES = ("replacement", "epochs")


def resolve_mode(batches: str, original: bool) -> BatchMode:
    """``TrainConfig.batches`` made concrete: "auto" is "epochs" in an ``*_original`` regime, else "replacement"."""
    if batches == "auto":
        return "epochs" if original else "replacement"
    return batches  # type: ignore[return-value]


def batch_indices(
    n: int, batch_size: int, mode: BatchMode, generator: torch.Generator, device: str | torch.device = "cpu"
) -> Iterator[Int64[Tensor, " batch"]]:
    """Endless batches of indices into a training set of ``n`` examples, drawn from ``generator`` (CPU)."""
    if mode not in BATCH_MODES:
        raise ValueError(f"batch mode must be one of {BATCH_MODES}, got {mode!r}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    while True:
        if mode == "replacement":
            yield torch.randint(n, (batch_size,), generator=generator).to(device)
            continue
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]
