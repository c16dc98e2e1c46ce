"""``TrainConfig``: the hyper-parameters of one MNIST training run (SPEC section 2), and the per-layer distance
factors a regime puts in the loss and in the swap scores. The loop that uses it is ``hooked_bimt.training``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from hooked_bimt.batches import BATCH_MODES
from hooked_bimt.regimes import Regime
from hooked_bimt.swaps_original import MOMENTS
from hooked_bimt.validate import check_config_fields

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Fields that configs written by earlier versions hold, at the one value that the training now always uses:
# original_search "brute_force" moved out of the library (benchmarks/_brute_relocate.py), leaving the fast search.
RETIRED = {"original_search": "fast"}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are the MNIST setup of SPEC section 2 (``TrainConfig.paper()``).

    ``lambda_milestones`` are fractions of ``steps`` at which lambda is multiplied by ``lambda_factor``
    (0.25 and 0.5: steps 10,000 and 20,000 of 40,000), so the schedule scales with ``steps``.
    ``distance_factor`` is A for the layers where the regime is local; ``last_layer_distance_factor``
    replaces it on the last linear layer.

    Options of the ``*_original`` regimes (the original notebook's swaps, ``swaps_original``):
    ``batches`` "auto" (epoch-shuffled for them, with replacement otherwise), "epochs" or "replacement"
    (``hooked_bimt.batches``); ``original_moments`` "in_place" (AdamW moments stay at their position, as
    the notebook) or "moved", which does nothing in the other regimes.
    """

    widths: tuple[int, ...] = (784, 100, 100, 10)
    activation: str = "silu"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 100
    steps: int = 40_000
    lambda_: float = 0.01
    lambda_milestones: tuple[float, ...] = (0.25, 0.5)
    lambda_factor: float = 10.0
    distance_factor: float = 2.0
    last_layer_distance_factor: float = 0.0
    y_star: float = 0.5
    swap_every: int = 500
    top_k: int = 30
    eval_every: int = 2_000
    train_subset: int | None = None
    test_subset: int | None = None
    dtype: str = "float32"
    memory_window: int = 3
    batches: str = "auto"
    original_moments: str = "in_place"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "lambda_milestones", tuple(self.lambda_milestones))
        check_config_fields(self)  # every field against its type (finite floats, whole ints), constants >= 0
        positive = ["lr", "batch_size", "steps", "swap_every", "top_k", "eval_every", "memory_window"]
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be None or positive, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.lambda_ < 0 or any(not 0 <= f <= 1 for f in self.lambda_milestones):
            raise ValueError("TrainConfig.lambda_ must be >= 0 and lambda_milestones fractions in [0, 1]")
        options = {"batches": ("auto", *BATCH_MODES), "original_moments": MOMENTS}
        for name, allowed in options.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def paper(cls) -> "TrainConfig":
        """The full MNIST setup: 40,000 steps on all 60,000 training images."""
        return cls()

    @classmethod
    def quick(cls) -> "TrainConfig":
        """Seconds per regime (tests, the README's ten lines): 10,000 training images, 1,200 steps, swaps
        every 200. Not the study's "quick" preset, which trains this config for 6,000 steps
        (``hooked_bimt.study.presets.PRESETS["quick"].train_config()``)."""
        return cls(steps=1_200, swap_every=200, eval_every=400, train_subset=10_000, test_subset=2_000)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); ``from_dict`` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverts ``to_dict``; also reads the configs of earlier versions (``RETIRED`` fields at their one value)."""
        d = dict(d)
        for name, value in RETIRED.items():
            if name in d and d[name] == value:
                del d[name]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**d)

    def lambda_at(self, step: int) -> float:
        """lambda for (0-based) ``step``."""
        passed = sum(step >= round(f * self.steps) for f in self.lambda_milestones)
        return self.lambda_ * self.lambda_factor**passed

    def loss_factors(self, regime: Regime) -> list[float]:
        """A per linear layer in the loss for ``regime`` (all 0 for a non-local regime)."""
        return self._factors(regime.distance_factor)

    def swap_factors(self, regime: Regime) -> list[float]:
        """A per linear layer used to score ``regime``'s swaps (an ``*_original`` regime: A on every layer)."""
        if regime.is_original and regime.swap_distance_factor != 0:
            return [self.distance_factor] * (len(self.widths) - 1)
        return self._factors(regime.swap_distance_factor)

    def local_factors(self) -> list[float]:
        """A per linear layer of the BIMT cost (used to report every regime's cost on one scale)."""
        return self._factors(1.0)

    def _factors(self, regime_a: float) -> list[float]:
        if regime_a == 0:
            return [0.0] * (len(self.widths) - 1)
        return [self.distance_factor] * (len(self.widths) - 2) + [self.last_layer_distance_factor]

