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

A Llama-style module is drawn as ``drawing`` says: the head row holds the query dimensions (W_q signed), a
key/value row half-way below it the key/value groups' dimensions (|W_k| + |W_v|, grey), the MLP neurons are written
by |W_gate| + |W_up| (grey), RMSNorm weights folded in. Heads and key/value blocks are tinted by group, so the heads
sharing a group's keys and values share its colour. Under grouped-query attention the circuit's key and value
inputs are nodes of a group, not of a head (SPEC 7 on GQA): they sit on the key/value row, k at the left and v at
the right quarter of the group's stretch, and a group the circuit uses is outlined on the left.
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
from hooked_bimt.transformer.drawing import (drawn_maps, heads_per_group, kv_port_x, module_rows, row_coordinates,
                                             row_label, rows_of)  # noqa: F401 (rows_of: re-exported)
from hooked_bimt.transformer.geometry import dims
from hooked_bimt.transformer.locality import Locality, locality

ROLE_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#ff7f0e", "mlp": "#7f7f7f", "out": "#000000"}
HEAD_TINTS = ("#fde0dd", "#deebf7", "#e5f5e0", "#fff7bc", "#efedf5", "#fee6ce")


_RGB = np.array([[0.12, 0.47, 0.71], [0.3, 0.3, 0.3], [0.84, 0.15, 0.16]])  # by sign + 1: negative, q/k/v, positive


