"""The speculate-and-verify step (``circuits.acdc.attention.node``): what the next guesses read after a wrong guess."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.acdc.attention.node import _premised


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10, allow_nan=False), st.booleans()), min_size=1, max_size=12),
       st.floats(-10, 10, allow_nan=False))
def test_premised_effect_is_against_the_last_state_guessed_removed(chain, current):
    """State ``j``'s effect in the chain a pass was built on: its score minus the score of the latest earlier state
    guessed removed (that state is the chain's circuit before ``j``), or minus ``current`` when there is none."""
    scores = [s for s, _ in chain]
    guess = [g for _, g in chain]
    got = _premised(scores, guess, current)
    for j, score in enumerate(scores):
        before = [i for i in range(j) if guess[i]]
        base = scores[before[-1]] if before else current
        assert got[j] == score - base


def test_premised_effect_drops_the_missed_edges_own_effect():
    """An additive toy metric (each removed edge adds its effect): after edge 0 is wrongly guessed removed, the
    state of edge 1 scored in that pass carries edge 0's effect; the premised effect is edge 1's own."""
    effects = [5.0, 0.25, 3.0]  # edge 0 is kept in truth (5 >= threshold 1)
    current = 2.0
    guess = [True, True, False]
    scores, chain = [], current
    for e, g in zip(effects, guess):
        scores.append(chain + e)
        if g:
            chain += e
    got = _premised(scores, guess, current)
    assert got == effects  # against the true current, edge 1 would read 5.25 and be guessed kept
