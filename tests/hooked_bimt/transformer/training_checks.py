"""The regime checks every architecture's training tests share (SPEC 2 read for SPEC 8)."""

from __future__ import annotations

from hooked_bimt.transformer import connection_cost


def assert_regimes_differ_as_spec_2_says(runs: dict, steps: int, swap_steps: list[int]) -> None:
    """``runs``: regime name -> TrainResult. vanilla has no cost term, l1* and bimt one per step; only l1_swap and
    bimt relocate (at ``swap_steps``, some swaps made); the local cost falls under l1_local and bimt, the plain
    (A = 0) cost under l1, against vanilla."""
    assert runs["vanilla"].history["cost"] == []
    for r in ("l1", "l1_local", "l1_swap", "bimt"):
        assert len(runs[r].history["cost"]) == steps
    for r in ("vanilla", "l1", "l1_local"):
        assert runs[r].history["swaps"] == []
    for r in ("l1_swap", "bimt"):
        assert [s for s, _ in runs[r].history["swaps"]] == swap_steps
        assert sum(n for _, n in runs[r].history["swaps"]) > 0
    local = {r: connection_cost(runs[r].module, 2.0).item() for r in runs}
    assert local["l1_local"] < local["vanilla"] and local["bimt"] < local["vanilla"]
    plain = {r: connection_cost(runs[r].module, 0.0).item() for r in runs}
    assert plain["l1"] < plain["vanilla"]