def network_lines(module: Any, min_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every drawn line, weakest first: segments ((x, row) -> (x, row)), strengths a and signs (+1, -1; 0 for the
    unsigned q/k/v map); weights with a < ``min_weight`` are left out."""
    rows = module_rows(module)
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


def _box(ax: Any, x: float, y: float, width: float, half: float, tint: int, strong: bool) -> None:
    ax.add_patch(plt.Rectangle((x, y - half), width, 2 * half, color=HEAD_TINTS[tint % len(HEAD_TINTS)],
                               alpha=1.0 if strong else 0.45, ec="#d62728" if strong else "none", lw=1.2, zorder=0))


def _tint(ax: Any, d: dict[str, int], rows: dict[str, float], heads: frozenset, groups: frozenset) -> None:
    """Each head's block tinted (Llama: by its key/value group, the group's block on the key/value row alike);
    ``heads``/``groups``: (layer, index) pairs outlined."""
    per = heads_per_group(d)
    for l in range(d["n_layer"]):
        for h in range(d["n_head"]):
            _box(ax, h / d["n_head"], rows[f"attn{l}"], 1 / d["n_head"], 0.28, h // per, (l, h) in heads)
            ax.text((h + 0.5) / d["n_head"], rows[f"attn{l}"] + 0.3, f"L{l}H{h}", ha="center", fontsize=6, zorder=3)
        for g in range(d["n_kv"] if f"kv{l}" in rows else 0):
            _box(ax, g / d["n_kv"], rows[f"kv{l}"], 1 / d["n_kv"], 0.16, g, (l, g) in groups)


def _beside(y: float, rows: dict[str, float]) -> float:
    """Height of a map's L / E[L]: half-way between its rows, moved up off a row label there (Llama's q map)."""
    return y + 0.2 if any(abs(y - r) < 0.1 for r in rows.values()) else y


def draw_network(module: Any, ax: Any, *, min_weight: float = 0.15, tint_heads: frozenset = frozenset(),
                 tint_groups: frozenset = frozenset(), loc: Optional[Locality] = None) -> int:
    """The left panel on ``ax``: a line per weight with a = |w| / max|w| of its map >= ``min_weight``, opacity a^2
    and width 0.2 + 1.8 a^2 (the strong weights stand out of thousands of faint ones), strongest on top;
    ``tint_heads``: (layer, head) pairs to outline (the circuit's heads; ``tint_groups``: its key/value groups);
    ``loc``: each map's L / E[L] written beside it. Returns the number of lines drawn."""
    d = dims(module)
    rows = module_rows(module)
    segs, a, sign = network_lines(module, min_weight)
    rgba = np.concatenate([_RGB[sign + 1], a[:, None] ** 2], 1)
    ax.add_collection(LineCollection(segs, linewidths=0.2 + 1.8 * a ** 2, colors=rgba, zorder=1))
    _tint(ax, d, rows, tint_heads, tint_groups)
    for name, x in row_coordinates(module).items():
        ax.scatter(x, np.full(len(x), rows[name]), s=min(6.0, 300 / len(x)), c="k", zorder=2, linewidths=0)
    if loc is not None:
        for m in drawn_maps(module):
            length, expected = loc.per_map.get(m.name, (0.0, 0.0))
            if expected > 0:
                ax.text(1.02, _beside((rows[m.sender_row] + rows[m.receiver_row]) / 2, rows),
                        f"L/E[L] {length / expected:.2f}", va="center", fontsize=6, color="#777")
    _label_rows(ax, rows)
    return len(segs)


def _label_rows(ax: Any, rows: dict[str, float]) -> None:
    for name, y in rows.items():
        ax.text(1.02, y, row_label(name), va="center", fontsize=7)
    ax.set_xlim(-0.02, 1.16)
    ax.set_ylim(-0.6, max(rows.values()) + 0.6)
    ax.axis("off")


_HOOK = re.compile(r"blocks\.(\d+)\.(attn\.hook_result|mlp\.hook_out|attn\.hook_([qkv])_input|hook_mlp_in|hook_out)$")


def _grouped(hook: str, d: dict[str, int]) -> bool:
    """A key or value input of a key/value group (grouped-query attention), not of one head."""
    return heads_per_group(d) > 1 and hook.endswith(("hook_k_input", "hook_v_input"))


def _node_xy(hook: str, index: int, d: dict[str, int], rows: dict[str, float]) -> tuple[tuple[float, float], str]:
    """(position, role) of a SPEC 7 node: role q/k/v/mlp/out for receivers, "" for senders; under grouped-query
    attention a group's key and value inputs sit on its key/value row (``kv_port_x``)."""
    if hook == "embed.hook_out":
        return (0.5, rows["res0"] - 0.5), ""
    m = _HOOK.match(hook)
    if m is None:
        raise ValueError(f"not a SPEC 7 hook of a GPT-2 or Llama bridge: {hook!r}")
    l, what = int(m[1]), m[2]
    head_x = (index + 0.5) / d["n_head"]
    if what == "attn.hook_result":
        return (head_x, rows[f"attn{l}"]), ""
    if _grouped(hook, d):
        return (kv_port_x(index, m[3], d["n_kv"]), rows[f"kv{l}"]), m[3]
    if what.startswith("attn.hook_"):
        return (head_x, rows[f"attn{l}"] - 0.25), m[3]
    if what == "mlp.hook_out":
        return (0.5, rows[f"mlp{l}"]), ""
    if what == "hook_mlp_in":
        return (0.5, rows[f"mlp{l}"] - 0.25), "mlp"
    return (0.5, rows["vocab_out"] - 0.5), "out"


def _circuit_units(ax: Any, d: dict[str, int], rows: dict[str, float], heads: set, groups: set) -> None:
    """The circuit panel's nodes: heads (tinted as on the left when used), grouped key/value inputs, MLPs, ends."""
    per = heads_per_group(d)
    for l in range(d["n_layer"]):
        for h in range(d["n_head"]):
            on = (l, h) in heads
            ax.scatter([(h + 0.5) / d["n_head"]], [rows[f"attn{l}"]], s=160, zorder=2,
                       c=HEAD_TINTS[h // per % len(HEAD_TINTS)] if on else "white", edgecolors="k" if on else "#bbbbbb")
            ax.text((h + 0.5) / d["n_head"], rows[f"attn{l}"], f"{l}.{h}", ha="center", va="center", fontsize=6,
                    zorder=3)
        for g, role in ((g, r) for g in range(d["n_kv"] if per > 1 else 0) for r in "kv"):
            on = (l, g) in groups
            ax.scatter([kv_port_x(g, role, d["n_kv"])], [rows[f"kv{l}"]], s=90, zorder=2, edgecolors=ROLE_COLOURS[role],
                       c=HEAD_TINTS[g % len(HEAD_TINTS)] if on else "white")
            ax.text(kv_port_x(g, role, d["n_kv"]), rows[f"kv{l}"], f"{role}{g}", ha="center", va="center", fontsize=5,
                    zorder=3)
        ax.scatter([0.5], [rows[f"mlp{l}"]], s=220, marker="s", c="#dddddd", edgecolors="k", zorder=2)
    ax.scatter([0.5, 0.5], [rows["res0"] - 0.5, rows["vocab_out"] - 0.5], s=120, marker="D", c="k", zorder=2)


def draw_circuit(module: Any, circuit: Any, ax: Any) -> tuple[frozenset, frozenset]:
    """The right panel; returns the (layer, head) pairs and the (layer, key/value group) pairs (grouped-query
    attention) the circuit uses (as sender or receiver)."""
    d = dims(module)
    rows = module_rows(module)
    heads, groups = set(), set()
    for e in sorted(circuit.edges):
        (x0, y0), _ = _node_xy(e.sender, e.sender_index, d, rows)
        (x1, y1), role = _node_xy(e.receiver, e.receiver_index, d, rows)
        for hook, idx in ((e.sender, e.sender_index), (e.receiver, e.receiver_index)):
            if "attn" in hook:
                (groups if _grouped(hook, d) else heads).add((int(hook.split(".")[1]), idx))
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", color=ROLE_COLOURS[role], lw=1.2,
                                                           alpha=0.8, connectionstyle="arc3,rad=0.15"), zorder=1)
    _circuit_units(ax, d, rows, heads, groups)
    for role, colour in ROLE_COLOURS.items():
        ax.plot([], [], color=colour, label={"out": "output", "mlp": "MLP in"}.get(role, role))
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    _label_rows(ax, rows)
    return frozenset(heads), frozenset(groups)


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
    heads, groups = draw_circuit(module, circuit, axes[0, 1]) if circuit is not None else (frozenset(), frozenset())
    n_drawn = draw_network(module, axes[0, 0], min_weight=min_weight, tint_heads=heads, tint_groups=groups, loc=loc)
    axes[0, 0].set_title(f"{title}network: |W| per map, neurons at SPEC 8 positions".strip(), fontsize=9)
    if circuit is not None:
        axes[0, 1].set_title(f"circuit: {circuit.n_edges} of {circuit.n_total_edges} edges", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.01, 0.01, locality_caption(loc, n_drawn, min_weight), fontsize=7, va="bottom", wrap=True)
    fig.locality = loc
    if target is not None:
        atomic_write(target, lambda tmp: fig.savefig(tmp, format=target.suffix.lstrip(".").lower(), dpi=dpi))
    return fig
