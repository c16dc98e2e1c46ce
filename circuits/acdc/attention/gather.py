"""The delta scorer's cached activations (``(batch, pos, node, ...)`` tensors of
``circuits.acdc.attention.delta.Baseline``) read and written at some positions and nodes, and pattern-first changes
taken per node."""

from __future__ import annotations

from typing import Union

from torch import Tensor


def run(index: Union[list[int], Tensor]) -> Union[slice, list[int], Tensor]:
    """``index`` (ascending) as a slice when it is a run of consecutive nodes: a write through it is a plain copy,
    not an advanced-index write."""
    first, last = int(index[0]), int(index[-1])
    return slice(first, last + 1) if last + 1 - first == len(index) else index


def take(t: Tensor, positions: Tensor, nodes: Tensor, full: tuple[int, int]) -> Tensor:
    """``t[:, positions][:, :, nodes]``, without copying when both are everything."""
    if positions.numel() != full[0]:
        t = t[:, positions]
    return t if nodes.numel() == full[1] else t[:, :, nodes]


def put(t: Tensor, positions: Tensor, nodes: Tensor, full: tuple[int, int], value: Tensor) -> None:
    """``t[:, positions][:, :, nodes] = value`` in place (``take``'s inverse), by plain copies where either index is
    everything (an advanced-index write costs several times a copy)."""
    all_pos, all_nodes = positions.numel() == full[0], nodes.numel() == full[1]
    if all_pos and all_nodes:
        t.copy_(value)
    elif all_nodes:
        t[:, positions] = value
    elif all_pos:
        t[:, :, nodes] = value
    else:
        t[:, positions.unsqueeze(1), nodes.unsqueeze(0)] = value


def per_node(t: Tensor, inverse: Tensor) -> Tensor:
    """Pattern-first changes ``(U, n, B, T, d)`` as each receiver node's, ``(n, B, T, k, d)``."""
    return t[inverse].permute(1, 2, 3, 0, 4)
