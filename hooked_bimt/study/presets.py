"""Study presets: how much training, how many seeds, tasks, example batches and which ACDC thresholds.

- ``paper``: SPEC 2 training defaults (``TrainConfig.paper()``: 40,000 steps, batch 100), 3 seeds,
  3 batches of 64 pairs per task, 8 thresholds; every regime of ``REGIMES`` (the ``*_original`` faithful
  modes included when they exist).
- ``quick``: ``TrainConfig.quick()`` at 6,000 steps, 2 seeds, 2 batches of 64 pairs per task, 3 thresholds:
  ``make demo``, a few minutes on a 2-core CPU, MNIST load included. Its numbers are indicative only.
- ``smoke``: for tests only: 150 steps (swaps every 50, so the swap path runs), two regimes, small hidden layers when the training
  config allows it, one batch of 8 pairs, 3 thresholds, a training subset. Finishes in seconds; means nothing.

Transformer presets (``family="transformer"``, ``transformer_family``): GPT-2-style modules trained by
``hooked_bimt.transformer`` (SPEC 8) under the five regimes, one model per regime, seed and task; their
``train_overrides`` are keyed by task kind and applied to ``hooked_bimt.transformer.TrainConfig()`` (``quick()`` for
the smoke preset). Model: 2 layers, d_model 32, 4 heads, d_mlp 64 (a 110-edge circuit graph), AdamW, lambda 1e-3
x10 at 25% and 75% of the steps, A = 2, relocate every 100 steps (top 30).

- ``transformer``: a + b mod 59 (all 3,481 pairs, batch 256, lr 3e-3) and induction (``InductionTask()``: vocabulary 32,
  sequences of 16, repeats of 3-6; batch 64, lr 3e-3), 1,500 steps each; 3 seeds, 3 batches of 32 prompt pairs per
  task, 7 thresholds. Sized on this 2-core VM (shared with other sessions, load 4-9): one model trains in 60-115 s
  (bimt the slowest, ~1.2x vanilla); accuracy mod 59: l1 0.96, bimt 1.00, vanilla 1.00; induction (worst repeat
  length): vanilla 0.88, l1 0.87, bimt 0.83. A job (one regime and seed: two models and their 2 x 2 batches), from
  the step and ACDC times measured at load 6 (0.11-0.13 s per step, 1-4 s per ACDC run), takes ~8 minutes there
  and ~2 on a quiet machine: 15 jobs two at a time, ~20 minutes quiet, close to 60 at load 6 (an estimate; the
  full preset was not run while this was written).
- ``transformer_quick``: a + b mod 23 (600 steps: accuracy 1.00; at 400 vanilla reached only 0.72) and induction
  (500 steps, lr 5e-3: 0.55-0.65, the phase change not finished: indicative only), 2 seeds, 1 batch of 32 pairs per
  task, 4 thresholds: about 4 minutes on a quiet machine with ``--executor local --jobs 2``, 2-3x that under the
  load other sessions put on this VM.
- ``transformer_smoke``: for tests only: tiny models (a + b mod 5; induction on 12 tokens, sequences of 8), 24
  steps, l1 and bimt, one batch of 8 pairs, 3 thresholds. Means nothing.

Transformer thresholds (KL at the last position, the answer's, nats): cross-entropy models are confident, so one
edge moves the KL by far more than on the MSE-trained MLPs. Measured on the quick preset's models (32 pairs, float64
bridge, 110 edges): a + b mod 23 (vanilla) keeps 82 edges at 1e-3 (recovery 1.00), 68 at 1e-2 (0.98), 54 at 0.1
(0.94), 40 at 0.3 (0.86), 27 at 1 (0.68), none at 3; induction (vanilla, 800 steps) 76 at 1e-3 (1.0), 49 at 1e-2,
25 at 0.1 (0.96), 4 at 1 (0.82), 2 at 3 (0.61). So 1e-3 ... 3 runs from near-full to near-empty circuits (the full
preset's 7 thresholds); the quick preset takes the decades 1e-3 ... 1. ACDC takes ~1-2 s per threshold here.

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
        from hooked_bimt.train_config import TrainConfig

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


TRANSFORMER_TASKS = ("modular_addition:59", "induction")
TRANSFORMER_THRESHOLDS = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
TRANSFORMER_QUICK_THRESHOLDS = (1e-3, 1e-2, 1e-1, 1.0)
_MODADD = {"d_model": 32, "n_head": 4, "d_mlp": 64, "steps": 1500, "batch": 256, "lr": 3e-3}
_INDUCTION = {"d_model": 32, "n_head": 4, "d_mlp": 64, "steps": 1500, "batch": 64, "lr": 3e-3}
PRESETS.update({
    "transformer": Preset(
        name="transformer", family="transformer", base_config="default", n_seeds=3, n_batches=2, batch_size=32,
        thresholds=TRANSFORMER_THRESHOLDS, tasks=TRANSFORMER_TASKS,
        train_overrides={"modular_addition": _MODADD, "induction": _INDUCTION},
        note="GPT-2-style transformers (hooked_bimt.transformer, SPEC 8), one per regime, seed and task (a + b mod 59; "
             "induction), 2 layers, d_model 32, 4 heads, 1,500 steps; 3 seeds, 2 batches of 32 prompt pairs per "
             f"task, {len(TRANSFORMER_THRESHOLDS)} ACDC thresholds.",
    ),
    "transformer_quick": Preset(
        name="transformer_quick", family="transformer", base_config="default", n_seeds=2, n_batches=1,
        batch_size=32, thresholds=TRANSFORMER_QUICK_THRESHOLDS, tasks=("modular_addition:23", "induction"),
        train_overrides={"modular_addition": {**_MODADD, "steps": 600},
                         "induction": {**_INDUCTION, "steps": 500, "lr": 5e-3}},
        note="Reduced for a few-minute CPU run: a + b mod 23 (600 steps) and induction (500 steps), the transformer "
             f"preset's model size, 2 seeds, 1 batch of 32 prompt pairs per task, {len(TRANSFORMER_QUICK_THRESHOLDS)} "
             "ACDC thresholds. Indicative only.",
    ),
    "transformer_smoke": Preset(
        name="transformer_smoke", family="transformer", base_config="quick", n_seeds=1, n_batches=1, batch_size=8,
        thresholds=(1e-2, 1e-1, 1.0), regimes=("l1", "bimt"), tasks=("modular_addition:5", "induction:12:8"),
        train_overrides={"modular_addition": {"steps": 24, "swap_every": 8, "d_model": 8, "lr": 2e-2, "lambda_": 1e-4},
                         "induction": {"steps": 24, "swap_every": 8, "batch": 32, "lr": 1e-2}},
        note="For tests only: tiny transformers (a + b mod 5, induction on 8 tokens), 24 steps (swaps every 8), two "
             "regimes, one batch of 8 prompt pairs, 3 thresholds. Numbers mean nothing.",
    ),
})


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
