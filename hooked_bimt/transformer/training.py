"""Training a Hugging Face transformer (``TrainConfig.arch``: "gpt2", a ``GPT2LMHeadModel``, or "llama", a
``LlamaForCausalLM`` with grouped-query attention) under a SPEC 2 regime (SPEC 8), on one of the tasks.

    loss = task_loss + lambda(step) * cc,   lambda(step) = lambda_ * lambda_factor^(#milestones passed)

with cc SPEC 8's connection cost (A = 0 for ``l1`` and ``l1_swap``, ``distance_factor`` for ``l1_local`` and
``bimt``; not added for ``vanilla``) and, for ``l1_swap`` and ``bimt``, ``relocate`` (scored with A =
``distance_factor``) every ``swap_every`` steps, AdamW's moments moved with the weights. The defaults follow the
original notebook's schedule (lambda 1e-3, x10 at 1/4 and again at 3/4 of the steps), scaled to ``steps``.

The trained module stays a plain Hugging Face module; ``TrainResult.bridge`` wraps a float64 copy of it
(building a bridge rewires a module in place, splitting GPT-2's fused q/k/v map). Llama modules use HF's eager
attention: its softmax runs in float32, as the bridge's attention does, so module and bridge compute the same
(with ``sdpa`` a float64 Llama and its bridge differ by ~1e-9).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from hooked_bimt.memory import PeakMemory, optimizer_tensors
from hooked_bimt.regimes import Regime, get_regime
from hooked_bimt.transformer.cost import CostTerms
from hooked_bimt.transformer.llama import is_llama
from hooked_bimt.transformer.relocate import relocate
from hooked_bimt.transformer.tasks import Task, get_task
from hooked_bimt.validate import check_config_fields, check_device

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# arch -> (transformers config class, model class (also the bridge's architecture name), config overrides)
ARCHS = {"gpt2": ("GPT2Config", "GPT2LMHeadModel", {}),
         "llama": ("LlamaConfig", "LlamaForCausalLM", {"attn_implementation": "eager"})}


@dataclass(frozen=True)
class TrainConfig:
    """Model size and schedule (defaults: about a minute per regime on a 2-core CPU; ``quick()``: seconds).

    ``arch``: "gpt2" or "llama"; ``n_kv_head``: Llama's key/value heads (None: ``n_head // 2`` when ``n_head`` is
    even, else ``n_head``; GPT-2 has none)."""

    arch: str = "gpt2"
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_mlp: int = 128
    n_kv_head: int | None = None
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    lambda_: float = 1e-3
    lambda_milestones: tuple[float, ...] = (0.25, 0.75)
    lambda_factor: float = 10.0
    distance_factor: float = 2.0
    y_star: float = 0.5
    swap_every: int = 100
    top_k: int = 30
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_milestones", tuple(self.lambda_milestones))
        check_config_fields(self)
        for name in ("d_model", "n_layer", "n_head", "d_mlp", "steps", "batch", "swap_every", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"TrainConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.lambda_ < 0 or any(not 0 <= f <= 1 for f in self.lambda_milestones):
            raise ValueError("TrainConfig.lambda_ must be >= 0 and lambda_milestones fractions in [0, 1]")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        object.__setattr__(self, "device", check_device(self.device))
        self._check_arch()

    def _check_arch(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"TrainConfig.arch must be one of {', '.join(map(repr, ARCHS))}, got {self.arch!r}")
        if self.arch != "llama":
            if self.n_kv_head is not None:
                raise ValueError(f"TrainConfig.n_kv_head is Llama's (grouped-query attention); arch {self.arch!r} "
                                 f"has none, got {self.n_kv_head!r}")
            return
        if self.n_kv_head is None:
            object.__setattr__(self, "n_kv_head", self.n_head // 2 if self.n_head % 2 == 0 else self.n_head)
        if self.n_kv_head < 1 or self.n_head % self.n_kv_head:
            raise ValueError(f"TrainConfig.n_kv_head ({self.n_kv_head}) must be positive and divide n_head "
                             f"({self.n_head})")
        if (self.d_model // self.n_head) % 2:
            raise ValueError(f"TrainConfig: Llama's rotary positions need an even head size, got d_model / n_head = "
                             f"{self.d_model // self.n_head}")

    @classmethod
    def quick(cls) -> "TrainConfig":
        """A tiny model (d_model 16, 2 heads) and 300 steps: seconds per regime on a CPU (tests, the README, study
        presets); it learns modular addition with a small modulus (p = 11), not the default tasks' sizes."""
        return cls(d_model=16, n_head=2, d_mlp=32, steps=300, batch=128, lr=5e-3, swap_every=50)

    def lambda_at(self, step: int) -> float:
        passed = sum(step >= round(f * self.steps) for f in self.lambda_milestones)
        return self.lambda_ * self.lambda_factor ** passed

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def gpt2_config(task: Task, config: TrainConfig) -> Any:
    """The ``transformers`` config: no dropout, untied embeddings (SPEC 8 penalises W_E and W_U separately)."""
    from transformers import GPT2Config

    return GPT2Config(vocab_size=task.d_vocab, n_positions=task.n_ctx, n_embd=config.d_model, n_layer=config.n_layer,
                      n_head=config.n_head, n_inner=config.d_mlp, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)


