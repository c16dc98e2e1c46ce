"""How local a BIMT transformer's wiring is: the strength-weighted mean length of its lines, against the same
weights at random positions (the number printed in ``bimt_transformer_figure``).

Over every weight of every penalised map as drawn (``drawing.drawn_maps``: effective weights, q/k/v folded; Llama:
q, k + v on the key/value row, gate + up, each at ``llama``'s coordinates),
with a = |w| / max |w| of its map (the line's strength in the figure, faint weights included) and
d = |x_out[j] - x_in[i]| (the horizontal length; the layer gap is the same for every line of a map):

    L = sum a * d / sum a

Random placement: every set of neurons BIMT can move is placed by an independent, uniformly random permutation of
the moves relocate can make (the residual stream, shared by every layer; each layer's MLP neurons; each layer's
heads, as whole d_head blocks; Llama: each layer's key/value groups, their query heads moving with them, then the
heads within each group, so a head still lands on any head's block with equal chance); tokens keep their places. No
map joins a set to itself (none joins a key/value row to its heads), so the expectation is exact:

    E[L] = sum a * E[d] / sum a,   E[d_ji] = mean over p ~ j, q ~ i of |x_out[p] - x_in[q]|

(p ~ j: the positions neuron j can be moved to). ``n_shuffles`` seeded random placements give the spread.

L is a property of the function *and* its layout: a function-preserving swap is a re-placement of the same weights,
so L after ``swap_residual``/``swap_mlp_neurons``/``swap_heads``/``swap_kv_groups`` is the L of the weights before
it with the swapped neurons' positions exchanged, and E[L] does not change at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hooked_bimt.transformer.drawing import DrawnMap, drawn_maps
from hooked_bimt.transformer.geometry import dims


def set_of(row: str) -> Optional[str]:
    """Which movable set a row's neurons belong to: "res", "heads{l}", "kv{l}", "mlp{l}", or None (tokens)."""
    if row.startswith("vocab"):
        return None
    if row.startswith(("res", "mid")):
        return "res"
    return f"heads{row[4:]}" if row.startswith("attn") else row


def orbit_mean(n: int, kind: Optional[str], d_head: int) -> np.ndarray:
    """(n x n) averaging matrix P: P[j, p] = 1 / |orbit of j| for the positions p neuron j can be moved to."""
    if kind is None:
        return np.eye(n)
    if not kind.startswith(("heads", "kv")):
        return np.full((n, n), 1.0 / n)
    t = np.arange(n) % d_head  # a head's dimension t can only land on dimension t of another head
    return (t[:, None] == t[None, :]) / (n // d_head)


def _expected_lengths(m: DrawnMap, d_head: int) -> np.ndarray:
    """E[d_ji] under random placement (module docstring)."""
    p_out = orbit_mean(len(m.x_out), set_of(m.receiver_row), d_head)
    p_in = orbit_mean(len(m.x_in), set_of(m.sender_row), d_head)
    return p_out @ m.lengths() @ p_in.T


@dataclass(frozen=True)
class Locality:
    """``length`` (L), ``expected_random`` (E[L]), ``shuffled`` (L of each seeded random placement) and per map
    ``(L, E[L])``; ``n_weights``: how many weights were counted (folded q/k/v: one per head dimension)."""

    length: float
    expected_random: float
    shuffled: np.ndarray
    n_weights: int
    per_map: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """L / E[L]: 1 is no locality; the shorter, the more local."""
        return self.length / self.expected_random

    @property
    def fraction_shorter(self) -> float:
        """Fraction of the random placements whose wiring is as short as the model's or shorter."""
        return float(np.mean(self.shuffled <= self.length)) if len(self.shuffled) else float("nan")

    def summary(self) -> str:
        """One line for a figure: L, E[L], the ratio and the shuffles' range."""
        text = (f"wiring length L = {self.length:.3f} (|W|-weighted mean |\u0394x|, all {self.n_weights:,} weights); "
                f"same weights placed at random: {self.expected_random:.3f}; ratio {self.ratio:.2f}")
        if len(self.shuffled):
            text += (f"; {len(self.shuffled)} random placements {self.shuffled.min():.3f}-{self.shuffled.max():.3f}, "
                     f"{int(round(self.fraction_shorter * len(self.shuffled)))} as short")
        return text


def _blocks(block_place: np.ndarray, size: int) -> np.ndarray:
    """Position of each dimension when block b (``size`` dimensions, in order) goes to block ``block_place[b]``."""
    t = np.arange(len(block_place) * size)
    return block_place[t // size] * size + t % size


def _placement(d: dict[str, int], rng: np.random.Generator) -> dict[Optional[str], np.ndarray]:
    """One random placement: set -> position of each neuron (Llama: groups, then heads within each group)."""
    place: dict[Optional[str], np.ndarray] = {"res": rng.permutation(d["d_model"])}
    for l in range(d["n_layer"]):
        place[f"mlp{l}"] = rng.permutation(d["d_mlp"])
        if "n_kv" not in d:
            place[f"heads{l}"] = _blocks(rng.permutation(d["n_head"]), d["d_head"])
            continue
        per = d["n_head"] // d["n_kv"]
        groups = rng.permutation(d["n_kv"])
        within = np.concatenate([rng.permutation(per) for _ in range(d["n_kv"])])
        place[f"kv{l}"] = _blocks(groups, d["d_head"])
        place[f"heads{l}"] = _blocks(np.repeat(groups, per) * per + within, d["d_head"])
    return place


def _shuffled_length(maps: list[DrawnMap], a: list[np.ndarray], place: dict[Optional[str], np.ndarray]) -> float:
    """sum a * d / sum a with neuron j of each moved set at position ``place[set][j]``."""
    acc = 0.0
    for m, x in zip(maps, a):
        po, pi = place.get(set_of(m.receiver_row)), place.get(set_of(m.sender_row))
        x_out = m.x_out if po is None else m.x_out[po]
        x_in = m.x_in if pi is None else m.x_in[pi]
        acc += (x * np.abs(x_out[:, None] - x_in[None, :])).sum()
    return acc / sum(x.sum() for x in a)


def locality(module: Any, n_shuffles: int = 200, seed: int = 0) -> Locality:
    """L, E[L] and ``n_shuffles`` random placements' L (seeded by ``seed``) of a GPT-2- or Llama-style BIMT
    module."""
    if isinstance(n_shuffles, bool) or not isinstance(n_shuffles, int) or n_shuffles < 0:
        raise ValueError(f"n_shuffles must be a non-negative integer, got {n_shuffles!r}")
    d = dims(module)
    maps = drawn_maps(module)
    a = [m.strengths() for m in maps]
    observed = [(x * m.lengths()).sum() for m, x in zip(maps, a)]
    expected = [(x * _expected_lengths(m, d["d_head"])).sum() for m, x in zip(maps, a)]
    sums = [x.sum() for x in a]
    if sum(sums) == 0:
        raise ValueError("every penalised weight is zero: the wiring length is undefined")
    per_map = {m.name: (float(o / s), float(e / s)) for m, o, e, s in zip(maps, observed, expected, sums) if s > 0}
    rng = np.random.default_rng(seed)
    shuffled = np.array([_shuffled_length(maps, a, _placement(d, rng)) for _ in range(n_shuffles)])
    return Locality(float(sum(observed) / sum(sums)), float(sum(expected) / sum(sums)), shuffled,
                    int(sum(x.size for x in a)), per_map)
