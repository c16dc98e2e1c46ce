"""Training a ``HookedMLP`` on MNIST under one of the regimes (SPEC section 2; ``regimes.REGIMES``).

    loss = MSE(logits, one_hot(y)) + lambda(step) * cc,   lambda(step) = lambda_0 * factor^(#milestones passed)

The connection cost's gradient is added straight to ``.grad`` instead of through autograd: for
cc = sum_l mean(|W_l| * S_l) + mean(|b_l| * y*) with the scale S_l = A_l * D_l + y*,

    d(lambda cc)/dW_l = lambda * sign(W_l) * S_l / numel(W_l),   d(lambda cc)/db_l = lambda * sign(b_l) * y* / numel(b_l)

(the subgradient autograd would give too: torch's d|x|/dx at 0 is 0 = sign(0)). S_l is cached and
rebuilt only when a position that enters it changes (an output-ring swap); hidden swaps permute
weights, not coordinates.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor
from circuits.progress import progress_bar

from hooked_bimt.batches import BATCH_MODES, batch_indices, resolve_mode
from hooked_bimt.checkpoint import read_metadata, save_model
from hooked_bimt.cost import add_cost_grad, connection_cost, cost_scale, cost_scales  # noqa: F401 (re-exported)
from hooked_bimt.data import MNISTSplit, load_mnist
from hooked_bimt.memory import CPU_METHOD, CUDA_METHOD, PeakMemory, optimizer_tensors, storage_bytes
from hooked_bimt.geometry import ORIGINAL_RING_PHASE
from hooked_bimt.model import HookedMLP
from hooked_bimt.regimes import Regime, get_regime
from hooked_bimt.swaps import relocate
from hooked_bimt.swaps_original import MOMENTS, SEARCHES, relocate_original
from hooked_bimt.timing import inference_ms, sync as _sync  # noqa: F401 (inference_ms re-exported)
from hooked_bimt.validate import check_config_fields, check_data_fits, check_device, warn_surprising

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    the notebook) or "moved"; ``original_search`` "fast" or "brute_force" (the notebook's full cost per
    candidate, for the claim-4 benchmark). The last two do nothing in the other regimes.
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
    original_search: str = "fast"

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
        options = {"batches": ("auto", *BATCH_MODES), "original_moments": MOMENTS, "original_search": SEARCHES}
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


def _memory_window(config: TrainConfig) -> range:
    """Steps measured for peak memory: ``memory_window`` steps ending just after the first swap step."""
    swap_step = config.swap_every - 1
    if swap_step >= config.steps:
        return range(0, min(config.memory_window, config.steps))
    end = min(swap_step + 2, config.steps)
    return range(max(0, end - config.memory_window), end)


class _Trainer:
    """One training run; ``run()`` returns the ``TrainResult``. Split up only to keep each part short."""

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
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
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
        self.opt.zero_grad(set_to_none=True)
        task = F.mse_loss(self.model(self.x[idx]), self.targets[idx])
        task.backward()
        if self.regime.uses_cost:
            add_cost_grad(self.model, self.scales, cfg.lambda_at(step), cfg.y_star)
        self.opt.step()
        self.last_task = task.detach()
        if self.regime.swaps and (step + 1) % cfg.swap_every == 0:
            self.swap()

    def swap(self) -> None:
        cfg = self.config
        if not self.regime.is_original:  # kept, as a loop zeroing them per step would (claim 4)
            self.opt.zero_grad(set_to_none=True)  # gradients are spent; do not carry them through the swap
        before = self.model.out_perm.clone()
        if self.regime.is_original:
            self.swaps += relocate_original(
                self.model, cfg.top_k, self.swap_factors, cfg.y_star, self.opt,
                moments=cfg.original_moments, search=cfg.original_search,
            )
        else:
            self.swaps += relocate(self.model, cfg.top_k, self.swap_factors, cfg.y_star, optimizer=self.opt)
        if self.regime.uses_cost and not torch.equal(before, self.model.out_perm):
            last = self.model.n_layers - 1  # output positions enter only the last layer's scale
            self.scales[last] = 0.0  # free the old scale before building the new one
            self.scales[last] = cost_scale(self.model, last, self.loss_factors[last], cfg.y_star)

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

    def alive_tensors(self) -> list[Tensor]:
        """Parameters, gradients, optimizer state and cost scales: what the meter counts from the start."""
        params = list(self.model.parameters())
        grads = [p.grad for p in params if p.grad is not None]
        return params + grads + optimizer_tensors(self.opt) + [s for s in self.scales if isinstance(s, Tensor)]

    def measured_steps(self, window: range) -> int:
        """Run the steps of ``window`` under the memory meter; returns peak bytes (data excluded). No list of the
        start's tensors outlives the meter's set-up (it kept the freed gradients alive: + their bytes)."""
        if self.device.type == "cuda":  # the CPU meter's quantity: alive at the start + what the window adds
            torch.cuda.synchronize(self.device)
            alive, start = storage_bytes(self.alive_tensors()), torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            for step in window:
                self.step(step)
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - start + alive
        with PeakMemory(self.alive_tensors()) as meter:
            for step in window:
                self.step(step)
        return meter.peak

    def run(self, progress: bool) -> TrainResult:
        cfg = self.config
        window, peak, step_seconds, timed = _memory_window(cfg), 0, 0.0, 0
        bar = progress_bar(range(cfg.steps), desc=f"train {self.regime.name}", disable=not progress, mininterval=0.5)
        start = time.perf_counter()
        for step in bar:
            if step == window.start:
                peak = self.measured_steps(window)
            elif step not in window:
                _sync(self.device)
                t0 = time.perf_counter()
                self.step(step)
                _sync(self.device)
                step_seconds += time.perf_counter() - t0
                timed += 1
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                row = self.evaluate(step)
                bar.set_postfix(acc=f"{row['test_accuracy']:.3f}", loss=f"{row['loss']:.4f}", swaps=self.swaps)
        total = time.perf_counter() - start
        return self.result(peak, step_seconds / max(timed, 1), total)

    def result(self, peak: int, seconds_per_step: float, total: float) -> TrainResult:
        cfg = self.config
        method = CUDA_METHOD if self.device.type == "cuda" else CPU_METHOD
        metrics = {
            "test_accuracy": self.history[-1]["test_accuracy"],
            "train_seconds": total,
            "seconds_per_step": seconds_per_step,
            "peak_memory_bytes": int(peak),
            "memory_method": method + "; training/test data excluded",
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
) -> TrainResult:
    """Train a ``HookedMLP`` on MNIST under ``regime`` (a name in ``REGIMES``).

    Args:
        regime: a name in ``REGIMES`` (the five of SPEC 2 and the ``*_original`` ones) or a ``Regime``.
        config: hyper-parameters (default ``TrainConfig.paper()``).
        seed: same seed, same device -> bit-identical weights.
        device: where to train ("cpu", "cuda", ...).
        data: (train, test) from ``load_mnist()``, to avoid reading the files again.
        progress: show a tqdm progress bar and print the settings line (``settings_line``) first.
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
    return _Trainer(regime, config, seed, torch.device(device), (train_split, test_split)).run(progress)
