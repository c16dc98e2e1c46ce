"""Which candidate states the fast attention engine scores together (``fast_attention``'s speculate and verify):
these choices cost time only, never change a decision (every accepted decision is scored at the exact state
the sequential loop reaches).

Prior guess of an edge's decision, before any of its states is scored: removed iff ``||c||^2 < tau``, ``c`` the
edge's contribution to the receiver node's input and ``tau`` the split of earlier decisions' sizes that
misclassifies fewest of them. The decisions come from this receiver hook once it has ``_OWN`` of them, else from
every hook of the same kind so far (the q inputs of all layers, the MLP inputs, ...); none yet: all removed.
Each guess carries a miss probability ``q``: the rule's error rate among the ``_NEAR`` earlier decisions nearest
in size (smoothed); a guess re-read from a state scored in an earlier pass (a state differing by one decision)
has ``q = RESCORED``; a zero contribution's decision is known (``q = 0``). Both are calibrated on the guesses
already checked (``observe``): a prior ``q`` is scaled by (misses + 1) / (sum of the ``q`` of those guesses + 1),
a re-read one is the smoothed miss rate of re-read guesses, from this receiver hook once it has ``_OWN`` checked
guesses of the kind, else from every hook of its kind. (The in-sample rule rate is optimistic where sizes say
little about decisions, as on early layers of a random model, where guesses miss about one time in four.)

Block length: the states ``1..k`` are all useful iff the guesses before each hold, so with pass cost
``overhead + k`` (in states) the block maximises ``E[accepted] / (overhead + k)``, where
``E[accepted] = sum_{j<=k} prod_{i<j} (1 - q_i)``. ``overhead`` starts at the engine's option and follows the
passes' measured times (``timed``): per receiver hook, a least-squares fit ``seconds = fixed + per_state * k`` once
the hook has ``_FIT`` timed passes of two lengths or more, else the last fit (a state of the last layer costs a
tenth of an early layer's, for about the same fixed cost). Timings change which states are scored, never a
decision.
"""

from __future__ import annotations

import bisect

_OWN = 8
_NEAR = 10
_FIT = 4
RESCORED = 0.05


class Guesser:
    """Decision history and the block rule of the module docstring; ``overhead``: a pass's fixed cost in states."""

    def __init__(self, overhead: float) -> None:
        self.overhead = overhead
        self.history: dict[str, list[tuple[float, bool]]] = {}
        self.hook: list[tuple[float, bool]] = []
        self.kind = ""
        # checked guesses, per source (prior, re-read): [count, misses, sum of q], this hook's and per kind
        self.checked: dict[str, dict[bool, list[float]]] = {}
        self.checked_hook: dict[bool, list[float]] = {}
        self.times: list[tuple[int, float]] = []  # this hook's passes: (states, seconds)

    def start(self, receiver: str) -> None:
        """A new receiver hook: its own history starts empty; its kind's history goes on."""
        self.kind = receiver.split(".", 2)[-1] if receiver.startswith("blocks.") else receiver
        self.hook = []
        self.checked_hook = {False: [0, 0, 0.0], True: [0, 0, 0.0]}
        self.times = []

    def timed(self, states: int, seconds: float) -> None:
        """A pass of ``states`` states took ``seconds``: refit ``overhead`` (module docstring)."""
        self.times.append((states, seconds))
        if len(self.times) < _FIT or len({k for k, _ in self.times}) < 2:
            return
        n = len(self.times)
        mk = sum(k for k, _ in self.times) / n
        mt = sum(t for _, t in self.times) / n
        per_state = sum((k - mk) * (t - mt) for k, t in self.times) / sum((k - mk) ** 2 for k, _ in self.times)
        fixed = mt - per_state * mk
        if per_state > 0:
            self.overhead = min(max(fixed / per_state, 0.1), 10.0)

    def remember(self, size: float, removed: bool) -> None:
        self.hook.append((size, removed))
        self.history.setdefault(self.kind, []).append((size, removed))

    def observe(self, q: float, missed: bool, rescored: bool) -> None:
        """A guess of miss probability ``q`` (re-read from an earlier pass or not) has been checked."""
        kind = self.checked.setdefault(self.kind, {False: [0, 0, 0.0], True: [0, 0, 0.0]})
        for counts in (self.checked_hook[rescored], kind[rescored]):
            counts[0] += 1
            counts[1] += missed
            counts[2] += q

    def _counts(self, rescored: bool) -> list[float]:
        own = self.checked_hook.get(rescored, [0, 0, 0.0])
        return own if own[0] >= _OWN else self.checked.get(self.kind, {}).get(rescored, own)

    def rescored(self) -> float:
        """The miss probability of a guess re-read from a state scored in an earlier pass."""
        n, misses, _ = self._counts(True)
        return (misses + RESCORED) / (n + 1)

    def prior(self, sizes: list[float]) -> tuple[list[bool], list[float]]:
        """Guessed decisions of candidates of contribution sizes ``sizes`` and their miss probabilities."""
        data = sorted(self.hook if len(self.hook) >= _OWN else self.history.get(self.kind, []))
        if not data:
            return [True] * len(sizes), [0.5] * len(sizes)
        tau = _split(data)
        keys = [s for s, _ in data]
        wrong = [(s < tau) != removed for s, removed in data]
        q = []
        for s in sizes:
            i = bisect.bisect_left(keys, s)
            window = wrong[max(0, i - _NEAR // 2): i + _NEAR // 2]
            q.append((sum(window) + 0.5) / (len(window) + 1))
        _, misses, expected = self._counts(False)
        scale = (misses + 1) / (expected + 1)
        return [s < tau for s in sizes], [min(0.95, x * scale) for x in q]

    def block(self, q: list[float], k_max: int) -> int:
        """The block length ``k <= k_max`` of the module docstring for miss probabilities ``q`` in order."""
        best, best_k, useful, alive = 0.0, 1, 0.0, 1.0
        for k in range(1, min(k_max, len(q)) + 1):
            useful += alive
            alive *= 1.0 - q[k - 1]
            rate = useful / (self.overhead + k)
            if rate > best:
                best, best_k = rate, k
        return best_k


def _split(data: list[tuple[float, bool]]) -> float:
    """``tau`` minimising the misclassified decisions of ``data`` (sorted by size) under "removed iff size < tau"."""
    errors = best = sum(1 for _, removed in data if removed)  # tau below every size: all guessed kept
    tau = data[0][0]
    for i, (size, removed) in enumerate(data):  # tau just above data[i]
        errors += -1 if removed else 1
        if errors < best:
            best, tau = errors, (size + data[i + 1][0]) / 2 if i + 1 < len(data) else float("inf")
    return tau
