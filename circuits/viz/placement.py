"""Caller-supplied positions for the unit view (``circuit_graph(model, circuit, placement=...)``).

The unit view (``graph_view``) lays units out in rows by layer. A ``Placement`` replaces that layout with the
caller's own: a position for every unit, and optionally a *backdrop*, any network of points and weighted lines
drawn faintly under the circuit (for instance every neuron of the model at a coordinate of its own choosing and
its weights between them). ``circuits`` gives the positions no meaning: a library that knows where a model's
neurons live (a training method with neuron coordinates, a hand-made diagram) fills a ``Placement`` and passes it,
or passes a callable ``model -> Placement``.

Positions are in the caller's plane: x to the right, y up, any finite units. The page stores them as given
(``data["placement"]``, exact) and maps them to the screen by ``X = margin + (x - x_min) * sx``,
``Y = height - margin - (y - y_min) * sy`` with ``(sx, sy) = pixels_per_unit``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from circuits.graph import Graph

MARGIN, LABEL_GUTTER = 40.0, 90.0


@dataclass(frozen=True)
class Backdrop:
    """Points and the lines between them, drawn under the circuit.

    ``points``: (n, 2) positions; ``lines``: (m, 2) point indices (from, to); ``strength``: (m,) in [0, 1], the
    line's opacity and width; ``sign``: (m,) in {-1, 0, 1} (negative, unsigned, positive: the colour);
    ``description``: one sentence for the legend saying what the lines are."""

    points: Any
    lines: Any
    strength: Any
    sign: Any
    description: str = ""


@dataclass(frozen=True)
class Placement:
    """Where the unit view draws each unit (``units``: ``(hook, index) -> (x, y)``, one entry per unit, keyed by
    any node of the unit: a head by its output ``blocks.0.attn.hook_result`` or one of its inputs), an optional
    ``backdrop``, ``row_labels`` (``(y, text)`` pairs), ``pixels_per_unit`` (sx, sy) and ``unit_width`` (the boxes'
    width in the caller's units; default: 0.8 of the closest two units at one height, at most 80 pixels)."""

    units: Mapping[tuple[str, int], Sequence[float]]
    backdrop: Optional[Backdrop] = None
    row_labels: Sequence[tuple[float, str]] = field(default_factory=tuple)
    pixels_per_unit: tuple[float, float] = (800.0, 70.0)
    unit_width: Optional[float] = None


def _finite_xy(value: Any, what: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an (x, y) pair of numbers, got {value!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{what} must be finite, got {(x, y)!r}")
    return x, y


def _positive_pair(value: Any, what: str) -> tuple[float, float]:
    x, y = _finite_xy(value, what)
    if x <= 0 or y <= 0:
        raise ValueError(f"{what} must be two positive numbers, got {(x, y)!r}")
    return x, y


def unit_positions(placement: Placement, graph: Graph, where: Mapping[tuple[str, int], int],
                   n_units: int) -> np.ndarray:
    """(n_units, 2) caller positions, one per unit; ValueError for an unknown node, a unit placed twice at
    different positions, or units left without a position (named)."""
    if not isinstance(placement.units, Mapping):
        raise TypeError(f"Placement.units must be a mapping (hook, index) -> (x, y), got {type(placement.units).__name__}")
    pos = np.full((n_units, 2), np.nan)
    for key, value in placement.units.items():
        if (not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[0], str)
                or isinstance(key[1], bool) or not isinstance(key[1], numbers.Integral)):
            raise ValueError(f"Placement.units keys are (hook name, node index) pairs, got {key!r}")
        if key not in where:
            count = graph.nodes[key[0]].count if key[0] in graph.nodes else None
            raise ValueError(f"Placement.units places {key!r}, which is not a node of the model's graph"
                             + (f" ({key[0]} has {count} nodes)" if count is not None else " (unknown hook)"))
        xy = _finite_xy(value, f"the position of {key!r}")
        u = where[key]
        if not np.isnan(pos[u, 0]) and tuple(pos[u]) != xy:
            raise ValueError(f"Placement.units gives {key!r}'s unit two positions: {tuple(pos[u])} and {xy}")
        pos[u] = xy
    missing = [k for k, u in where.items() if np.isnan(pos[u, 0]) and k[0] not in graph.node_output]
    if missing:
        shown = ", ".join(map(repr, missing[:6])) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ValueError(f"Placement.units gives no position to {len(missing)} unit(s) of the graph: {shown}")
    return pos


def check_backdrop(b: Backdrop) -> dict[str, np.ndarray]:
    """The backdrop's arrays, checked: shapes agree, values finite, indices in range, strength in [0, 1]."""
    if not isinstance(b, Backdrop):
        raise TypeError(f"Placement.backdrop must be a circuits.viz.Backdrop, got {type(b).__name__}")
    pts = np.asarray(b.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ValueError(f"Backdrop.points must be a finite (n, 2) array, got shape {pts.shape}")
    lines = np.asarray(b.lines)
    if lines.size == 0:
        lines = lines.reshape(0, 2).astype(np.int64)
    if lines.ndim != 2 or lines.shape[1] != 2 or not np.issubdtype(lines.dtype, np.integer):
        raise ValueError(f"Backdrop.lines must be an (m, 2) integer array of point indices, got {lines.dtype} {lines.shape}")
    if lines.size and (lines.min() < 0 or lines.max() >= len(pts)):
        raise ValueError(f"Backdrop.lines index points 0..{len(pts) - 1}; got {lines.min()}..{lines.max()}")
    strength, sign = np.asarray(b.strength, dtype=np.float64), np.asarray(b.sign)
    if strength.shape != (len(lines),) or sign.shape != (len(lines),):
        raise ValueError(f"Backdrop.strength and .sign need one value per line ({len(lines)}), "
                         f"got shapes {strength.shape} and {sign.shape}")
    if not (np.isfinite(strength).all() and ((strength >= 0) & (strength <= 1)).all()):
        raise ValueError("Backdrop.strength must be finite numbers in [0, 1]")
    if not np.isin(sign, (-1, 0, 1)).all():
        raise ValueError("Backdrop.sign must be -1, 0 or 1 per line")
    return {"points": pts, "lines": lines.astype(np.int64), "strength": strength, "sign": sign.astype(np.int64)}


def _frame(placement: Placement, pos: np.ndarray, points: np.ndarray) -> dict[str, float]:
    """Bounding box of everything placed, the scale, and the drawing size in pixels."""
    sx, sy = _positive_pair(placement.pixels_per_unit, "Placement.pixels_per_unit")
    ys = [pos[:, 1], points[:, 1], np.array([_finite_xy((0, y), "a row label's y")[1] for y, _ in placement.row_labels])]
    allx, ally = np.concatenate([pos[:, 0], points[:, 0]]), np.concatenate(ys)
    x0, y0 = float(allx.min()), float(ally.min())
    width = 2 * MARGIN + LABEL_GUTTER + (float(allx.max()) - x0) * sx
    height = 2 * MARGIN + (float(ally.max()) - y0) * sy
    return {"x0": x0, "y0": y0, "sx": sx, "sy": sy, "left": MARGIN + LABEL_GUTTER, "bottom": MARGIN,
            "width": round(width, 2), "height": round(height, 2)}


def screen(frame: dict[str, float], xy: np.ndarray) -> np.ndarray:
    """Caller positions -> drawing coordinates (y down)."""
    return np.stack([frame["left"] + (xy[:, 0] - frame["x0"]) * frame["sx"],
                     frame["height"] - frame["bottom"] - (xy[:, 1] - frame["y0"]) * frame["sy"]], axis=1)


def placement_data(placement: Placement, graph: Graph, where: Mapping[tuple[str, int], int],
                   n_units: int) -> tuple[dict[str, Any], np.ndarray, float]:
    """The page's ``placement`` entry, the units' drawing coordinates and the unit box width in pixels."""
    if not isinstance(placement, Placement):
        raise TypeError(f"placement must be a circuits.viz.Placement or a callable returning one, "
                        f"got {type(placement).__name__}")
    pos = unit_positions(placement, graph, where, n_units)
    back = check_backdrop(placement.backdrop) if placement.backdrop is not None else None
    labels = [(_finite_xy((0, y), "a row label's y")[1], str(t)) for y, t in placement.row_labels]
    frame = _frame(placement, pos, back["points"] if back else np.zeros((0, 2)))
    if placement.unit_width is not None:
        box_w = _positive_pair((placement.unit_width, 1), "Placement.unit_width")[0] * frame["sx"]
    else:
        gap = _min_gap(pos)
        box_w = min(80.0, 0.8 * gap * frame["sx"]) if gap is not None else 80.0
    data: dict[str, Any] = {
        "frame": frame,
        "units_xy": pos.tolist(),
        "row_labels": [[y, t] for y, t in labels],
        "backdrop": None,
    }
    if back is not None:
        data["backdrop"] = {
            "points": back["points"].tolist(),
            "a": back["lines"][:, 0].tolist(), "b": back["lines"][:, 1].tolist(),
            "strength": [round(float(s), 4) for s in back["strength"]], "sign": back["sign"].tolist(),
            "description": str(placement.backdrop.description),
        }
    return data, screen(frame, pos), box_w


def _min_gap(pos: np.ndarray) -> Optional[float]:
    """The smallest horizontal distance between two units at the same height, or None."""
    gaps = [np.diff(xs).min() for y in np.unique(pos[:, 1]) if len(xs := np.unique(pos[pos[:, 1] == y, 0])) > 1]
    return float(min(gaps)) if gaps else None
