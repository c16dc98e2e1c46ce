"""Study presets: how much training, how many seeds, tasks, example batches and which ACDC threshold.

- ``paper``: SPEC 2 training defaults (``TrainConfig.paper()``: 40,000 steps, batch 100), 3 seeds,
  4 batches of 64 pairs per task.
- ``quick``: ``TrainConfig.quick()`` at 6,000 steps, 2 seeds, 3 batches of 64 pairs per task: meant
  to finish in <= 10 minutes on a 2-core CPU, MNIST load included. Its numbers are indicative only.
- ``smoke``: for tests only: 150 steps, two regimes, small hidden layers when the training
  config allows it, one batch of 8 pairs, a training subset. Finishes in seconds; means nothing.

ACDC threshold (KL, nats): 1e-5. Models trained with MSE on one-hot targets have small logits, so
their output distributions are close to uniform and the KL change per edge is small. Measured with
``PYTHONPATH=. python benchmarks/bench_threshold.py --run runs/paper`` (the paper preset's models, seed 0,
64 pairs; output in benchmarks/RESULTS.md): at 1e-4 the 8-vs-3 circuits recover only 0.54-0.64 of the
logit difference; at 1e-5 every regime's recover >= 0.90 with circuit accuracy >= 0.97. Override with
``--threshold``; the threshold is recorded in run.json and the report.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

REGIME_ORDER = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
DEFAULT_TASKS = ("digit_pair:8:3", "circle")


@dataclass(frozen=True)
class Preset:
    """One study configuration. ``train_overrides`` are applied to the base ``TrainConfig`` where it has the field."""

    name: str
    base_config: str  # "paper" or "quick": which TrainConfig constructor
    n_seeds: int
    n_batches: int
    batch_size: int
    threshold: float
    regimes: tuple[str, ...] = REGIME_ORDER
    tasks: tuple[str, ...] = DEFAULT_TASKS
    train_overrides: dict[str, Any] = field(default_factory=dict)
    train_subset: tuple[int, int] | None = None  # (train images, test images) passed to train(); None = all
    note: str = ""

    def train_config(self) -> Any:
        """The ``TrainConfig`` this preset trains with (overrides applied to the fields that exist)."""
        from hooked_bimt.train import TrainConfig

        cfg = TrainConfig.paper() if self.base_config == "paper" else TrainConfig.quick()
        names = {f.name for f in dataclasses.fields(cfg)}
        known = {k: v for k, v in self.train_overrides.items() if k in names}
        return dataclasses.replace(cfg, **known) if known else cfg


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper", base_config="paper", n_seeds=3, n_batches=4, batch_size=64, threshold=1e-5,
        note="SPEC 2 training defaults (TrainConfig.paper()), 3 seeds, 4 batches of 64 pairs per task.",
    ),
    "quick": Preset(
        name="quick", base_config="quick", n_seeds=2, n_batches=3, batch_size=64, threshold=1e-5,
        train_overrides={"steps": 6_000, "swap_every": 250, "eval_every": 2_000},
        note="Reduced for a <= 10 minute CPU run: TrainConfig.quick() with 6,000 steps on 10,000 training images "
        "(the paper: 40,000 steps on all 60,000), 2 seeds, 3 batches of 64 pairs per task. Indicative only.",
    ),
    "smoke": Preset(
        name="smoke", base_config="quick", n_seeds=1, n_batches=1, batch_size=8, threshold=1e-4,
        regimes=("l1", "bimt"),
        train_overrides={"steps": 150, "eval_every": 50, "widths": (784, 12, 12, 10)},
        train_subset=(2000, 500),
        note="For tests only: 150 training steps, two regimes, one batch of 8 pairs. Numbers mean nothing.",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[Any, Any]:
    from hooked_bimt import load_mnist

    return load_mnist()


@dataclass(frozen=True)
class DemoSetup:
    """What a demo trains with: ``config``, ``data`` = (train, test) for ``train()``, the full MNIST
    ``test`` split for task pairs, and ``n_pairs`` per batch."""

    config: Any
    data: tuple[Any, Any]
    test: Any
    n_pairs: int


def demo_training(quick: bool) -> DemoSetup:
    """The demos' set-up. ``quick=True`` is the test-suite form (the ``smoke`` preset: seconds, meaningless
    numbers); otherwise the ``quick`` preset's training (minutes on a CPU) on all of MNIST. MNIST is read
    once per process."""
    from hooked_bimt import MNISTSplit

    train_split, test_split = _mnist()
    p = PRESETS["smoke" if quick else "quick"]
    data = (train_split, test_split)
    if p.train_subset is not None:
        n_tr, n_te = p.train_subset
        data = (MNISTSplit(images=train_split.images[:n_tr], labels=train_split.labels[:n_tr]),
                MNISTSplit(images=test_split.images[:n_te], labels=test_split.labels[:n_te]))
    return DemoSetup(config=p.train_config(), data=data, test=test_split, n_pairs=p.batch_size)


def training_data(preset: Preset, train_split: Any, test_split: Any) -> tuple[Any, Any]:
    """The splits ``train()`` sees: all of MNIST, or the preset's leading subset (smoke)."""
    from hooked_bimt import MNISTSplit

    if preset.train_subset is None:
        return train_split, test_split
    n_tr, n_te = preset.train_subset
    return (MNISTSplit(images=train_split.images[:n_tr], labels=train_split.labels[:n_tr]),
            MNISTSplit(images=test_split.images[:n_te], labels=test_split.labels[:n_te]))
