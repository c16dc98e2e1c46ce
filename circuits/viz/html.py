"""``circuit_graph``: the interactive, offline circuit view (SVG over a canvas of the full network).

The page embeds its data as JSON (``<script type="application/json" class="hb-data">``) and its
JavaScript and CSS inline (``circuits/viz/assets``); it requests nothing from anywhere.
"""

from __future__ import annotations

import json
import uuid
from importlib import resources
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from circuits.circuit import Circuit
from circuits.graph import graph_of
from circuits.hook_settings import keeps_hook_settings
from circuits.viz import data as vd
from circuits.viz import graph_view
from circuits.viz.layout import LAYOUTS, check_layout, node_layout
from circuits.viz.placement import Placement
from circuits.viz.render import OfflineHTML

_DATA_CLASS = "hb-data"


def _asset(name: str) -> str:
    return resources.files("circuits.viz").joinpath("assets", name).read_text(encoding="utf-8")


def _num(x: float) -> Optional[float]:
    return None if not np.isfinite(x) else float(f"{x:.6g}")


class CircuitGraph(OfflineHTML):
    """The circuit view: renders in Jupyter (``_repr_html_``), ``show_code()``, ``str()``, ``save(path)``.

    ``data`` is the dict embedded in the page (edges, weights, effects, positions, heat map).
    """

    def __init__(self, data: dict[str, Any], kind: str = "mlp") -> None:
        self.data = data
        self.kind = kind
        script, entry = ("circuit_graph.js", "hbCircuitGraph") if kind == "mlp" else ("graph_view.js", "hbGraphView")
        uid = "hb-circuit-" + uuid.uuid4().hex[:12]
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
        fragment = (
            f'<div class="hb-circuit" id="{uid}">\n<style>{_asset("circuit_graph.css")}</style>\n'
            f'<script type="application/json" class="{_DATA_CLASS}">{payload}</script>\n'
            f'<script>\n{_asset(script)}\n{entry}(document.getElementById("{uid}"));\n</script>\n</div>'
        )
        super().__init__(fragment, title=data["title"])

    @property
    def n_edges(self) -> int:
        return len(self.data["edges"]["s"])


def view_data(
    model: Any,
    circuit: Circuit,
    *,
    layout: str,
    width_by: str,
    background: bool,
    input_shape: Optional[tuple[int, int]],
    output_labels: list[str],
    title: str,
) -> dict[str, Any]:
    """The JSON-able description of the view (see ``CircuitGraph.data``)."""
    ce = vd.circuit_edges(model, circuit)
    has_effects = bool(circuit.effects)
    heat = {"weight": [_num(x) for x in vd.input_heat(model, ce, "weight")]}
    if has_effects:
        heat["effect"] = [_num(x) for x in vd.input_heat(model, ce, "effect")]
    W = vd.weights(model)
    return {
        "title": title,
        "widths": list(model.widths),
        "n_edges": circuit.n_edges,
        "n_total_edges": circuit.n_total_edges,
        "sparsity": circuit.sparsity,
        "layout": layout,
        "width_by": vd.effective_width_by(circuit, width_by),
        "has_effects": has_effects,
        "input_shape": list(input_shape) if input_shape is not None else None,
        "labels": output_labels,
        "layouts": {name: node_layout(model, name, input_shape).to_json() for name in LAYOUTS},
        "edges": {
            "layer": ce.layer.tolist(),
            "s": ce.sender.tolist(),
            "r": ce.receiver.tolist(),
            "w": [_num(x) for x in ce.weight],
            "e": [_num(x) for x in ce.effect],
        },
        "in_circuit": [m.astype(int).tolist() for m in vd.node_membership(model, circuit)],
        "bias": [[_num(x) for x in lin.bias.detach().to("cpu").double().numpy()] for lin in model.linears],
        "heat": heat,
        "background": [vd.quantize_weights(w) for w in W] if background else None,
    }


