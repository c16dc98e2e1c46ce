"""TransformerLens's own edge attribution in ``circuits``' names and sign (SPEC 7, docs/transformers.md).

``transformer_lens.tools.analysis.attribution_patching.attribution_patch(bridge, clean, corrupt, metric,
EdgeAttributionConfig(granularity="edge"))`` scores edges between typed ``Node(kind, layer, position, head)``
objects, one per position. ``from_tl_attribution`` turns its ``edge_scores`` into ``{Edge: score}`` of
``circuits.graph_of(bridge)``: summed over positions and negated (our scores are positive when removing the
edge raises the metric), so with the gradient at the corrupted run it equals
``circuits.eap(bridge, clean, corrupted, metric, point="corrupted")``.
"""

from __future__ import annotations

from typing import Any, Mapping

from circuits.graph import Edge, graph_of
from circuits.models.transformer_bridge import INPUT, mlp_in_hook, mlp_out_hook, output_hook, qkv_hook, result_hook


def tl_endpoint(node: Any, n_layers: int) -> tuple[str, int]:
    """A TransformerLens attribution ``Node`` -> ``(hook, node index)`` of SPEC 7 (its position dropped)."""
    kind = getattr(node, "kind", None)
    if kind == "embed":
        return INPUT, 0
    if kind == "attn_head_out":
        return result_hook(node.layer), node.head
    if kind in ("q_input", "k_input", "v_input"):
        return qkv_hook(node.layer, kind[0]), node.head
    if kind == "mlp_out":
        return mlp_out_hook(node.layer), 0
    if kind == "mlp_in":
        return mlp_in_hook(node.layer), 0
    if kind == "logits":
        return output_hook(n_layers), 0
    raise ValueError(f"not a TransformerLens attribution node this mapping knows: {node!r} (kind {kind!r})")


def from_tl_attribution(result: Any, bridge: Any) -> dict[Edge, float]:
    """``{Edge: score}`` from TransformerLens's edge attribution of ``bridge`` (module docstring).

    Args:
        result: an ``AttributionResult`` of ``granularity="edge"`` or its ``edge_scores`` mapping.
        bridge: the model it was computed on (its graph names the edges and checks them).

    Raises:
        ValueError: no edge scores, or an edge that ``circuits.graph_of(bridge)`` does not have (named).
    """
    scores = getattr(result, "edge_scores", result)
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("from_tl_attribution needs TransformerLens edge scores: attribution_patch(..., "
                         "EdgeAttributionConfig(granularity='edge')) or its .edge_scores; got none")
    graph = graph_of(bridge)
    n_layers = int(bridge.cfg.n_layers)
    known = set(graph.edges())
    out: dict[Edge, float] = {}
    for (writer, reader), score in scores.items():
        edge = Edge(*tl_endpoint(writer, n_layers), *tl_endpoint(reader, n_layers))
        if edge not in known:
            raise ValueError(f"TransformerLens edge {writer!r} -> {reader!r} maps to {edge}, which the bridge's "
                             "circuit graph does not have (another model's scores?)")
        out[edge] = out.get(edge, 0.0) - float(score)
    return {e: out[e] for e in graph.edges() if e in out}
