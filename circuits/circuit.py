"""``Circuit``: the result every discovery algorithm returns and every consumer reads.

A circuit is a set of edges of a model's graph (``circuits.graph``) plus how it was found: the
algorithm and its settings, the wall-clock time, the per-edge effect sizes, and the identity of the
model it belongs to. It round-trips through JSON (``save`` / ``load``), written atomically; ``save``
refuses to replace an existing file unless ``overwrite=True``.

The JSON carries ``sha256``, the SHA-256 of its own content (``circuits.validate.content_sha256``: every
other key, serialised with sorted keys); ``load`` refuses a file whose content no longer matches it.
Files written before the hash existed (no ``sha256``) load with a ``UserWarning`` saying to re-save them.
"""

from __future__ import annotations

import hashlib
import html
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from circuits._io import atomic_write_json
from circuits.graph import Edge, Graph, graph_of
from circuits.validate import check_circuit_dict, check_output_file, content_sha256

FORMAT_VERSION = 1


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) of the state dict, names and values (in float64, so a float32 model and its
    exact float64 copy share it). Any change of a parameter or buffer (fine-tuning, neuron swaps) changes it."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(model: torch.nn.Module) -> dict[str, Any]:
    """Class, architecture, a fingerprint of the parameters and the graph's signature, so a circuit knows
    its model (``Circuit.check_model`` compares them)."""
    ident: dict[str, Any] = {"class": type(model).__name__, "fingerprint": model_fingerprint(model)}
    if hasattr(model, "widths"):
        ident["widths"] = list(model.widths)
    if hasattr(model, "circuit_graph"):
        ident["graph"] = graph_of(model).signature()
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

    def __repr__(self) -> str:
        """One short line: edges, sparsity, algorithm and model (never the edge list)."""
        algo = self.settings.get("algorithm", "?")
        model = self.model.get("class", "?")
        if "widths" in self.model:
            model += "(" + "-".join(str(w) for w in self.model["widths"]) + ")"
        return (f"Circuit({self.n_edges}/{self.n_total_edges} edges, sparsity {self.sparsity:.3f}, "
                f"algorithm={algo}, model={model}, {self.seconds:.2f} s)")

    def _repr_html_(self) -> str:
        """A small summary table for notebooks."""
        rows = [("edges", f"{self.n_edges} of {self.n_total_edges}"), ("sparsity", f"{self.sparsity:.4f}"),
                ("nodes", str(len(self.nodes()))), ("algorithm", str(self.settings.get("algorithm", "?"))),
                ("settings", ", ".join(f"{k}={v}" for k, v in self.settings.items() if k != "algorithm")),
                ("model", ", ".join(f"{k}={v}" for k, v in self.model.items())), ("seconds", f"{self.seconds:.3f}")]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>Circuit</caption>{body}</table>"

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

    def check_model(self, model: Any, graph: Graph, *, check_model: bool = True) -> None:
        """Refuse (``ValueError`` naming both sides) a model this circuit was not found on.

        Always: every edge must be an edge of ``graph``. With ``check_model`` (the default), the graph's
        ``signature()`` and the model's fingerprint must equal those stored in ``self.model`` when stored
        (a circuit built by hand, e.g. ``Circuit.from_edges``, stores none). ``check_model=False`` is for a
        deliberate transfer, such as a circuit found before fine-tuning applied to the fine-tuned model.
        """
        cls = self.model.get("class", "?")
        hint = "pass check_model=False to apply it deliberately to another model (e.g. a fine-tuned one)"
        stored_graph = self.model.get("graph")
        if check_model and stored_graph is not None and stored_graph != graph.signature():
            raise ValueError(f"this circuit was found on a {cls} whose graph has signature {stored_graph}; this "
                             f"{type(model).__name__}'s graph has signature {graph.signature()}: {hint}")
        self.check_against(graph)
        stored_fp = self.model.get("fingerprint")
        if check_model and stored_fp is not None:
            fp = model_fingerprint(model)
            if fp != stored_fp:
                raise ValueError(f"this circuit was found on a {cls} with fingerprint {stored_fp}; this "
                                 f"{type(model).__name__} has fingerprint {fp} (its parameters differ): {hint}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": "hooked-bimt-circuit",
            "version": FORMAT_VERSION,
            "n_total_edges": self.n_total_edges,
            "seconds": self.seconds,
            "settings": self.settings,
            "model": self.model,
            "edges": [e.to_list() for e in sorted(self.edges)],
            "effects": [[*e.to_list(), v] for e, v in sorted(self.effects.items())],
        }
        return {**d, "sha256": content_sha256(d)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "circuit data") -> "Circuit":
        """Inverse of ``to_dict``; every structural problem or a content-hash mismatch is a ``ValueError``
        naming ``source``."""
        check_circuit_dict(d, source)
        if "sha256" not in d:
            warnings.warn(f"{source} was saved before circuits carried a content hash (no 'sha256'); its integrity "
                          "cannot be checked: re-save it with Circuit.save", UserWarning, stacklevel=3)
        elif d["sha256"] != content_sha256(d):
            raise ValueError(f"{source} does not match its recorded SHA-256: the file was modified after saving; "
                             "restore it or rediscover the circuit")
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

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the JSON atomically; an existing ``path`` is refused (``FileExistsError``) unless ``overwrite``."""
        return atomic_write_json(check_output_file(path, overwrite=overwrite), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Circuit":
        """Read a file written by ``save``; a missing, non-JSON, malformed or modified file is refused by name."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"circuit file {path} not found")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"circuit file {path} is not UTF-8 text (a binary file?): {err}") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"circuit file {path} is not valid JSON: {err}") from err
        return cls.from_dict(d, source=f"circuit file {path}")
