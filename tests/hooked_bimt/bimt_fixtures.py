"""Shared helpers for the hooked_bimt tests (a plain module: no conftest, so no name clashes)."""

from __future__ import annotations

import functools

import torch

from hooked_bimt import HookedMLP, MNISTSplit, load_mnist


def small_model(widths=(16, 9, 4, 5), seed: int = 0, dtype=torch.float64, scale: float = 1.0) -> HookedMLP:
    """A float64 HookedMLP with seeded random weights (sparse-ish, so cost differences are large)."""
    torch.manual_seed(seed)
    model = HookedMLP(widths).to(dtype)
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(scale * torch.rand_like(lin.weight) * 3)
    return model


@functools.lru_cache(maxsize=1)
def mnist():
    """The verified MNIST (train, test), read once per test process."""
    return load_mnist()


def random_mnist(n: int) -> tuple[MNISTSplit, MNISTSplit]:
    """``n`` random 28x28 images with random labels, as (train, test): seconds of training for CLI tests."""
    g = torch.Generator().manual_seed(0)
    split = MNISTSplit(images=torch.rand(n, 28, 28, generator=g), labels=torch.randint(10, (n,), generator=g))
    return split, split