def llama_config(task: Task, config: TrainConfig) -> Any:
    """The ``transformers`` ``LlamaConfig``: no biases (as Llama), untied embeddings, eager attention (above)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=task.d_vocab, max_position_embeddings=task.n_ctx, hidden_size=config.d_model,
                       num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
                       num_key_value_heads=config.n_kv_head, intermediate_size=config.d_mlp, attention_bias=False,
                       mlp_bias=False, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                       **ARCHS["llama"][2])


def hf_module(hf_config: "dict[str, Any] | Any") -> Any:
    """A freshly initialised module of ``hf_config`` (a ``transformers`` config, or its ``to_dict()`` as a
    checkpoint stores it), the class chosen by its ``model_type`` ("gpt2" or "llama"); ValueError for another."""
    import transformers

    as_dict = isinstance(hf_config, dict)
    arch = hf_config.get("model_type") if as_dict else getattr(hf_config, "model_type", None)
    if arch not in ARCHS:
        raise ValueError(f"model_type {arch!r} is none of {', '.join(map(repr, ARCHS))}")
    config_name, model_name, overrides = ARCHS[arch]
    if as_dict:  # to_dict() does not keep the attention implementation: the overrides restore it
        hf_config = getattr(transformers, config_name).from_dict(hf_config, **overrides)
    return getattr(transformers, model_name)(hf_config)


def build_module(task: Task, config: TrainConfig) -> Any:
    """The untrained module ``config.arch`` names, sized for ``task``."""
    return hf_module((llama_config if config.arch == "llama" else gpt2_config)(task, config))


def to_bridge(module: Any, dtype: torch.dtype = torch.float64) -> Any:
    """A TransformerLens 4 ``TransformerBridge`` around a copy of ``module`` (eval mode, ``dtype``, same device)."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    twin = copy.deepcopy(module).to(dtype).eval()
    device = next(module.parameters()).device
    arch = ARCHS["llama" if is_llama(module) else "gpt2"][1]
    bridge = build_bridge_from_module(twin, arch, hf_config=twin.config, tokenizer=None, device=device)
    bridge.eval()
    return bridge


@dataclass
class TrainResult:
    """``module``: the trained ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (eval mode); ``bridge``: a float64 ``TransformerBridge`` of a
    copy; ``task``: prompts (``.clean``, ``.corrupted``, labels) and ``.metric``; ``history``: per-step records."""

    module: Any
    bridge: Any
    task: Task
    regime: Regime
    config: TrainConfig
    seed: int
    history: dict[str, list] = field(default_factory=dict)
    accuracy: float = float("nan")


class Trainer:
    """One training run, step by step (``train`` runs it to the end; benchmarks time single steps)."""

    def __init__(self, regime: "str | Regime", task: "str | Task", config: Optional[TrainConfig], seed: int) -> None:
        self.regime = get_regime(regime)
        if self.regime.is_original:
            raise ValueError(f"regime {self.regime.name!r} uses the original MNIST notebook's swaps, which have no "
                             "transformer version; use one of vanilla, l1, l1_local, l1_swap, bimt")
        self.task, self.config = get_task(task), config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a hooked_bimt.transformer.TrainConfig, got {type(self.config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.seed, self.step_index = seed, 0
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        cfg = self.config
        self.module = build_module(self.task, cfg).to(DTYPES[cfg.dtype]).to(cfg.device).train()
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_a = cfg.distance_factor if self.regime.is_local else 0.0  # the regime says whether, the config how much
        self.cost = CostTerms(self.module, loss_a, cfg.y_star) if self.regime.uses_cost else None
        self.history: dict[str, list] = {"loss": [], "cost": [], "seconds": [], "swaps": []}

    def step(self) -> float:
        """One optimizer step (and a relocation when due); returns the task loss."""
        cfg, t0 = self.config, time.perf_counter()
        loss = self.task.loss(self.module, cfg.batch, self.gen)
        total = loss
        if self.cost is not None:
            cc = self.cost()
            total = loss + cfg.lambda_at(self.step_index) * cc
            self.history["cost"].append(cc.item())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step_index += 1
        if self.regime.swaps and self.step_index % cfg.swap_every == 0:
            self.optimizer.zero_grad(set_to_none=True)
            n = relocate(self.module, cfg.top_k, cfg.distance_factor, cfg.y_star, self.optimizer)
            self.history["swaps"].append([self.step_index, n])
        self.history["seconds"].append(time.perf_counter() - t0)
        self.history["loss"].append(loss.item())
        return self.history["loss"][-1]

    def alive_tensors(self) -> list[torch.Tensor]:
        """Parameters, gradients, AdamW state and the cost's scales: what a memory meter counts from the start."""
        params = list(self.module.parameters())
        scales = [scale for _, scale, _ in self.cost.terms] if self.cost is not None else []
        return params + [p.grad for p in params if p.grad is not None] + optimizer_tensors(self.optimizer) + scales

    def measured_steps(self, n: int) -> int:
        """Run ``n`` steps under ``hooked_bimt.memory.PeakMemory`` (CPU: every storage an aten op creates, plus the
        tensors alive at the start); returns the peak bytes. Position the trainer so that a swap step falls inside."""
        with PeakMemory(self.alive_tensors()) as meter:
            for _ in range(n):
                self.step()
        return meter.peak

    def result(self) -> "TrainResult":
        """The finished run: the module in eval mode, its float64 bridge, the task's accuracy."""
        module = self.module.eval()
        return TrainResult(module=module, bridge=to_bridge(module), task=self.task, regime=self.regime,
                           config=self.config, seed=self.seed, history=self.history,
                           accuracy=self.task.accuracy(module))


def train(regime: "str | Regime", task: "str | Task", config: Optional[TrainConfig] = None, seed: int = 0) -> TrainResult:
    """Train a transformer (``config.arch``: GPT-2 or Llama) on ``task`` ("induction", "modular_addition" or a task object) under
    ``regime`` (vanilla, l1, l1_local, l1_swap, bimt); returns the module, a bridge, the task and the record."""
    trainer = Trainer(regime, task, config, seed)
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer.result()
