"""Static figures for papers (matplotlib): the network at its BIMT coordinates, and network vs circuit.

Edges are drawn as one ``LineCollection`` per kind (not one line each): the full 784-100-100-10
network is 89,400 segments. Colour: blue positive, red negative, always the sign of the weight (ACDC
keeps only edges whose effect exceeds the threshold, so effect signs carry no information); line width
and opacity grow with the magnitude ``|v| / max|v|`` of the weight or, with ``width_by="effect"``, the effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Float
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from circuits.circuit import Circuit
from circuits.hook_settings import keeps_hook_settings
from circuits.viz import data as vd
from circuits.viz.layout import check_layout, node_layout
from circuits._io import atomic_write
from circuits.validate import check_output_file

POS, NEG = "#2166ac", "#b2182b"
FORMATS = (".png", ".svg", ".pdf")
_RASTERIZE_ABOVE = 5000  # segments; a vector file with 89,400 lines is slow to open


def _segments(pos: list[np.ndarray], layer: np.ndarray, s: np.ndarray, r: np.ndarray) -> Float[np.ndarray, "n 2 2"]:
    segs = np.zeros((len(s), 2, 2))
    for l in np.unique(layer):
        sel = layer == l
        segs[sel, 0] = pos[l][s[sel]]
        segs[sel, 1] = pos[l + 1][r[sel]]
    return segs


def _all_edges(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every edge of the network as (layer, sender, receiver, weight) arrays."""
    parts = []
    for l, W in enumerate(vd.weights(model)):
        j, i = np.meshgrid(np.arange(W.shape[0]), np.arange(W.shape[1]), indexing="ij")
        parts.append((np.full(W.size, l), i.ravel(), j.ravel(), W.ravel()))
    return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]


def _collection(
    segs: np.ndarray, values: np.ndarray, *, max_width: float, alpha: tuple[float, float], gamma: float = 1.0,
    scale: Optional[float] = None, signs: Optional[np.ndarray] = None,
) -> LineCollection:
    """Segments coloured by sign, width by ``t = |v| / scale`` (default ``max|v|``; clipped to 1), opacity
    ``alpha[0] + (alpha[1] - alpha[0]) * t**gamma``.

    Segments with ``t < 0.01`` (nearly invisible) are left out; above ``_RASTERIZE_ABOVE`` segments
    the collection is rasterized inside vector files (SVG, PDF).
    """
    mag = np.abs(values)
    if scale is None:
        scale = float(mag.max()) if mag.size else 0.0  # an empty circuit draws nothing
    t = np.minimum(mag / (scale if scale > 0 else 1.0), 1.0)
    keep = t >= 0.01 if len(segs) > _RASTERIZE_ABOVE else np.ones(len(t), dtype=bool)
    signs = values if signs is None else signs
    segs, t, sign = segs[keep], t[keep], (signs[keep] < 0).astype(int)
    colors = np.array([to_rgba(POS), to_rgba(NEG)])[sign]
    colors[:, 3] = alpha[0] + (alpha[1] - alpha[0]) * t**gamma
    order = np.argsort(t)  # strong edges on top
    lc = LineCollection(segs[order], colors=colors[order], linewidths=0.15 + max_width * t[order], capstyle="round")
    lc.set_rasterized(len(segs) > _RASTERIZE_ABOVE)
    return lc


def _draw_neurons(ax: Axes, model: Any, pos: list[np.ndarray], masks: Optional[list[np.ndarray]], labels: list[str]) -> None:
    L = model.n_layers
    for l, p in enumerate(pos):
        inside = masks[l] if masks is not None else np.ones(len(p), dtype=bool)
        size = 3.0 if l == 0 else (120.0 if l == L else 14.0)
        ax.scatter(p[~inside, 0], p[~inside, 1], s=size, c="#dddddd", edgecolors="none", zorder=3)
        ax.scatter(p[inside, 0], p[inside, 1], s=size, c="#222222" if l else "#777777", edgecolors="none", zorder=4)
    for c, (x, y) in enumerate(pos[L]):
        ax.text(x, y, labels[c], ha="center", va="center", fontsize=7, color="white", fontweight="bold", zorder=5)


