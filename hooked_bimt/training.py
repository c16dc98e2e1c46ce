"""Training a ``HookedMLP`` on MNIST under one of the regimes (SPEC section 2; ``regimes.REGIMES``).

    loss = MSE(logits, one_hot(y)) + lambda(step) * cc,   lambda(step) = lambda_0 * factor^(#milestones passed)

The connection cost's gradient is added straight to ``.grad`` instead of through autograd: for
cc = sum_l mean(|W_l| * S_l) + mean(|b_l| * y*) with the scale S_l = A_l * D_l + y*,

    d(lambda cc)/dW_l = lambda * sign(W_l) * S_l / numel(W_l),   d(lambda cc)/db_l = lambda * sign(b_l) * y* / numel(b_l)

(the subgradient autograd would give too: torch's d|x|/dx at 0 is 0 = sign(0)). S_l is cached and
rebuilt only when a position that enters it changes (an output-ring swap); hidden swaps permute
weights, not coordinates. The hyper-parameters are a ``TrainConfig`` (``hooked_bimt.train_config``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor
from circuits.progress import progress_bar

from hooked_bimt.batches import batch_indices, resolve_mode
from hooked_bimt.checkpoint import read_metadata, save_model
from hooked_bimt.cost import add_cost_grad, connection_cost, cost_scale, cost_scales
from hooked_bimt.data import MNISTSplit, load_mnist
from hooked_bimt.geometry import ORIGINAL_RING_PHASE
from hooked_bimt.model import HookedMLP
from hooked_bimt.regimes import Regime, get_regime
from hooked_bimt.swaps import relocate
from hooked_bimt.swaps_original import relocate_original
from hooked_bimt.timing import inference_ms, sync
from hooked_bimt.train_config import DTYPES, TrainConfig
from hooked_bimt.validate import check_data_fits, check_device, warn_surprising

@dataclass
class TrainResult:
    """A trained model with its history (one dict per evaluation) and its metrics."""

    model: HookedMLP
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    regime: Regime
    config: TrainConfig
    seed: int
    finished: bool = field(default=True)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """``model.safetensors`` + ``config.json`` (regime, seed, step, metrics, train config, history).
        A directory already holding a checkpoint is refused unless ``overwrite=True``."""
        return save_model(
            self.model,
            directory,
            overwrite=overwrite,
            regime=self.regime.name,
            seed=self.seed,
            step=self.metrics.get("steps", self.config.steps),
            metrics=self.metrics,
            train_config=self.config.to_dict(),
            history=self.history,
            finished=self.finished,
        )

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> "TrainResult":
        """Read back what ``save`` wrote."""
        meta = read_metadata(directory)
        model = HookedMLP.load(directory, device=device)
        return cls(
            model=model,
            history=meta.get("history", []),
            metrics=meta.get("metrics", {}),
            regime=get_regime(meta["regime"]),
            config=TrainConfig.from_dict(meta["train_config"]),
            seed=int(meta["seed"]),
            finished=bool(meta.get("finished", False)),
        )


# ---------------------------------------------------------------------------- pieces of the loop
def _subset(split: MNISTSplit, n: int | None, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    x, y = split.flat(), split.labels
    if n is not None:
        x, y = x[:n], y[:n]
    return x.to(device=device, dtype=dtype), y.to(device)


@torch.no_grad()
def accuracy(model: HookedMLP, x: Float[Tensor, "n d"], y: Int64[Tensor, " n"], batch: int = 1000) -> float:
    """Fraction of ``x`` whose argmax logit is the label."""
    correct = sum(int((model(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def _check_data(data: Any) -> tuple[MNISTSplit, MNISTSplit]:
    if data is None:
        return load_mnist()
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(s, MNISTSplit) for s in data)):
        raise TypeError("data must be a (train, test) pair of MNISTSplit, as load_mnist() returns")
    return data[0], data[1]


class StepsHook(Protocol):
    """Something run around a window of consecutive training steps, passed as ``train(..., hook=...)``; the study's
    peak-memory meter (``hooked_bimt.memory.TrainingMemoryMeter``) is one. The loop asks ``window(config)`` once;
    when the window opens it calls ``around(training, run)``, where ``run()`` runs the window's steps, and adds the
    dict returned to ``TrainResult.metrics``. The window's steps are left out of ``seconds_per_step`` (a hook may
    slow them); an evaluation due inside the window runs after the whole window."""

    def window(self, config: TrainConfig) -> range: ...

    def around(self, training: "Training", run: Callable[[], None]) -> dict[str, Any]: ...


class Training:
    """One training run: ``step(i)`` runs step i, ``run()`` all of them and returns the ``TrainResult``.
    ``train()`` checks its arguments and builds one; a benchmark may subclass it (``move_neurons``)."""

    def __init__(self, regime: Regime, config: TrainConfig, seed: int, device: torch.device, data: Any) -> None:
        self.regime, self.config, self.seed, self.device = regime, config, seed, device
        dtype = DTYPES[config.dtype]
        train_split, test_split = _check_data(data)
        self.x, self.y = _subset(train_split, config.train_subset, device, dtype)
        self.x_test, self.y_test = _subset(test_split, config.test_subset, device, dtype)
        self.targets = F.one_hot(self.y, config.widths[-1]).to(dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            phase = ORIGINAL_RING_PHASE if regime.is_original else 0.0
            self.model = HookedMLP(config.widths, activation=config.activation, ring_phase=phase)
            self.model.to(device=device, dtype=dtype)
        self.gen = torch.Generator().manual_seed(seed)
        mode = resolve_mode(config.batches, regime.is_original)
        self.batches = batch_indices(len(self.x), config.batch_size, mode, self.gen, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_factors = config.loss_factors(regime)
        self.swap_factors = config.swap_factors(regime)
        self.report_factors = config.local_factors()
        self.scales = cost_scales(self.model, self.loss_factors, config.y_star) if regime.uses_cost else []
        self.history: list[dict[str, Any]] = []
        self.swaps = 0
        self.last_task = torch.tensor(float("nan"))

    def step(self, step: int) -> None:
        cfg = self.config
        idx = next(self.batches)
        self.optimizer.zero_grad(set_to_none=True)
        task = F.mse_loss(self.model(self.x[idx]), self.targets[idx])
        task.backward()
        if self.regime.uses_cost:
            add_cost_grad(self.model, self.scales, cfg.lambda_at(step), cfg.y_star)
        self.optimizer.step()
        self.last_task = task.detach()
        if self.regime.swaps and (step + 1) % cfg.swap_every == 0:
            self.swap()

    def swap(self) -> None:
        cfg = self.config
        if not self.regime.is_original:  # kept, as a loop zeroing them per step would (claim 4)
            self.optimizer.zero_grad(set_to_none=True)  # gradients are spent; do not carry them through the swap
        before = self.model.out_perm.clone()
        self.swaps += self.move_neurons()
        if self.regime.uses_cost and not torch.equal(before, self.model.out_perm):
            last = self.model.n_layers - 1  # output positions enter only the last layer's scale
            self.scales[last] = 0.0  # free the old scale before building the new one
            self.scales[last] = cost_scale(self.model, last, self.loss_factors[last], cfg.y_star)

    def move_neurons(self) -> int:
        """One relocation, the regime's (``swaps.relocate``, or ``swaps_original.relocate_original`` for an
        ``*_original`` regime); returns the number of swaps made."""
        cfg = self.config
        if self.regime.is_original:
            return relocate_original(
                self.model, cfg.top_k, self.swap_factors, cfg.y_star, self.optimizer, moments=cfg.original_moments
            )
        return relocate(self.model, cfg.top_k, self.swap_factors, cfg.y_star, optimizer=self.optimizer)

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        cfg = self.config
        lam = cfg.lambda_at(step) if self.regime.uses_cost else 0.0
        task = float(self.last_task)
        loss_cost = float(connection_cost(self.model, self.loss_factors, cfg.y_star)) if self.regime.uses_cost else 0.0
        row = {
            "step": step + 1,
            "loss": task + lam * loss_cost,
            "task_loss": task,
            "connection_cost": float(connection_cost(self.model, self.report_factors, cfg.y_star)),
            "lambda": lam,
            "test_accuracy": accuracy(self.model, self.x_test, self.y_test),
            "swaps": self.swaps,
        }
        self.history.append(row)
        return row

    def _timed_step(self, step: int) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        self.step(step)
        sync(self.device)
        return time.perf_counter() - t0

    def _steps(self, steps: range) -> None:
        for step in steps:
            self.step(step)

    def run(self, progress: bool = False, hook: StepsHook | None = None) -> TrainResult:
        """Every step, evaluating every ``eval_every`` steps and after the last; ``hook`` (``StepsHook``) runs
        around its window of steps."""
        cfg = self.config
        window = hook.window(cfg) if hook is not None else range(0)
        hooked: dict[str, Any] = {}
        step_seconds, timed = 0.0, 0
        bar = progress_bar(range(cfg.steps), desc=f"train {self.regime.name}", disable=not progress, mininterval=0.5)
        start = time.perf_counter()
        for step in bar:
            if step not in window:
                step_seconds += self._timed_step(step)
                timed += 1
            elif step == window.start:
                hooked = hook.around(self, functools.partial(self._steps, window))
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                row = self.evaluate(step)
                bar.set_postfix(acc=f"{row['test_accuracy']:.3f}", loss=f"{row['loss']:.4f}", swaps=self.swaps)
        total = time.perf_counter() - start
        return self.result(step_seconds / max(timed, 1), total, hooked)

    def result(self, seconds_per_step: float, total: float, hooked: dict[str, Any]) -> TrainResult:
        cfg = self.config
        metrics = {
            "test_accuracy": self.history[-1]["test_accuracy"],
            "train_seconds": total,
            "seconds_per_step": seconds_per_step,
            **hooked,
            "inference_ms_per_batch": inference_ms(self.model, self.x_test[: cfg.batch_size]),
            "steps": cfg.steps,
            "swaps": self.swaps,
            "connection_cost": self.history[-1]["connection_cost"],
            "device": str(self.device),
            "torch_version": torch.__version__,
        }
        return TrainResult(self.model, self.history, metrics, self.regime, cfg, self.seed)


def settings_line(regime: str, seed: int, device: str, config: TrainConfig, **extra: str) -> str:
    """The one line a run prints: what was trained and with which ``TrainConfig`` (also stored in config.json)."""
    more = "".join(f" {k}={v}" for k, v in extra.items())
    return f"settings: regime={regime} seed={seed} device={device}{more} TrainConfig={config.to_dict()}"


def train(
    regime: str | Regime,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data: tuple[MNISTSplit, MNISTSplit] | None = None,
    progress: bool = True,
    hook: StepsHook | None = None,
) -> TrainResult:
    """Train a ``HookedMLP`` on MNIST under ``regime`` (a name in ``REGIMES``).

    Args:
        regime: a name in ``REGIMES`` (the five of SPEC 2 and the ``*_original`` ones) or a ``Regime``.
        config: hyper-parameters (default ``TrainConfig.paper()``).
        seed: same seed, same device -> bit-identical weights.
        device: where to train ("cpu", "cuda", ...).
        data: (train, test) from ``load_mnist()``, to avoid reading the files again.
        progress: show a tqdm progress bar and print the settings line (``settings_line``) first.
        hook: run around a window of steps (``StepsHook``), e.g. ``hooked_bimt.memory.TrainingMemoryMeter()``: the
            peak training memory in ``metrics["peak_memory_bytes"]``, as the study measures it (SPEC 5).
    """
    regime = get_regime(regime)
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    device = check_device(device)
    train_split, test_split = _check_data(data)
    check_data_fits(config.widths, train_split.images[0].numel(), 10)  # MNIST: 10 classes
    warn_surprising(regime, config)
    if progress:
        print(settings_line(regime.name, seed, device, config), flush=True)
    return Training(regime, config, seed, torch.device(device), (train_split, test_split)).run(progress, hook)
