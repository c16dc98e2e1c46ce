"""The five training regimes of the study (SPEC section 2).

| regime   | connection cost in the loss | A in the loss | swaps | A used to score swaps |
|----------|-----------------------------|---------------|-------|-----------------------|
| vanilla  | no (lambda = 0)             | -             | no    | -                     |
| l1       | yes                         | 0 (plain L1)  | no    | -                     |
| l1_local | yes                         | A             | no    | -                     |
| l1_swap  | yes                         | 0             | yes   | A                     |
| bimt     | yes                         | A             | yes   | A                     |

A is the MNIST default 2.0; the last linear layer's A is set by ``TrainConfig`` (0 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    name: str
    uses_cost: bool
    distance_factor: float
    swaps: bool
    swap_distance_factor: float

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