def _resolve(placement: Any, model: Any) -> Optional[Placement]:
    """A ``Placement`` as given, or what a callable returns for ``model`` (checked in ``graph_view``)."""
    if placement is None or isinstance(placement, Placement):
        return placement
    if not callable(placement):
        raise TypeError(f"placement must be a circuits.viz.Placement or a callable model -> Placement, "
                        f"got {type(placement).__name__}")
    return placement(model)


@keeps_hook_settings
def circuit_graph(
    model: Any,
    circuit: Circuit,
    *,
    layout: str = "bimt",
    width_by: str = "effect",
    background: bool = True,
    input_shape: Union[Sequence[int], str, None] = "auto",
    output_labels: Optional[Sequence[Any]] = None,
    title: Optional[str] = None,
    check_model: bool = True,
    placement: Union[Placement, Callable[[Any], Placement], None] = None,
) -> CircuitGraph:
    """An interactive, self-contained view of ``circuit`` on ``model``: any model with a circuit graph.

    A ``HookedMLP``-shaped model (``widths``, ``linears``, ``coords``, ``n_layers``) gets the neuron view:
    neurons at their BIMT coordinates (``layout="bimt"``) or in columns (``"layered"``); edges blue
    (positive) / red (negative) by the sign of the weight ``W_l[j, i]``, with width growing with
    |effect size| (``width_by="effect"``) or |weight| (``"weight"``). A circuit without effect sizes is
    drawn by weight. The full network is a faint canvas underneath (``background``); the input is a heat
    map ``heat[i] = sum_j |v_ij|`` over the pixel's circuit edges when ``input_shape`` is an ``(h, w)``
    pair; ``"auto"`` (default) is ``(s, s)`` when the input width is a square ``s * s``, else no image.

    Any other model (a TransformerLens bridge, the zoo's residual MLP and attention-only models, your
    own) gets the unit view of ``circuits.viz.graph_view``, built from ``circuits.graph_of(model)``:
    layers as rows, heads and MLPs (or neurons) as units, edges coloured by the input they feed (q, k,
    v, MLP in, output), width by |effect|, names and effect sizes on hover. ``layout``, ``width_by``,
    ``background``, ``input_shape`` and ``output_labels`` only apply to the neuron view.

    ``placement`` (unit view only): your own positions instead of rows, a ``circuits.viz.Placement`` or a
    callable ``model -> Placement``: a position per unit, and optionally a ``Backdrop`` of points and weighted
    lines (e.g. every neuron at a coordinate your training method gives it, and its weights) drawn faintly under
    the circuit, with a button to hide it. It is checked before anything is drawn (every unit placed once,
    finite numbers, line indices in range, strengths in [0, 1]); the page keeps your positions as given.

    Raises:
        ValueError: the circuit is not from this model (hook names, indices, total edge count; its graph
            signature or model fingerprint, unless ``check_model=False`` for a deliberate transfer), an
            unknown ``layout`` / ``width_by``, an ``input_shape`` or ``output_labels`` that does not fit.
        TypeError: ``model`` declares no circuit graph, ``circuit`` is not a ``Circuit``, ``placement`` is
            neither a ``Placement`` nor a callable returning one.
    """
    check_layout(layout)
    vd.check_width_by(width_by)
    if title is None:
        title = f"Circuit: {circuit.n_edges} of {circuit.n_total_edges} edges" if isinstance(circuit, Circuit) else ""
    if not vd.is_mlp_shaped(model):
        vd.check_circuit(model, circuit, check_model)
        placement = _resolve(placement, model)
        return CircuitGraph(graph_view.view_data(graph_of(model), circuit, str(title), placement), kind="graph")
    if placement is not None:
        raise ValueError("placement applies to the unit view; a HookedMLP-shaped model is drawn at its own neuron "
                         "coordinates (layout='bimt' or 'layered')")
    vd.check_circuit(model, circuit, check_model)
    shape = vd.check_input_shape(model, input_shape)
    labels = vd.check_output_labels(model, output_labels)
    return CircuitGraph(view_data(model, circuit, layout=layout, width_by=width_by, background=bool(background),
                                  input_shape=shape, output_labels=labels, title=str(title)))
