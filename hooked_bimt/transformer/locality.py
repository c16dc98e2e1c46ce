"""How local a BIMT transformer's wiring is: the strength-weighted mean length of its lines, against the same
weights at random positions (the number printed in ``bimt_transformer_figure``).

Over every weight of every penalised map as drawn (``drawing.drawn_maps``: effective weights, q/k/v folded),
with a = |w| / max |w| of its map (the line's strength in the figure, faint weights included) and
d = |x_out[j] - x_in[i]| (the horizontal length; the layer gap is the same for every line of a map):

    L = sum a * d / sum a

Random placement: every set of neurons BIMT can move is placed by an independent, uniformly random permutation of
the moves relocate can make (the residual stream, shared by every layer; each layer's MLP neurons; each layer's
heads, as whole d_head blocks); tokens keep their places. No map joins a set to itself, so the expectation is exact:

    E[L] = sum a * E[d] / sum a,   E[d_ji] = mean over p ~ j, q ~ i of |x_out[p] - x_in[q]|

(p ~ j: the positions neuron j can be moved to). ``n_shuffles`` seeded random placements give the spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hooked_bimt.transformer.drawing import DrawnMap, drawn_maps
from hooked_bimt.transformer.geometry import dims


def set_of(row: str) -> Optional[str]:
    """Which movable set a row's neurons belong to: "res", "heads{l}", "mlp{l}", or None (tokens)."""
    if row.startswith("vocab"):
        return None
    if row.startswith(("res", "mid")):
        return "res"
    return f"heads{row[4:]}" if row.startswith("attn") else row


def orbit_mean(n: int, kind: Optional[str], d_head: int) -> np.ndarray:
    """(n x n) averaging matrix P: P[j, p] = 1 / |orbit of j| for the positions p neuron j can be moved to."""
    if kind is None:
        return np.eye(n)
    if not kind.startswith("heads"):
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


def _placement(d: dict[str, int], rng: np.random.Generator) -> dict[Optional[str], np.ndarray]:
    """One random placement: set -> position of each neuron."""
    place: dict[Optional[str], np.ndarray] = {"res": rng.permutation(d["d_model"])}
    t = np.arange(d["d_model"]) % d["d_head"]
    for l in range(d["n_layer"]):
        place[f"mlp{l}"] = rng.permutation(d["d_mlp"])
        place[f"heads{l}"] = rng.permutation(d["n_head"])[np.arange(d["d_model"]) // d["d_head"]] * d["d_head"] + t
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
    """L, E[L] and ``n_shuffles`` random placements' L (seeded by ``seed``) of a GPT-2-style BIMT module."""
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
