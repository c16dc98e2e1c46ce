"""The training regimes of the study (SPEC section 2): the five of the paper, and the two swap regimes
again with the original BIMT notebook's swap procedure (``swap_mode="original"``, ``hooked_bimt.swaps_original``).

| regime   | connection cost in the loss | A in the loss | swaps | A used to score swaps |
|----------|-----------------------------|---------------|-------|-----------------------|
| vanilla  | no (lambda = 0)             | -             | no    | -                     |
| l1       | yes                         | 0 (plain L1)  | no    | -                     |
| l1_local | yes                         | A             | no    | -                     |
| l1_swap  | yes                         | 0             | yes   | A                     |
| bimt     | yes                         | A             | yes   | A                     |

| l1_swap_original | yes                | 0             | yes, original | A on every layer  |
| bimt_original    | yes                | A             | yes, original | A on every layer  |

A is the MNIST default 2.0; the last linear layer's A is set by ``TrainConfig`` (0 by default), except
when an ``*_original`` regime scores its swaps (A on the last layer too: the outputs swap on the ring).
The ``*_original`` regimes also place the outputs at the original's ring phase and, by default, draw
epoch-shuffled batches and leave AdamW's moments in place at a swap (``TrainConfig`` options).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SwapMode = Literal["ours", "original"]
SWAP_MODES = ("ours", "original")

DEFAULT_A = 2.0


@dataclass(frozen=True)
class Regime:
    """How one regime trains.

    Attributes:
        name: the regime's name in ``REGIMES``.
        uses_cost: whether lambda * connection_cost is added to the loss.
        distance_factor: A in the loss (0 = plain L1 scaled by y*).
        swaps: whether ``relocate`` runs every ``swap_every`` steps.
        swap_distance_factor: A used to score swaps (0 when the regime does not swap).
        swap_mode: "ours" (``swaps.relocate``) or "original" (``swaps_original.relocate_original``,
            the original notebook's procedure).
    """

    name: str
    uses_cost: bool
    distance_factor: float
    swaps: bool
    swap_distance_factor: float
    swap_mode: SwapMode = "ours"

    def __post_init__(self) -> None:
        if self.swap_mode not in SWAP_MODES:
            raise ValueError(f"Regime.swap_mode must be one of {SWAP_MODES}, got {self.swap_mode!r}")

    @property
    def is_original(self) -> bool:
        """True for the regimes that follow the original BIMT notebook (swaps, ring phase, batches)."""
        return self.swap_mode == "original"

    @property
    def is_local(self) -> bool:
        """True when the loss penalises distance (A > 0)."""
        return self.uses_cost and self.distance_factor != 0


REGIMES: dict[str, Regime] = {
    "vanilla": Regime("vanilla", uses_cost=False, distance_factor=0.0, swaps=False, swap_distance_factor=0.0),
    "l1": Regime("l1", uses_cost=True, distance_factor=0.0, swaps=False, swap_distance_factor=0.0),
    "l1_local": Regime("l1_local", uses_cost=True, distance_factor=DEFAULT_A, swaps=False, swap_distance_factor=0.0),
    "l1_swap": Regime("l1_swap", uses_cost=True, distance_factor=0.0, swaps=True, swap_distance_factor=DEFAULT_A),
    "bimt": Regime("bimt", uses_cost=True, distance_factor=DEFAULT_A, swaps=True, swap_distance_factor=DEFAULT_A),
    "l1_swap_original": Regime(
        "l1_swap_original", uses_cost=True, distance_factor=0.0, swaps=True,
        swap_distance_factor=DEFAULT_A, swap_mode="original",
    ),
    "bimt_original": Regime(
        "bimt_original", uses_cost=True, distance_factor=DEFAULT_A, swaps=True,
        swap_distance_factor=DEFAULT_A, swap_mode="original",
    ),
}


def get_regime(regime: "str | Regime") -> Regime:
    """The ``Regime`` named ``regime`` (a ``Regime`` passes through); ``ValueError`` listing the valid names."""
    if isinstance(regime, Regime):
        return regime
    if not isinstance(regime, str):
        raise TypeError(f"regime must be a name or a Regime, got {type(regime).__name__}")
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {', '.join(REGIMES)}")
    return REGIMES[regime]
