"""Model families that cannot declare ``circuit_graph()`` themselves register here (e.g. TransformerLens bridges,
``circuits.models.transformer_bridge``): how to recognise one, build its graph, check its inputs, explain a
declaration error on the graph built for it, and (optionally) which fast ACDC engine decides its graphs.

The core (``graph``, ``patching``, ``protocol_check``, ``acdc``) asks this registry and never imports a family:
layers go one way, families -> core. The shipped families (``circuits.models``) register themselves when this
registry is first asked for one (``family_of``, ``named``): the package itself loads lazily.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional


def _no_check(model: Any, clean: Any, corrupted: Any) -> None:
    """Nothing beyond the core's own input checks."""


@dataclass(frozen=True)
class Family:
    """``recognise(model)``; ``build_graph(model) -> Graph``; ``check_inputs(model, clean, corrupted)`` raises on
    inputs the family cannot patch (before any work); ``explain(model)`` is appended to a declaration error on a
    graph it built; ``prepare(model)`` turns on what running one of its graphs needs (a bridge's gated hooks: the
    public functions turn them back on the way out); ``after_copy(copy)`` repairs a deep copy of one of its models
    (``acdc``'s upcast working copy) whose copied state still points at the original; ``acdc_engine``: ``"module:Class"`` of its fast ACDC engine (a ``loop.Decider`` built from a
    ``loop.Problem``), imported when first used."""

    name: str
    recognise: Callable[[Any], bool]
    build_graph: Callable[[Any], Any]
    check_inputs: Callable[[Any, Any, Any], None] = _no_check
    explain: Optional[Callable[[Any], str]] = None
    prepare: Optional[Callable[[Any], None]] = None
    after_copy: Optional[Callable[[Any], None]] = None
    acdc_engine: Optional[str] = None


_FAMILIES: list[Family] = []
_SHIPPED = "circuits.models"  # imported (by name: it imports this module) before the first look-up


def _shipped_registered() -> None:
    if _SHIPPED not in sys.modules:
        importlib.import_module(_SHIPPED)


def register(family: Family) -> None:
    """Make ``graph_of`` and the checks use ``family`` for models it recognises (a re-registration replaces)."""
    if not isinstance(family, Family):
        raise TypeError(f"register() takes a circuits.families.Family, got {type(family).__name__}")
    _FAMILIES[:] = [f for f in _FAMILIES if f.name != family.name] + [family]


def family_of(model: Any) -> Optional[Family]:
    """The registered family that recognises ``model`` (the first registered), or None."""
    _shipped_registered()
    return next((f for f in _FAMILIES if f.recognise(model)), None)


def named(name: Optional[str]) -> Optional[Family]:
    """The registered family called ``name`` (``Graph.family`` of a graph it built), or None."""
    _shipped_registered()
    return next((f for f in _FAMILIES if f.name == name), None) if name is not None else None


def engine_class(family: Family) -> Optional[type]:
    """The family's fast ACDC engine class (``Family.acdc_engine``), imported on first use."""
    if family.acdc_engine is None:
        return None
    module, _, cls = family.acdc_engine.partition(":")
    return getattr(importlib.import_module(module), cls)
