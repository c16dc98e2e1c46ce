"""How the fast engines run: options as data, ``circuits.acdc(..., options=Options(...))``, never module globals.

None of these changes a circuit: every path reaches the reference's decisions (SPEC 4); they choose which path
runs and how candidate states are grouped, so they change time only. Tests and benchmarks pass them.

The paths (``Circuit.settings["path"]`` names the one that ran), kept by ``benchmarks/RESULTS.md``'s numbers:

* ``reference``: one patched forward pass per tested edge; any graph (the fast engines' yardstick).
* ``mlp.compiled``: ACDC's own sequential loop, compiled (KL in float64 on an MLP chain whose nonlinearities
  the loop knows): 0.61 s vs 1.04 s for speculation on the dense MNIST circuit (same circuit, 199 vs 459 passes).
* ``mlp.speculative``: speculate and verify, for what the compiled loop does not cover (other metrics, float32
  discovery, other nonlinearities): needed for coverage, 80x+ the reference there.
* ``attention.delta``: bridges whose weights ``attention.blocks`` reads: only what changes is recomputed
  (16-31x the reference on the 4-layer GPT-2 bridge, median 24x).
* ``attention.stacked``: other bridges: candidate states stacked on the batch of bridge forwards, copied at the
  receiver's block where a probe shows that is exact (else stacked at the input: ``attention.stacked-input``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

STRICT_ENV = "CIRCUITS_STRICT"  # "1": a fallback from a fast path is an error (the test suite sets it)


def _strict_default() -> bool:
    return os.environ.get(STRICT_ENV, "") == "1"


@dataclass(frozen=True)
class MLPOptions:
    """The MLP engine (``circuits.acdc.mlp``). ``compiled``: ACDC's loop compiled where it applies (else always
    speculation); the rest tune speculation: ``block`` most states per verification pass, next block ``grow`` x
    the last run of correct guesses (at least ``min_block``); ``predict``: guesses from a per-example polynomial
    of degree ``degree`` for receivers with more than ``min_model`` candidates; ``pairs``: score only the
    (state, example) pairs a candidate moves when they are at most ``pairs_max`` of all. (The last hop is always
    ``sub @ d_act^T``: its switch measured within noise, 2.67 s vs 2.72 s, and was dropped.)"""

    compiled: bool = True
    block: int = 192
    grow: float = 2.0
    min_block: int = 8
    predict: bool = True
    degree: int = 6
    min_model: int = 8
    pairs: bool = True
    pairs_max: float = 0.75


@dataclass(frozen=True)
class AttentionOptions:
    """The attention engine (``circuits.acdc.attention``). ``delta``: the delta path where the blocks read the
    bridge (else stacked forwards); ``state_elements`` bounds one stacked receiver activation; ``max_block`` most
    states per pass; a pass's fixed cost in states (``*_overhead``, measured on the 4-layer bridge) steers the
    block length; ``guesser``: a factory ``overhead -> Guesser`` (default ``speculate.Guesser``)."""

    delta: bool = True
    state_elements: int = 1 << 23
    max_block: int = 64
    delta_overhead: float = 0.75
    stacked_overhead: float = 4.0
    guesser: Optional[Callable[[float], Any]] = None


@dataclass(frozen=True)
class Options:
    """All engine options. ``strict``: a fast path that cannot be used (e.g. functional blocks that do not
    reproduce the bridge) raises instead of warning and running a slower path (default: ``$CIRCUITS_STRICT``)."""

    mlp: MLPOptions = field(default_factory=MLPOptions)
    attention: AttentionOptions = field(default_factory=AttentionOptions)
    strict: bool = field(default_factory=_strict_default)


def check_options(options: Any) -> Options:
    if options is None:
        return Options()
    if not isinstance(options, Options):
        raise TypeError(f"options must be circuits.acdc.options.Options, got {type(options).__name__}")
    return options
