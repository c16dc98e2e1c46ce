"""The offline viewer at BIMT positions: a ``circuits.viz.Placement`` for a GPT-2- or Llama-style BIMT transformer.

``bimt_placement(module)`` puts every neuron on its row of the static figure (``drawing``: tokens, residual
stream, head dimensions, MLP neurons, ...) at its SPEC 8 coordinate, the weights as the backdrop's lines (the same
lines as ``bimt_transformer_figure``: strength a = |w| / max |w| of the map, a < ``min_weight`` left out), and the
circuit's units over them: the embedding between the tokens and the first residual row, head h of layer l at the
centre of its block on the heads row, each MLP at the centre of its row, the output under the output tokens.
A Llama module adds its key/value rows (``drawing``); under grouped-query attention the graph's key and value inputs
are nodes of a group (SPEC 7), placed on the group's key/value row, k at the left and v at the right quarter of the
group's stretch (as the figure's circuit panel).

    view = circuits.viz.circuit_graph(bridge, circuit, placement=bimt_placement(module))

``module`` is the plain ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (``TrainResult.module``,
``load(dir).module``), ``bridge`` the TransformerBridge the circuit was found on (``.bridge``): the placement
reads coordinates and weights off the module, the view reads the graph off the bridge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from circuits.viz.placement import Backdrop, Placement
from hooked_bimt.transformer.drawing import (drawn_maps, heads_per_group, kv_port_x, module_rows, row_coordinates,
                                             row_label)
from hooked_bimt.transformer.geometry import dims

DESCRIPTION = ("every residual dimension, head dimension, key/value dimension (Llama), MLP neuron and token at its "
               "SPEC 8 coordinate; a line per weight with |w| >= {min_weight:g} of its map's largest, opacity by "
               "|w| / max |w| (red positive, blue negative, grey: maps summed as |W|: GPT-2's q/k/v, Llama's k + v "
               "and gate + up)")


def backdrop(module: Any, min_weight: float = 0.15) -> tuple[Backdrop, dict[str, int]]:
    """The neurons (row by row, in ``rows_of`` order) and weights as a ``Backdrop``; and each row's first point."""
    if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float)) or not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1), got {min_weight!r}")
    rows = module_rows(module)
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
    rows, heads = module_rows(module), row_coordinates(module)
    out = {("embed.hook_out", 0): (0.5, rows["res0"] - 0.5),
           (f"blocks.{d['n_layer'] - 1}.hook_out", 0): (0.5, rows["vocab_out"] - 0.5)}
    for l in range(d["n_layer"]):
        x = heads[f"attn{l}"].reshape(d["n_head"], d["d_head"]).mean(1)  # the centre of each head's block
        out.update({(f"blocks.{l}.attn.hook_result", h): (float(x[h]), float(rows[f"attn{l}"]))
                    for h in range(d["n_head"])})
        out[(f"blocks.{l}.mlp.hook_out", 0)] = (0.5, float(rows[f"mlp{l}"]))
        if heads_per_group(d) > 1:
            out.update({(f"blocks.{l}.attn.hook_{r}_input", g): (kv_port_x(g, r, d["n_kv"]), float(rows[f"kv{l}"]))
                        for g in range(d["n_kv"]) for r in "kv"})
    return out


def bimt_placement(module: Any, min_weight: float = 0.15) -> Placement:
    """Where ``circuits.viz.circuit_graph`` draws a BIMT transformer's circuit (module docstring)."""
    d = dims(module)
    back, _ = backdrop(module, min_weight)
    rows = module_rows(module)
    return Placement(units=unit_positions(module), backdrop=back,
                     row_labels=[(float(y), row_label(name)) for name, y in rows.items()],
                     pixels_per_unit=(800.0, 64.0), unit_width=0.8 / d["n_head"])
