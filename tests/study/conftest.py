"""Shared fixtures for the study tests: a slice of the real MNIST test set and an oracle classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hooked_bimt.data import MNISTSplit, load_split


@pytest.fixture(scope="session")
def mnist_test() -> MNISTSplit:
    return load_split("test")


@pytest.fixture(scope="session")
def test_slice(mnist_test) -> MNISTSplit:
    """The first 2,000 test images: enough pairs for every task, cheap to classify."""
    return MNISTSplit(images=mnist_test.images[:2000], labels=mnist_test.labels[:2000])


class Oracle(nn.Module):
    """Predicts each image's true label from a lookup, except for the rows listed in ``wrong``.

    An image is identified by an exact random projection of its pixels, so the classifier is right
    or wrong exactly where the test says.
    """

    def __init__(self, split: MNISTSplit, wrong: set[int] = frozenset()) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        flat = split.images.reshape(len(split.labels), -1).double()
        self.proj = torch.randn(flat.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        keys = flat @ self.proj
        self.keys, order = keys.sort()
        labels = split.labels.clone()
        for i in wrong:
            labels[i] = (labels[i] + 1) % 10
        self.labels = labels[order]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.reshape(len(x), -1).double() @ self.proj
        pos = torch.searchsorted(self.keys, k).clamp(max=len(self.keys) - 1)
        lower = (pos - 1).clamp(min=0)
        pos = torch.where((self.keys[lower] - k).abs() < (self.keys[pos] - k).abs(), lower, pos)
        return nn.functional.one_hot(self.labels[pos], 10).to(self.dummy.dtype) * 5.0


@pytest.fixture
def oracle_cls():
    return Oracle