@keeps_hook_settings
def draw_network(
    model: Any,
    circuit: Optional[Circuit] = None,
    ax: Optional[Axes] = None,
    *,
    width_by: str = "weight",
    layout: str = "bimt",
    background: bool = False,
    output_labels: Optional[Sequence[Any]] = None,
    max_width: float = 2.0,
    title: Optional[str] = None,
    weight_scale: Optional[float] = None,
    emphasis: bool = True,
    check_model: bool = True,
) -> Axes:
    """Draw ``model`` (or ``circuit`` on it) at the neurons' coordinates, layers stacked vertically.

    Without a circuit every weight is drawn (opacity and width ``∝ |W_l[j, i]| / max|W|``). With one,
    only its edges are drawn (``width_by``: ``|weight|`` or ``|effect|``; "effect" falls back to weights
    for a circuit without effect sizes), neurons outside it faded, and the full network faintly
    underneath if ``background``. Large collections are rasterized inside vector files.
    ``weight_scale``: the |value| drawn at full width (default: the largest drawn). ``emphasis=False``
    draws circuit edges in exactly the full network's style, so with a shared ``weight_scale`` the
    circuit is visibly a subset of the full drawing (``network_vs_circuit`` does this).

    Raises:
        ValueError: a circuit from another model (its graph, or its fingerprint unless ``check_model=False``
            for a deliberate transfer), unknown ``layout`` / ``width_by``, bad ``output_labels``.
    """
    vd.check_width_by(width_by)
    check_layout(layout)
    vd.check_model(model)
    if circuit is not None:
        vd.check_circuit(model, circuit, check_model)
    labels = vd.check_output_labels(model, output_labels)
    lay = node_layout(model, layout, None)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 7))
    H = lay.size[1]
    pos = [np.stack([p[:, 0], H - p[:, 1]], axis=1) for p in lay.positions]  # y up for matplotlib
    if circuit is None or background:
        layer, s, r, w = _all_edges(model)
        faint = (0.0, 0.7) if circuit is None else (0.0, 0.12)
        ax.add_collection(_collection(_segments(pos, layer, s, r), w, max_width=max_width * 0.5, alpha=faint, gamma=2.0,
                                      scale=weight_scale))
    masks = None
    if circuit is not None:
        _draw_circuit_edges(ax, model, circuit, pos, width_by, max_width, weight_scale, emphasis)
        masks = vd.node_membership(model, circuit)
    _draw_neurons(ax, model, pos, masks, labels)
    _finish_axes(ax, lay, title)
    return ax


def _draw_circuit_edges(ax: Axes, model: Any, circuit: Circuit, pos: list[np.ndarray], width_by: str,
                        max_width: float, weight_scale: Optional[float], emphasis: bool) -> None:
    """The circuit's edges, width by |weight| or |effect| (``draw_network``)."""
    ce = vd.circuit_edges(model, circuit)
    by = vd.effective_width_by(circuit, width_by)
    vals = np.nan_to_num(ce.effect if by == "effect" else ce.weight, nan=0.0)
    style = dict(max_width=max_width, alpha=(0.25, 1.0)) if emphasis else dict(
        max_width=max_width * 0.5, alpha=(0.0, 0.7), gamma=2.0)
    ax.add_collection(_collection(_segments(pos, ce.layer, ce.sender, ce.receiver), vals, scale=weight_scale,
                                  signs=np.nan_to_num(ce.weight, nan=0.0), **style))


def _finish_axes(ax: Axes, lay: Any, title: Optional[str]) -> None:
    """The layout's frames (if any) behind everything, the limits, no axes, the title."""
    H = lay.size[1]
    if lay.frames is not None:
        for f in lay.frames:
            g = np.stack([f[:, 0], H - f[:, 1]], axis=1)
            ax.plot(*np.vstack([g, g[:1]]).T, color="#cccccc", lw=0.6, zorder=1)
    ax.set_xlim(0, lay.size[0])
    ax.set_ylim(0, H)
    ax.set_aspect("equal")
    ax.axis("off")
    if title is not None:
        ax.set_title(title)


def _check_path(path: Optional[str | Path], overwrite: bool) -> Optional[Path]:
    """A figure path: its format from the extension; an existing file needs ``overwrite`` (checked before drawing)."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot tell the figure format from {p.name!r}: use one of {FORMATS}")
    return check_output_file(p, overwrite=overwrite)


@keeps_hook_settings
def network_vs_circuit(
    model: Any,
    circuit: Circuit,
    path: Optional[str | Path] = None,
    *,
    titles: Sequence[str] = ("Full network", "Circuit"),
    width_by: str = "weight",
    layout: str = "bimt",
    dpi: int = 150,
    check_model: bool = True,
    overwrite: bool = False,
) -> Figure:
    """The paper's Figure 2: the full network (left) beside the circuit (right), saved to ``path``.

    With ``width_by="weight"`` both panels share one scale and one style, so every line on the right is
    the same line as on the left: the circuit is drawn as the subset of the network it is. The format
    follows the extension (.png, .svg, .pdf); the file is written atomically, never over an existing one unless
    ``overwrite``.
    """
    target = _check_path(path, overwrite)
    if len(titles) != 2:
        raise ValueError(f"titles needs two strings (network, circuit), got {len(titles)}")
    vd.check_width_by(width_by)
    check_layout(layout)
    vd.check_model(model)
    vd.check_circuit(model, circuit, check_model)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 7))
    shared = width_by == "weight" or vd.effective_width_by(circuit, width_by) == "weight"
    scale = float(np.abs(_all_edges(model)[3]).max()) if shared else None
    draw_network(model, None, a, layout=layout, title=titles[0], weight_scale=scale)
    draw_network(model, circuit, b, width_by=width_by, layout=layout, weight_scale=scale, emphasis=not shared,
                 check_model=False,  # checked above
                 title=f"{titles[1]} ({circuit.n_edges} of {circuit.n_total_edges} edges)")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.02)
    if target is not None:
        fmt = target.suffix.lower().lstrip(".")
        atomic_write(target, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    return fig
