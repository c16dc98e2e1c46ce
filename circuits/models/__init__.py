"""Graphs for model families that do not declare ``circuit_graph()`` themselves.

Importing a family module registers its builder with ``circuits.graph.graph_of``:
``transformer_bridge`` (TransformerLens 4 ``TransformerBridge``, SPEC 7).
"""

from circuits.models import transformer_bridge  # noqa: F401  (registers the bridge graph builder)
