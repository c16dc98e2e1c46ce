"""The picture of a BIMT transformer: every neuron at its SPEC 8 position, the weights drawn, beside its circuit.

Left panel: the rows of ``drawing`` (bottom to top: input tokens, the residual stream, per block the head dimensions,
tinted per head, the residual stream, the MLP neurons, the residual stream; last the output tokens), each neuron at
its coordinate, so a local network shows as short, near-vertical lines. A line joins neurons i -> j of a penalised
map when its strength a = |W[j, i]| / max |W| of that map is at least ``min_weight``, with opacity a^2 and width
0.2 + 1.8 a^2 (the square lets the few strong weights stand out of thousands of faint ones), red positive, blue
negative, grey for the q/k/v map (|W_q| + |W_k| + |W_v|); maps reading a LayerNorm's output are drawn times that
norm's weight, as the original plot. Under the panels: the measured wiring length (``locality``) against random
placements of the same weights; beside each map, its own L / E[L]. Right panel: the discovered circuit (SPEC 7
nodes: the embedding, each head at the centre of its block, each MLP, the output) on the same rows, an edge coloured
by what it feeds (query, key, value, MLP or output); heads in the circuit are tinted on the left too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from circuits._io import atomic_write
from circuits.validate import check_output_file
from hooked_bimt.transformer.drawing import drawn_maps, row_coordinates, row_label, rows_of
from hooked_bimt.transformer.geometry import dims
from hooked_bimt.transformer.locality import Locality, locality

ROLE_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#ff7f0e", "mlp": "#7f7f7f", "out": "#000000"}
HEAD_TINTS = ("#fde0dd", "#deebf7", "#e5f5e0", "#fff7bc", "#efedf5", "#fee6ce")


_RGB = np.array([[0.12, 0.47, 0.71], [0.3, 0.3, 0.3], [0.84, 0.15, 0.16]])  # by sign + 1: negative, q/k/v, positive


def network_lines(module: Any, min_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every drawn line, weakest first: segments ((x, row) -> (x, row)), strengths a and signs (+1, -1; 0 for the
    unsigned q/k/v map); weights with a < ``min_weight`` are left out."""
    rows = rows_of(dims(module)["n_layer"])
    segs, strength, sign = [], [], []
    for m in drawn_maps(module):
        j, i, a, sg = m.visible(min_weight)
        y0, y1 = rows[m.sender_row], rows[m.receiver_row]
        segs.append(np.stack([np.stack([m.x_in[i], np.full(len(i), y0)], 1),
                              np.stack([m.x_out[j], np.full(len(j), y1)], 1)], 1))
        strength.append(a)
        sign.append(sg)
    segs, strength, sign = np.concatenate(segs), np.concatenate(strength), np.concatenate(sign)
    order = np.argsort(strength, kind="stable")
    return segs[order], strength[order], sign[order]


def draw_network(module: Any, ax: Any, *, min_weight: float = 0.15, tint_heads: frozenset = frozenset(),
                 loc: Optional[Locality] = None) -> int:
    """The left panel on ``ax``: a line per weight with a = |w| / max|w| of its map >= ``min_weight``, opacity a^2
    and width 0.2 + 1.8 a^2 (the strong weights stand out of thousands of faint ones), strongest on top; ``tint_heads``: (layer, head) pairs to outline (the circuit's heads);
    ``loc``: each map's L / E[L] written beside it. Returns the number of lines drawn."""
    d = dims(module)
    rows = rows_of(d["n_layer"])
    segs, a, sign = network_lines(module, min_weight)
    rgba = np.concatenate([_RGB[sign + 1], a[:, None] ** 2], 1)
    ax.add_collection(LineCollection(segs, linewidths=0.2 + 1.8 * a ** 2, colors=rgba, zorder=1))
    for l in range(d["n_layer"]):
        for h in range(d["n_head"]):
            strong = (l, h) in tint_heads
            ax.add_patch(plt.Rectangle((h / d["n_head"], rows[f"attn{l}"] - 0.28), 1 / d["n_head"], 0.56,
                                       color=HEAD_TINTS[h % len(HEAD_TINTS)], alpha=1.0 if strong else 0.45,
                                       ec="#d62728" if strong else "none", lw=1.2, zorder=0))
            ax.text((h + 0.5) / d["n_head"], rows[f"attn{l}"] + 0.3, f"L{l}H{h}", ha="center", fontsize=6, zorder=3)
    for name, x in row_coordinates(module).items():
        ax.scatter(x, np.full(len(x), rows[name]), s=min(6.0, 300 / len(x)), c="k", zorder=2, linewidths=0)
    if loc is not None:
        for m in drawn_maps(module):
            length, expected = loc.per_map.get(m.name, (0.0, 0.0))
            if expected > 0:
                ax.text(1.02, (rows[m.sender_row] + rows[m.receiver_row]) / 2, f"L/E[L] {length / expected:.2f}",
                        va="center", fontsize=6, color="#777")
    _label_rows(ax, rows)
    return len(segs)


def _label_rows(ax: Any, rows: dict[str, int]) -> None:
    for name, y in rows.items():
        ax.text(1.02, y, row_label(name), va="center", fontsize=7)
    ax.set_xlim(-0.02, 1.16)
    ax.set_ylim(-0.6, max(rows.values()) + 0.6)
    ax.axis("off")


