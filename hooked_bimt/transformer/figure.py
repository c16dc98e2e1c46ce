"""The picture of a BIMT transformer: every neuron at its SPEC 8 position, the weights drawn, beside its circuit.

Left panel, bottom to top (the original notebook's figure, ``incontext_3.4``): input tokens, the residual stream
after the embedding, then per block the attention's head dimensions (q/k/v outputs = output-map inputs, head h a
contiguous block, tinted), the residual stream, the MLP neurons, the residual stream; last the output tokens.
Each row is one line of coordinates (x = (i + 1/2) / n), so a local network shows as short, near-vertical lines.
A line joins neurons i -> j of a penalised map with width and opacity by |W[j, i]| / max |W| of that map
(red positive, blue negative; the q/k/v map is drawn as |W_q| + |W_k| + |W_v|, grey; a map that reads a LayerNorm's
output is drawn times that norm's weight, the effective weight, as in the original plot); lines under ``min_weight``
of the map's maximum are left out. Right panel: the discovered circuit (SPEC 7 nodes: the embedding, each head at
the centre of its block, each MLP, the output) on the same rows, an edge coloured by what it feeds (query, key,
value, MLP or output); heads in the circuit are tinted on the left too.
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
from hooked_bimt.transformer.geometry import dims, penalised_maps

ROLE_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#ff7f0e", "mlp": "#7f7f7f", "out": "#000000"}
HEAD_TINTS = ("#fde0dd", "#deebf7", "#e5f5e0", "#fff7bc", "#efedf5", "#fee6ce")


def rows_of(n_layer: int) -> dict[str, int]:
    """Row index of every neuron line: ``vocab_in``, ``res0``, per block ``attn{l}``, ``mid{l}``, ``mlp{l}``,
    ``res{l+1}``, and ``vocab_out``."""
    rows = {"vocab_in": 0, "res0": 1}
    for l in range(n_layer):
        base = 1 + 4 * l
        rows.update({f"attn{l}": base + 1, f"mid{l}": base + 2, f"mlp{l}": base + 3, f"res{l + 1}": base + 4})
    rows["vocab_out"] = 2 + 4 * n_layer
    return rows


def _map_rows(n_layer: int) -> dict[str, tuple[str, str]]:
    """(sender row, receiver row) of every penalised map."""
    out = {"embed": ("vocab_in", "res0"), "unembed": (f"res{n_layer}", "vocab_out")}
    for l in range(n_layer):
        out.update({f"blocks.{l}.attn.qkv": (f"res{l}", f"attn{l}"), f"blocks.{l}.attn.out": (f"attn{l}", f"mid{l}"),
                    f"blocks.{l}.mlp.in": (f"mid{l}", f"mlp{l}"), f"blocks.{l}.mlp.out": (f"mlp{l}", f"res{l + 1}")})
    return out


def _reads_after_norm(module: Any, name: str) -> Any:
    """The LayerNorm whose output a map reads (q/k/v: ln_1, MLP in: ln_2, unembedding: ln_f), else None."""
    parts = name.split(".")
    if name == "unembed":
        return module.transformer.ln_f
    if name.endswith("attn.qkv") or name.endswith("mlp.in"):
        block = module.transformer.h[int(parts[1])]
        return block.ln_1 if parts[2] == "attn" else block.ln_2
    return None


def _weights(module: Any, m: Any, d_model: int) -> np.ndarray:
    """The map's weights as drawn: a map reading a LayerNorm's output times that norm's weight (the effective
    weight on the normalised stream, as the original notebook's plot), q/k/v as |W_q| + |W_k| + |W_v|."""
    w = m.out_in().detach().double()
    norm = _reads_after_norm(module, m.name)
    if norm is not None:
        w = w * norm.weight.detach().double()[None, :]
    w = w.cpu().numpy()
    if m.name.endswith("qkv"):
        return np.abs(w).reshape(3, d_model, -1).sum(0)
    return w


