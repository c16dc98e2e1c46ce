"""Study presets: how much training, how many seeds, tasks, example batches and which ACDC thresholds.

- ``paper``: SPEC 2 training defaults (``TrainConfig.paper()``: 40,000 steps, batch 100), 3 seeds,
  3 batches of 64 pairs per task, 8 thresholds; every regime of ``REGIMES`` (the ``*_original`` faithful
  modes included when they exist).
- ``quick``: ``TrainConfig.quick()`` at 6,000 steps, 2 seeds, 2 batches of 64 pairs per task, 3 thresholds:
  ``make demo``, a few minutes on a 2-core CPU, MNIST load included. Its numbers are indicative only.
- ``smoke``: for tests only: 150 steps (swaps every 50, so the swap path runs), two regimes, small hidden layers when the training
  config allows it, one batch of 8 pairs, 3 thresholds, a training subset. Finishes in seconds; means nothing.

ACDC thresholds (KL, nats): each discovery unit runs ACDC once per threshold, so every regime has a
sparsity / faithfulness frontier (the plane of the paper's Figure 3) and the claims are judged at matched
sparsity (``frontier``). Models trained with MSE on one-hot targets have small logits, so their output
distributions are close to uniform and the KL change per edge is small: measured with
``PYTHONPATH=. python benchmarks/bench_threshold.py --run runs/paper`` (benchmarks/RESULTS.md), at 1e-5
every regime's 8-vs-3 circuit recovers >= 0.90 of the logit difference, at 1e-4 about 0.6, and at 1e-3
a few dozen edges remain. On the quick preset's vanilla models (8 vs 3, 64 pairs) 1e-6 keeps ~9,000
edges and recovers 1.00, 1e-5 ~2,000 edges (0.95), 1e-3 ~30 edges (0.07); ACDC at 1e-6 takes ~8x as
long as at 1e-5. The paper sweep runs from 1e-6 (recovery ~1) to 1e-2 (near-empty); the quick sweep
from 1e-5 to 1e-3 to stay within a few minutes. Override with ``--thresholds``; they are recorded in
run.json and the report.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

REGIME_ORDER = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
PAPER_THRESHOLDS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2)
QUICK_THRESHOLDS = (1e-5, 3e-5, 1e-4, 1e-3)


def all_regimes() -> tuple[str, ...]:
    """The five SPEC 2 regimes, then every ``*_original`` faithful mode ``REGIMES`` defines (issue 14)."""
    from hooked_bimt.regimes import REGIMES

    return REGIME_ORDER + tuple(r for r in REGIMES if r.endswith("_original") and r not in REGIME_ORDER)
DEFAULT_TASKS = ("digit_pair:8:3", "circle")


@dataclass(frozen=True)
class Preset:
    """One study configuration. ``train_overrides`` are applied to the base ``TrainConfig`` where it has the field."""

    name: str
    base_config: str  # "paper" or "quick": which TrainConfig constructor
    n_seeds: int
    n_batches: int
    batch_size: int
    thresholds: tuple[float, ...]
    regimes: tuple[str, ...] = REGIME_ORDER
    tasks: tuple[str, ...] = DEFAULT_TASKS
    train_overrides: dict[str, Any] = field(default_factory=dict)
    train_subset: tuple[int, int] | None = None  # (train images, test images) passed to train(); None = all
    note: str = ""
    family: str = "mnist"  # "transformer": train_overrides keyed by task kind (``transformer_family``)

    def train_config(self) -> Any:
        """The MNIST ``TrainConfig`` this preset trains with (overrides applied to the fields that exist); a
        transformer preset's configs come from ``family.family_of("transformer").train_config``."""
        from hooked_bimt.train import TrainConfig

        cfg = TrainConfig.paper() if self.base_config == "paper" else TrainConfig.quick()
        names = {f.name for f in dataclasses.fields(cfg)}
        known = {k: v for k, v in self.train_overrides.items() if k in names}
        return dataclasses.replace(cfg, **known) if known else cfg


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper", base_config="paper", n_seeds=3, n_batches=3, batch_size=64, thresholds=PAPER_THRESHOLDS,
        regimes=all_regimes(),
        note="SPEC 2 training defaults (TrainConfig.paper()), 3 seeds, 3 batches of 64 pairs per task, "
        f"{len(PAPER_THRESHOLDS)} ACDC thresholds.",
    ),
    "quick": Preset(
        name="quick", base_config="quick", n_seeds=2, n_batches=2, batch_size=64, thresholds=QUICK_THRESHOLDS,
        train_overrides={"steps": 6_000, "swap_every": 250, "eval_every": 2_000},
        note="Reduced for a few-minute CPU run: TrainConfig.quick() with 6,000 steps on 10,000 training images "
        f"(the paper: 40,000 steps on all 60,000), 2 seeds, 2 batches of 64 pairs per task, {len(QUICK_THRESHOLDS)} "
        "ACDC thresholds. Indicative only.",
    ),
    "smoke": Preset(
        name="smoke", base_config="quick", n_seeds=1, n_batches=1, batch_size=8, thresholds=(1e-5, 1e-4, 1e-3),
        regimes=("l1", "bimt"),
        train_overrides={"steps": 150, "eval_every": 50, "swap_every": 50, "widths": (784, 12, 12, 10)},
        train_subset=(2000, 500),
        note="For tests only: 150 training steps, two regimes, one batch of 8 pairs, 3 thresholds. Numbers mean nothing.",
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
    train_split, test_split = _mnist()
    p = PRESETS["smoke" if quick else "quick"]
    data = training_data(p.train_subset, train_split, test_split)
    return DemoSetup(config=p.train_config(), data=data, test=test_split, n_pairs=p.batch_size)


def training_data(train_subset: Any, train_split: Any, test_split: Any) -> tuple[Any, Any]:
    """The splits ``train()`` sees: all of MNIST, or the leading ``(n_train, n_test)`` subset (smoke)."""
    from hooked_bimt import MNISTSplit

    if train_subset is None:
        return train_split, test_split
    n_tr, n_te = train_subset
    return (MNISTSplit(images=train_split.images[:n_tr], labels=train_split.labels[:n_tr]),
            MNISTSplit(images=test_split.images[:n_te], labels=test_split.labels[:n_te]))
