"""The offline viewer at BIMT positions: a ``circuits.viz.Placement`` for a GPT-2-style BIMT transformer.

``bimt_placement(module)`` puts every neuron on its row of the static figure (``drawing``: tokens, residual
stream, head dimensions, MLP neurons, ...) at its SPEC 8 coordinate, the weights as the backdrop's lines (the same
lines as ``bimt_transformer_figure``: strength a = |w| / max |w| of the map, a < ``min_weight`` left out), and the
circuit's units over them: the embedding between the tokens and the first residual row, head h of layer l at the
centre of its block on the heads row, each MLP at the centre of its row, the output under the output tokens.

    view = circuits.viz.circuit_graph(bridge, circuit, placement=bimt_placement(module))

``module`` is the plain ``GPT2LMHeadModel`` (``TrainResult.module``, ``load(dir).module``), ``bridge`` the
TransformerBridge the circuit was found on (``.bridge``): the placement reads coordinates and weights off the
module, the view reads the graph off the bridge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from circuits.viz.placement import Backdrop, Placement
from hooked_bimt.transformer.drawing import drawn_maps, row_coordinates, row_label, rows_of
from hooked_bimt.transformer.geometry import dims

DESCRIPTION = ("every residual dimension, head dimension, MLP neuron and token at its SPEC 8 coordinate; a line per "
               "weight with |w| >= {min_weight:g} of its map's largest, opacity by |w| / max |w| (red positive, blue "
               "negative, grey: q/k/v as |W_q| + |W_k| + |W_v|)")


def backdrop(module: Any, min_weight: float = 0.15) -> tuple[Backdrop, dict[str, int]]:
    """The neurons (row by row, in ``rows_of`` order) and weights as a ``Backdrop``; and each row's first point."""
    if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float)) or not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1), got {min_weight!r}")
    rows = rows_of(dims(module)["n_layer"])
    coords = row_coordinates(module)
    first, points = {}, []
    for name in sorted(rows, key=rows.get):
        first[name] = sum(len(p) for p in points)
        points.append(np.stack([coords[name], np.full(len(coords[name]), float(rows[name]))], 1))
    lines, strength, sign = [], [], []
    for m in drawn_maps(module):
        j, i, a, sg = m.visible(min_weight)
        lines.append(np.stack([first[m.sender_row] + i, first[m.receiver_row] + j], 1))
        strength.append(a)
        sign.append(sg)
    return Backdrop(np.concatenate(points), np.concatenate(lines), np.concatenate(strength), np.concatenate(sign),
                    DESCRIPTION.format(min_weight=min_weight)), first


def unit_positions(module: Any) -> dict[tuple[str, int], tuple[float, float]]:
    """(hook, index) -> (x, row) of every unit of the bridge's circuit graph (SPEC 7 nodes)."""
    d = dims(module)
    rows, heads = rows_of(d["n_layer"]), row_coordinates(module)
    out = {("embed.hook_out", 0): (0.5, rows["res0"] - 0.5),
           (f"blocks.{d['n_layer'] - 1}.hook_out", 0): (0.5, rows["vocab_out"] - 0.5)}
    for l in range(d["n_layer"]):
        x = heads[f"attn{l}"].reshape(d["n_head"], d["d_head"]).mean(1)  # the centre of each head's block
        out.update({(f"blocks.{l}.attn.hook_result", h): (float(x[h]), float(rows[f"attn{l}"]))
                    for h in range(d["n_head"])})
        out[(f"blocks.{l}.mlp.hook_out", 0)] = (0.5, float(rows[f"mlp{l}"]))
    return out


def bimt_placement(module: Any, min_weight: float = 0.15) -> Placement:
    """Where ``circuits.viz.circuit_graph`` draws a BIMT transformer's circuit (module docstring)."""
    d = dims(module)
    back, _ = backdrop(module, min_weight)
    rows = rows_of(d["n_layer"])
    return Placement(units=unit_positions(module), backdrop=back,
                     row_labels=[(float(y), row_label(name)) for name, y in rows.items()],
                     pixels_per_unit=(800.0, 64.0), unit_width=0.8 / d["n_head"])