def draw_network(module: Any, ax: Any, *, min_weight: float = 0.15, tint_heads: frozenset = frozenset()) -> None:
    """The left panel on ``ax``; ``tint_heads``: (layer, head) pairs to tint strongly (e.g. the circuit's heads)."""
    d = dims(module)
    rows, map_rows = rows_of(d["n_layer"]), _map_rows(d["n_layer"])
    for m in penalised_maps(module):
        w = _weights(module, m, d["d_model"])
        scale = np.abs(w).max() or 1.0
        j, i = np.nonzero(np.abs(w) >= min_weight * scale)
        a = np.abs(w[j, i]) / scale
        y0, y1 = rows[map_rows[m.name][0]], rows[map_rows[m.name][1]]
        x_in, x_out = (i + 0.5) / w.shape[1], (j + 0.5) / w.shape[0]
        segs = np.stack([np.stack([x_in, np.full_like(x_in, y0)], 1), np.stack([x_out, np.full_like(x_out, y1)], 1)], 1)
        base = np.where(w[j, i] > 0, 0, 1) if not m.name.endswith("qkv") else np.full(len(j), 2)
        colours = np.array([[0.84, 0.15, 0.16, 0], [0.12, 0.47, 0.71, 0], [0.35, 0.35, 0.35, 0]])[base]
        colours[:, 3] = np.clip(0.15 + 0.85 * a, 0, 1)
        ax.add_collection(LineCollection(segs, linewidths=0.3 + 1.7 * a, colors=colours, zorder=1))
    for l in range(d["n_layer"]):
        for h in range(d["n_head"]):
            strong = (l, h) in tint_heads
            ax.add_patch(plt.Rectangle((h / d["n_head"], rows[f"attn{l}"] - 0.28), 1 / d["n_head"], 0.56,
                                       color=HEAD_TINTS[h % len(HEAD_TINTS)], alpha=1.0 if strong else 0.45,
                                       ec="#d62728" if strong else "none", lw=1.2, zorder=0))
            ax.text((h + 0.5) / d["n_head"], rows[f"attn{l}"] + 0.3, f"L{l}H{h}", ha="center", fontsize=6, zorder=3)
    sizes = {"vocab_in": d["d_vocab"], "vocab_out": d["d_vocab"]}
    for name, y in rows.items():
        n = sizes.get(name, d["d_mlp"] if name.startswith("mlp") else d["d_model"])
        ax.scatter((np.arange(n) + 0.5) / n, np.full(n, y), s=min(6.0, 300 / n), c="k", zorder=2, linewidths=0)
    _label_rows(ax, rows)


def _label_rows(ax: Any, rows: dict[str, int]) -> None:
    names = {"vocab_in": "tokens in", "vocab_out": "tokens out"}
    for name, y in rows.items():
        text = names.get(name) or re.sub(r"^(attn|mid|mlp|res)(\d+)$", lambda m: {
            "attn": f"heads {m[2]}", "mid": "residual", "mlp": f"MLP {m[2]}", "res": "residual"}[m[1]], name)
        ax.text(1.02, y, text, va="center", fontsize=7)
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


def bimt_transformer_figure(module: Any, circuit: Any = None, path: "str | Path | None" = None, *,
                            title: str = "", min_weight: float = 0.15, dpi: int = 150,
                            overwrite: bool = False) -> Figure:
    """Network (left) beside its circuit (right, if given); saved to ``path`` (.png/.svg/.pdf) atomically, never
    over an existing file unless ``overwrite``. ``circuit``: found on the module's bridge (SPEC 7 edges)."""
    target = None
    if path is not None:
        if Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use .png, .svg or .pdf")
        target = check_output_file(path, overwrite=overwrite)
    if not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1), got {min_weight!r}")
    d = dims(module)
    panels = 2 if circuit is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 + 4.0 * (panels - 1), 1.0 + 0.75 * (3 + 4 * d["n_layer"])),
                             squeeze=False, gridspec_kw={"width_ratios": [1.6, 1.0][:panels]})
    used = draw_circuit(module, circuit, axes[0, 1]) if circuit is not None else frozenset()
    draw_network(module, axes[0, 0], min_weight=min_weight, tint_heads=used)
    axes[0, 0].set_title(f"{title}network: |W| per map, neurons at SPEC 8 positions".strip(), fontsize=9)
    if circuit is not None:
        axes[0, 1].set_title(f"circuit: {circuit.n_edges} of {circuit.n_total_edges} edges", fontsize=9)
    fig.tight_layout()
    if target is not None:
        atomic_write(target, lambda tmp: fig.savefig(tmp, format=target.suffix.lstrip(".").lower(), dpi=dpi))
    return fig