_HOOK = re.compile(r"blocks\.(\d+)\.(attn\.hook_result|mlp\.hook_out|attn\.hook_([qkv])_input|hook_mlp_in|hook_out)$")


def _node_xy(hook: str, index: int, d: dict[str, int], rows: dict[str, int]) -> tuple[tuple[float, float], str]:
    """(position, role) of a SPEC 7 node: role q/k/v/mlp/out for receivers, "" for senders."""
    if hook == "embed.hook_out":
        return (0.5, rows["res0"] - 0.5), ""
    m = _HOOK.match(hook)
    if m is None:
        raise ValueError(f"not a SPEC 7 hook of a GPT-2 bridge: {hook!r}")
    l, what = int(m[1]), m[2]
    head_x = (index + 0.5) / d["n_head"]
    if what == "attn.hook_result":
        return (head_x, rows[f"attn{l}"]), ""
    if what.startswith("attn.hook_"):
        return (head_x, rows[f"attn{l}"] - 0.25), m[3]
    if what == "mlp.hook_out":
        return (0.5, rows[f"mlp{l}"]), ""
    if what == "hook_mlp_in":
        return (0.5, rows[f"mlp{l}"] - 0.25), "mlp"
    return (0.5, rows["vocab_out"] - 0.5), "out"


def draw_circuit(module: Any, circuit: Any, ax: Any) -> frozenset:
    """The right panel; returns the (layer, head) pairs the circuit uses (as sender or receiver)."""
    d = dims(module)
    rows = rows_of(d["n_layer"])
    used = set()
    for e in sorted(circuit.edges):
        (x0, y0), _ = _node_xy(e.sender, e.sender_index, d, rows)
        (x1, y1), role = _node_xy(e.receiver, e.receiver_index, d, rows)
        for hook, idx in ((e.sender, e.sender_index), (e.receiver, e.receiver_index)):
            if "attn" in hook:
                used.add((int(hook.split(".")[1]), idx))
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", color=ROLE_COLOURS[role], lw=1.2,
                                                           alpha=0.8, connectionstyle="arc3,rad=0.15"), zorder=1)
    for l in range(d["n_layer"]):
        for h in range(d["n_head"]):
            on = (l, h) in used
            ax.scatter([(h + 0.5) / d["n_head"]], [rows[f"attn{l}"]], s=160, zorder=2,
                       c=HEAD_TINTS[h % len(HEAD_TINTS)] if on else "white", edgecolors="k" if on else "#bbbbbb")
            ax.text((h + 0.5) / d["n_head"], rows[f"attn{l}"], f"{l}.{h}", ha="center", va="center", fontsize=6, zorder=3)
        ax.scatter([0.5], [rows[f"mlp{l}"]], s=220, marker="s", c="#dddddd", edgecolors="k", zorder=2)
    ax.scatter([0.5, 0.5], [rows["res0"] - 0.5, rows["vocab_out"] - 0.5], s=120, marker="D", c="k", zorder=2)
    for role, colour in ROLE_COLOURS.items():
        ax.plot([], [], color=colour, label={"out": "output", "mlp": "MLP in"}.get(role, role))
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    _label_rows(ax, rows)
    return frozenset(used)


def locality_caption(loc: Locality, n_drawn: int, min_weight: float) -> str:
    """The figure's footnote: the measured wiring length against random placements, and what is drawn."""
    return (f"{loc.summary()}.\nDrawn: the {n_drawn:,} weights with a = |w| / max|w| of their map >= {min_weight:g} "
            "(opacity and width by a\u00b2); L and, beside each map, L / E[L] count every weight, faint ones included.")


def bimt_transformer_figure(module: Any, circuit: Any = None, path: "str | Path | None" = None, *,
                            title: str = "", min_weight: float = 0.15, n_shuffles: int = 200, dpi: int = 150,
                            overwrite: bool = False) -> Figure:
    """Network (left) beside its circuit (right, if given), the measured wiring length under them
    (``locality.locality(module, n_shuffles)``, also on the returned figure as ``fig.locality``); saved to ``path``
    (.png/.svg/.pdf) atomically, never over an existing file unless ``overwrite``. ``circuit``: found on the
    module's bridge (SPEC 7 edges)."""
    target = None
    if path is not None:
        if Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use .png, .svg or .pdf")
        target = check_output_file(path, overwrite=overwrite)
    if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float)) or not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1), got {min_weight!r}")
    d = dims(module)
    loc = locality(module, n_shuffles)
    panels = 2 if circuit is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 + 4.0 * (panels - 1), 1.6 + 0.75 * (3 + 4 * d["n_layer"])),
                             squeeze=False, gridspec_kw={"width_ratios": [1.6, 1.0][:panels]})
    used = draw_circuit(module, circuit, axes[0, 1]) if circuit is not None else frozenset()
    n_drawn = draw_network(module, axes[0, 0], min_weight=min_weight, tint_heads=used, loc=loc)
    axes[0, 0].set_title(f"{title}network: |W| per map, neurons at SPEC 8 positions".strip(), fontsize=9)
    if circuit is not None:
        axes[0, 1].set_title(f"circuit: {circuit.n_edges} of {circuit.n_total_edges} edges", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.01, 0.01, locality_caption(loc, n_drawn, min_weight), fontsize=7, va="bottom", wrap=True)
    fig.locality = loc
    if target is not None:
        atomic_write(target, lambda tmp: fig.savefig(tmp, format=target.suffix.lstrip(".").lower(), dpi=dpi))
    return fig
