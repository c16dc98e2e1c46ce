"""What the circuit views draw: checked inputs, per-edge weights and effects, the input heat map.

Everything is read off the model and the circuit once, on the CPU in float64, so the HTML page and
the matplotlib figures show the same numbers whatever the model's device and dtype.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
from jaxtyping import Float

from circuits.circuit import Circuit
from circuits.graph import Edge, graph_of

WIDTH_BY = ("effect", "weight")


def check_model(model: Any) -> None:
    """A ``HookedMLP``-shaped model: ``widths``, ``linears``, ``coords(layer)``, ``n_layers``; else TypeError."""
    missing = [a for a in ("widths", "linears", "coords", "n_layers") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"{type(model).__name__} is not a HookedMLP-shaped model (missing {', '.join(missing)})")


def is_mlp_shaped(model: Any) -> bool:
    """Has ``widths``, ``linears``, ``coords`` and ``n_layers`` (what the neuron view draws)."""
    return all(hasattr(model, a) for a in ("widths", "linears", "coords", "n_layers"))


def check_circuit(model: Any, circuit: Any, check_model: bool = True) -> None:
    """The circuit belongs to this model (its graph and, unless ``check_model=False``, its fingerprint:
    ``Circuit.check_model``); ValueError naming the mismatch otherwise."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a circuits.Circuit, got {type(circuit).__name__}")
    try:
        circuit.check_model(model, graph_of(model), check_model=check_model)
    except ValueError as err:
        raise ValueError(f"the circuit does not belong to this model: {err}") from err


def check_width_by(width_by: str) -> str:
    if width_by not in WIDTH_BY:
        raise ValueError(f"unknown width_by {width_by!r}; expected one of {WIDTH_BY}")
    return width_by


def check_input_shape(model: Any, input_shape: Union[Sequence[int], str, None]) -> Optional[tuple[int, int]]:
    """``None`` or an ``(h, w)`` pair with ``h * w == widths[0]``; ``"auto"``: ``(s, s)`` if ``widths[0] == s * s``."""
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        if input_shape != "auto":
            raise ValueError(f"input_shape must be 'auto', None or (h, w), got {input_shape!r}")
        side = math.isqrt(model.widths[0])
        return (side, side) if side * side == model.widths[0] else None
    shape = tuple(input_shape)
    if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be None or two positive integers (h, w), got {input_shape!r}")
    if shape[0] * shape[1] != model.widths[0]:
        raise ValueError(f"input_shape {shape} has {shape[0] * shape[1]} pixels; the model's input has {model.widths[0]}")
    return shape  # type: ignore[return-value]


def check_output_labels(model: Any, output_labels: Optional[Sequence[Any]]) -> list[str]:
    """Output labels as strings, one per output neuron; default "0", "1", ..."""
    n = model.widths[-1]
    if output_labels is None:
        return [str(c) for c in range(n)]
    labels = [str(x) for x in output_labels]
    if len(labels) != n:
        raise ValueError(f"output_labels has {len(labels)} labels; the model has {n} outputs")
    return labels


def hook_layer(hook: str, n_layers: int) -> int:
    """Layer of neurons a hook name belongs to: ``hook_in`` 0, ``blocks.k.*`` k+1, ``hook_logits`` L."""
    if hook == "hook_in":
        return 0
    if hook == "hook_logits":
        return n_layers
    return int(hook.split(".")[1]) + 1


def weights(model: Any) -> list[np.ndarray]:
    """``W_l`` (out x in) of every linear layer, float64 numpy on the CPU."""
    return [lin.weight.detach().to("cpu").double().numpy() for lin in model.linears]


@dataclass(frozen=True)
class CircuitEdges:
    """The circuit's edges as arrays: layer of the sender, sender and receiver index, weight, effect.

    ``effect`` is NaN where the circuit records no effect size for the edge. Order: sorted ``Edge``s.
    """

    edges: list[Edge]
    layer: np.ndarray
    sender: np.ndarray
    receiver: np.ndarray
    weight: np.ndarray
    effect: np.ndarray

    def magnitude(self, width_by: str) -> Float[np.ndarray, " n_edges"]:
        """``|effect|`` (0 where unknown) or ``|weight|`` per edge."""
        v = self.effect if width_by == "effect" else self.weight
        return np.nan_to_num(np.abs(v), nan=0.0)


def circuit_edges(model: Any, circuit: Circuit) -> CircuitEdges:
    """Arrays describing ``circuit``'s edges with their weights ``W_l[j, i]`` and effects."""
    L = model.n_layers
    W = weights(model)
    edges = sorted(circuit.edges)
    layer = np.array([hook_layer(e.sender, L) for e in edges], dtype=np.int64)
    s = np.array([e.sender_index for e in edges], dtype=np.int64)
    r = np.array([e.receiver_index for e in edges], dtype=np.int64)
    w = np.array([W[l][j, i] for l, i, j in zip(layer, s, r)], dtype=np.float64)
    eff = np.array([circuit.effects.get(e, np.nan) for e in edges], dtype=np.float64)
    return CircuitEdges(edges, layer, s, r, w, eff)


def effective_width_by(circuit: Circuit, width_by: str) -> str:
    """``width_by``, except "effect" falls back to "weight" for a circuit that records no effect sizes."""
    return "weight" if width_by == "effect" and not circuit.effects else width_by


def input_heat(model: Any, ce: CircuitEdges, width_by: str) -> Float[np.ndarray, " d_in"]:
    """How much each input pixel feeds the circuit: ``heat[i] = sum over circuit edges i -> j of |v_ij|``,

    with ``v`` the weight or the effect size (``width_by``); 0 for pixels with no circuit edge.
    """
    heat = np.zeros(model.widths[0])
    first = ce.layer == 0
    np.add.at(heat, ce.sender[first], ce.magnitude(width_by)[first])
    return heat


def node_membership(model: Any, circuit: Circuit) -> list[np.ndarray]:
    """Per layer of neurons, a boolean mask: is the neuron touched by an edge of the circuit."""
    L = model.n_layers
    masks = [np.zeros(n, dtype=bool) for n in model.widths]
    for hook, idx in circuit.nodes():
        masks[hook_layer(hook, L)][idx] = True
    return masks


def quantize_weights(W: np.ndarray) -> dict[str, Any]:
    """A weight matrix as int8 ``q = round(127 * W / max|W|)``, base64 (row-major, out x in), and its scale.

    ``W ~= q * scale / 127``; enough for a faint background drawing at a tenth of the JSON size.
    """
    scale = float(np.abs(W).max()) or 1.0
    q = np.clip(np.round(W / scale * 127), -127, 127).astype(np.int8)
    return {"shape": list(W.shape), "scale": scale, "q": base64.b64encode(q.tobytes()).decode("ascii")}


def dequantize_weights(item: dict[str, Any]) -> np.ndarray:
    """Inverse of ``quantize_weights`` (up to rounding): ``q * scale / 127``."""
    q = np.frombuffer(base64.b64decode(item["q"]), dtype=np.int8).reshape(item["shape"])
    return q.astype(np.float64) * item["scale"] / 127
