"""Where each neuron is drawn: screen positions shared by the HTML view and the matplotlib figures.

Two layouts, both in a drawing space with y pointing *down* (SVG convention), size ``(width, height)``:

- ``"bimt"``: each layer of neurons is a plane seen obliquely, stacked vertically (input at the
  bottom, output at the top), and a neuron at BIMT coordinates ``(cx, cy)`` in layer ``l`` is drawn at

      p = O_l + cx * U + cy * V,   O_l = (m, H - m - l * gap),   U = (s, 0),   V = (shear * s, -depth * s)

  so the neurons' positions in the plane (``model.coords(l)``) are what you see.
- ``"layered"``: one column per layer, left to right, neurons in index order top to bottom; with an
  ``input_shape`` the input column is that image grid (pixel ``i`` at row ``i // w``, column ``i % w``).

``cell`` gives, for the input layer, the two vectors spanning one pixel cell (to draw the heat map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from jaxtyping import Float

LAYOUTS = ("bimt", "layered")

# bimt geometry (drawing units)
_S, _SHEAR, _DEPTH, _GAP, _M = 560.0, 0.32, 0.30, 0.62, 40.0
# layered geometry
_COL, _ROWH, _IMG = 230.0, 560.0, 300.0


@dataclass(frozen=True)
class Layout:
    """Positions per layer of neurons (``positions[l]`` is ``(widths[l], 2)``) in a ``size`` box."""

    name: str
    positions: list[np.ndarray]
    size: tuple[float, float]
    cell: Optional[tuple[tuple[float, float], tuple[float, float]]]
    frames: Optional[list[np.ndarray]] = None

    def to_json(self) -> dict[str, Any]:
        return {
            "size": [round(self.size[0], 2), round(self.size[1], 2)],
            "positions": [np.round(p, 2).tolist() for p in self.positions],
            "cell": [list(v) for v in self.cell] if self.cell is not None else None,
            "frames": [np.round(f, 2).tolist() for f in self.frames] if self.frames is not None else None,
        }


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return layout


def _coords(model: Any) -> list[np.ndarray]:
    return [model.coords(l).detach().to("cpu").double().numpy() for l in range(model.n_layers + 1)]


def bimt_layout(model: Any, input_shape: Optional[tuple[int, int]] = None) -> Layout:
    """Oblique stacked planes at the neurons' BIMT coordinates (formula in the module docstring)."""
    L = model.n_layers
    U = np.array([_S, 0.0])
    V = np.array([_SHEAR * _S, -_DEPTH * _S])
    gap = _GAP * _S
    height = 2 * _M + L * gap + _DEPTH * _S
    width = 2 * _M + (1 + _SHEAR) * _S
    positions, frames = [], []
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    for l, c in enumerate(_coords(model)):
        origin = np.array([_M, height - _M - l * gap])
        positions.append(origin + c[:, :1] * U + c[:, 1:2] * V)
        frames.append(origin + corners[:, :1] * U + corners[:, 1:2] * V)
    cell = None
    if input_shape is not None:
        h, w = input_shape
        cell = (tuple((U / w).round(3)), tuple((V / h).round(3)))
    return Layout("bimt", positions, (width, height), cell, frames)


def layered_layout(model: Any, input_shape: Optional[tuple[int, int]] = None) -> Layout:
    """Columns left to right, neurons top to bottom in index order; the input as an image grid."""
    widths = model.widths
    top = _M + 20.0
    x0 = _M + (_IMG if input_shape is not None else 0.0)
    positions = []
    for l, n in enumerate(widths):
        x = x0 + l * _COL
        if l == 0 and input_shape is not None:
            h, w = input_shape
            i = np.arange(n)
            side = _IMG / max(h, w)
            y0 = top + (_ROWH - side * h) / 2
            positions.append(np.stack([x - _IMG + side * (i % w + 0.5), y0 + side * (i // w + 0.5)], axis=1))
        else:
            positions.append(np.stack([np.full(n, x), top + (np.arange(n) + 0.5) / n * _ROWH], axis=1))
    cell = None
    if input_shape is not None:
        side = _IMG / max(input_shape)
        cell = ((side, 0.0), (0.0, side))
    size = (x0 + (len(widths) - 1) * _COL + _M + 40.0, top + _ROWH + _M)
    return Layout("layered", positions, size, cell)


def node_layout(
    model: Any, layout: str = "bimt", input_shape: Optional[tuple[int, int]] = None
) -> Layout:
    """The ``Layout`` named ``layout`` ("bimt" or "layered") for ``model``."""
    check_layout(layout)
    return (bimt_layout if layout == "bimt" else layered_layout)(model, input_shape)


def positions_array(lay: Layout) -> Float[np.ndarray, "n_neurons 2"]:
    """All positions stacked, layer after layer."""
    return np.concatenate(lay.positions, axis=0)
