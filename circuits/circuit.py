"""``Circuit``: the result every discovery algorithm returns and every consumer reads.

A circuit is a set of edges of a model's graph (``circuits.graph``) plus how it was found: the
algorithm and its settings, the wall-clock time, the per-edge effect sizes, and the identity of the
model it belongs to. It round-trips through JSON (``save`` / ``load``), written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from circuits.graph import Edge, Graph
from circuits._io import atomic_write_json

FORMAT_VERSION = 1


def model_identity(model: torch.nn.Module) -> dict[str, Any]:
    """Class, architecture and a fingerprint of the parameters, so a circuit knows its model."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    ident: dict[str, Any] = {"class": type(model).__name__, "fingerprint": h.hexdigest()[:16]}
    if hasattr(model, "widths"):
        ident["widths"] = list(model.widths)
    return ident


@dataclass(frozen=True)
class Circuit:
    """A set of edges of a model's graph, with how it was found.

    ``sparsity`` is ``1 - n_edges / n_total_edges``; ``effects`` maps each tested edge to the change
    in the metric its removal caused when it was tested (ACDC), or to its score (attribution).
    """

    edges: frozenset[Edge]
    n_total_edges: int
    seconds: float = 0.0
    effects: dict[Edge, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", frozenset(self.edges))
        if len(self.edges) > self.n_total_edges:
            raise ValueError(f"a circuit of {len(self.edges)} edges cannot come from a graph of {self.n_total_edges}")

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n_edges / self.n_total_edges if self.n_total_edges else 0.0

    def __contains__(self, edge: object) -> bool:
        return edge in self.edges

    def __len__(self) -> int:
        return len(self.edges)

    def nodes(self) -> set[tuple[str, int]]:
        """(hook, index) of every node an edge of the circuit touches."""
        return {(e.sender, e.sender_index) for e in self.edges} | {(e.receiver, e.receiver_index) for e in self.edges}

    @classmethod
    def full(cls, graph: Graph, **kwargs: Any) -> "Circuit":
        return cls(edges=frozenset(graph.edges()), n_total_edges=graph.n_edges, **kwargs)

    @classmethod
    def empty(cls, graph: Graph, **kwargs: Any) -> "Circuit":
        return cls(edges=frozenset(), n_total_edges=graph.n_edges, **kwargs)

    @classmethod
    def from_edges(cls, graph: Graph, edges: Iterable[Edge], **kwargs: Any) -> "Circuit":
        edges = frozenset(edges)
        for e in edges:
            graph.check_edge(e)
        return cls(edges=edges, n_total_edges=graph.n_edges, **kwargs)

    def check_against(self, graph: Graph) -> None:
        """Raise ``ValueError`` if the circuit was not made for a model with this graph."""
        if self.n_total_edges != graph.n_edges:
            raise ValueError(
                f"this circuit comes from a graph of {self.n_total_edges} edges; the model's has {graph.n_edges}"
            )
        for e in self.edges:
            graph.check_edge(e)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "hooked-bimt-circuit",
            "version": FORMAT_VERSION,
            "n_total_edges": self.n_total_edges,
            "seconds": self.seconds,
            "settings": self.settings,
            "model": self.model,
            "edges": [e.to_list() for e in sorted(self.edges)],
            "effects": [[*e.to_list(), v] for e, v in sorted(self.effects.items())],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Circuit":
        if d.get("format") != "hooked-bimt-circuit":
            raise ValueError("not a hooked-bimt circuit file (missing 'format': 'hooked-bimt-circuit')")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"circuit file version {d.get('version')} is not supported (expected {FORMAT_VERSION})")
        return cls(
            edges=frozenset(Edge.from_list(e) for e in d["edges"]),
            n_total_edges=int(d["n_total_edges"]),
            seconds=float(d.get("seconds", 0.0)),
            effects={Edge.from_list(item[:4]): float(item[4]) for item in d.get("effects", [])},
            settings=dict(d.get("settings", {})),
            model=dict(d.get("model", {})),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Circuit":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"circuit file {path} is not valid JSON: {err}") from err
        return cls.from_dict(d)
