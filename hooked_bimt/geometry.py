"""Where BIMT puts its neurons (Liu, Gan & Tegmark 2023), and the distances between layers.

- a layer of width n = m*m on an m x m grid of cell centres in [0, 1]^2: ((a + 0.5)/m, (b + 0.5)/m),
  row-major, so index p = a*m + b sits at row a, column b (the input pixels keep their 28x28 layout);
- any other width on a horizontal line through the centre: ((i + 0.5)/n, 0.5);
- the output layer on a ring of radius 1/4 around (0.5, 0.5), neuron c at angle 2*pi*(c + phase)/n:
  phase 0 by default; the original BIMT notebook uses phase 1/2 (``ORIGINAL_RING_PHASE``).

Layers are a distance y* apart vertically; that part of the cost is the constant ``y*`` term, so
the in-plane distance matrices below are all the connection cost needs.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

Layout = Literal["auto", "grid", "line", "ring"]
RING_RADIUS = 0.25
ORIGINAL_RING_PHASE = 0.5  # the original notebook's output ring: c at angle 2*pi*(c + 1/2)/n


def grid_coords(n: int) -> Float[Tensor, "n 2"]:
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"a grid layout needs a square width, got {n} (not m*m for any integer m)")
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    # x is the column, y the row: pixel (row a, column b) sits at x = b, y = a.
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


def line_coords(n: int) -> Float[Tensor, "n 2"]:
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.stack([x, torch.full_like(x, 0.5)], dim=1)


def ring_coords(n: int, phase: float = 0.0) -> Float[Tensor, "n 2"]:
    """Neuron c at angle 2*pi*(c + phase)/n on the ring of radius 1/4 around (0.5, 0.5)."""
    angle = 2 * math.pi * (torch.arange(n, dtype=torch.float64) + phase) / n
    return torch.stack([0.5 + RING_RADIUS * torch.cos(angle), 0.5 + RING_RADIUS * torch.sin(angle)], dim=1)


def layer_coords(n: int, layout: Layout = "auto", ring_phase: float = 0.0) -> Float[Tensor, "n 2"]:
    """Coordinates of a layer of width ``n`` under ``layout`` ("auto": grid if n is a square, else line);
    ``ring_phase`` only moves a "ring" layout."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"a layer width must be a positive integer, got {n!r}")
    if layout == "auto":
        m = math.isqrt(n)
        return grid_coords(n) if m * m == n and n > 1 else line_coords(n)
    if layout == "grid":
        return grid_coords(n)
    if layout == "line":
        return line_coords(n)
    if layout == "ring":
        return ring_coords(n, ring_phase)
    raise ValueError(f"unknown layout {layout!r}; expected one of 'auto', 'grid', 'line', 'ring'")


def network_coords(
    widths: Sequence[int], layouts: Sequence[Layout] | None = None, ring_phase: float = 0.0
) -> list[Tensor]:
    """Coordinates of every layer: ``auto`` for the input and hidden layers, a ring (``ring_phase``) for the output."""
    if layouts is None:
        layouts = ["auto"] * (len(widths) - 1) + ["ring"]
    if len(layouts) != len(widths):
        raise ValueError(f"got {len(layouts)} layouts for {len(widths)} layers")
    return [layer_coords(n, lay, ring_phase) for n, lay in zip(widths, layouts)]


def l1_distance(receivers: Float[Tensor, "r 2"], senders: Float[Tensor, "s 2"]) -> Float[Tensor, "r s"]:
    """D[j, i] = |x_j - x_i| + |y_j - y_i|, the in-plane L1 distance from sender i to receiver j."""
    return (receivers[:, None, :] - senders[None, :, :]).abs().sum(-1)
