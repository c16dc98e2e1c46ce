"""The two tasks BIMT transformers are trained on, each with clean/corrupted prompts of equal token length and a
logit-difference metric (``circuits.metrics.logit_diff`` at the last position).

- ``InductionTask``: ``[BOS, filler, r, r]`` of distinct random tokens, the next-token loss inside the second copy
  (``hooked_bimt.zoo.induction``, the task that ships with a Llama model in ``data/induction``). Corrupted prompts
  reverse the first copy, so induction predicts another token from the same set. Mechanism: a previous-token head
  feeding an induction head (Olsson et al. 2022).
- ``ModularAdditionTask``: ``[a, b, =]`` -> ``(a + b) mod p`` at the last position (BIMT paper section 3.3; the
  grokking literature: Power et al. 2022, Nanda et al. 2023, whose trained transformers compute it with a few
  Fourier frequencies). Trained on a random ``train_fraction`` of the p^2 pairs, accuracy reported on the rest too.
  Corrupted prompts change ``b`` (same ``a``), so the answer changes: clean label ``(a + b) mod p``, corrupted
  label ``(a + b') mod p``. Not a copying task: the answer is computed from the two operands, not read off the prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from circuits.metrics import Metric, logit_diff
from hooked_bimt.zoo.induction import InductionSetup, induction_accuracy, induction_loss, induction_tokens
from hooked_bimt.zoo.induction import prompts as induction_prompts


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class Prompts:
    """Clean and corrupted token batches of equal shape, their answers, and the task metric (minimised)."""

    clean: Int[Tensor, "n pos"]
    corrupted: Int[Tensor, "n pos"]
    clean_labels: Int[Tensor, " n"]
    corrupt_labels: Int[Tensor, " n"]

    @property
    def metric(self) -> Metric:
        """``-mean(logit[clean label] - logit[corrupted label])`` at the last position."""
        return logit_diff(self.clean_labels, self.corrupt_labels)


class _HasPrompts:
    """``clean``, ``corrupted``, ``clean_labels``, ``corrupt_labels`` and ``metric`` of the task's ``prompts()``
    (made once, cached on the frozen task object)."""

    def prompts(self) -> Prompts:  # pragma: no cover - each task defines it
        raise NotImplementedError

    def _prompts(self) -> Prompts:
        cached = self.__dict__.get("_cached_prompts")
        if cached is None:
            cached = self.prompts()
            object.__setattr__(self, "_cached_prompts", cached)
        return cached

    @property
    def clean(self) -> Tensor:
        return self._prompts().clean

    @property
    def corrupted(self) -> Tensor:
        return self._prompts().corrupted

    @property
    def clean_labels(self) -> Tensor:
        return self._prompts().clean_labels

    @property
    def corrupt_labels(self) -> Tensor:
        return self._prompts().corrupt_labels

    @property
    def metric(self) -> Metric:
        return self._prompts().metric


@dataclass(frozen=True)
class InductionTask(_HasPrompts):
    """Induction on repeated random tokens; prompts end at ``r_{half-1}`` of the second copy."""

    d_vocab: int = 32
    seq_len: int = 16
    min_half: int = 3
    max_half: int = 6
    prompt_half: int = 5
    n_prompts: int = 32
    seed: int = 1234
    name: str = "induction"

    def __post_init__(self) -> None:
        _positive(self, "n_prompts")
        self.setup(1)  # InductionSetup checks the shape fields
        if not max(3, self.min_half) <= self.prompt_half <= self.max_half:
            raise ValueError(f"InductionTask.prompt_half must be in max(3, min_half)..max_half, got {self.prompt_half}")

    @property
    def n_ctx(self) -> int:
        return self.seq_len + 1

    def setup(self, batch: int) -> InductionSetup:
        return InductionSetup(d_vocab=self.d_vocab, seq_len=self.seq_len, min_half=self.min_half,
                              max_half=self.max_half, batch=batch, architecture="gpt2")

    def loss(self, module: Any, batch: int, gen: torch.Generator) -> Tensor:
        """Next-token cross-entropy in the second copy, repeat lengths drawn per sequence (``min_half..max_half``)
        so the repeat sits at no fixed offset; tokens drawn on the CPU generator, moved to the module's device."""
        setup, device = self.setup(batch), _device(module)
        halves = torch.randint(self.min_half, self.max_half + 1, (batch,), generator=gen)
        groups = [(int(h), induction_tokens(int((halves == h).sum()), setup, int(h), gen)[0].to(device))
                  for h in halves.unique()]
        logits = module(torch.cat([t for _, t in groups])).logits
        total, start = logits.new_zeros(()), 0
        for h, t in groups:
            total = total + induction_loss(logits[start:start + len(t)], t, h) * len(t)
            start += len(t)
        return total / batch

    def accuracy(self, model: Any, n: int = 256) -> float:
        """Worst accuracy over repeat lengths on fresh sequences (a held-out draw)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        setup = self.setup(1)
        return min(induction_accuracy(model, induction_tokens(n, setup, h, gen)[0].to(_device(model)), h)
                   for h in range(self.min_half, self.max_half + 1))

    def prompts(self) -> Prompts:
        p = induction_prompts(self.n_prompts, self.setup(1), self.prompt_half, self.seed)
        return Prompts(p["clean"], p["corrupted"], p["clean_labels"], p["corrupt_labels"])


@dataclass(frozen=True)
class ModularAdditionTask(_HasPrompts):
    """``[a, b, =] -> (a + b) mod p``; token ``p`` is ``=``; a random ``train_fraction`` of pairs is trained on."""

    p: int = 59
    train_fraction: float = 1.0
    n_prompts: int = 32
    seed: int = 1234
    name: str = "modular_addition"

    def __post_init__(self) -> None:
        _positive(self, "p", "n_prompts")
        if self.p < 3:
            raise ValueError(f"ModularAdditionTask.p must be >= 3, got {self.p}")
        if not (0 < self.train_fraction <= 1 and math.isfinite(self.train_fraction)):
            raise ValueError(f"ModularAdditionTask.train_fraction must be in (0, 1], got {self.train_fraction!r}")

    @property
    def d_vocab(self) -> int:
        return self.p + 1

    @property
    def n_ctx(self) -> int:
        return 3

    def pairs(self) -> tuple[Int[Tensor, "n 3"], Int[Tensor, "m 3"]]:
        """(training sequences, held-out sequences), a seeded split of all p^2 pairs."""
        a, b = torch.meshgrid(torch.arange(self.p), torch.arange(self.p), indexing="ij")
        seqs = torch.stack([a.reshape(-1), b.reshape(-1), torch.full((self.p ** 2,), self.p)], dim=1)
        order = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(self.seed))
        n_train = max(1, int(round(self.train_fraction * len(seqs))))
        return seqs[order[:n_train]], seqs[order[n_train:]]

    def answer(self, seqs: Tensor) -> Tensor:
        return (seqs[:, 0] + seqs[:, 1]) % self.p

    def loss(self, module: Any, batch: int, gen: torch.Generator) -> Tensor:
        """Cross-entropy of the answer at the last position, ``batch`` training pairs drawn with replacement."""
        train, _ = self._cached_pairs()
        seqs = train[torch.randint(len(train), (batch,), generator=gen)].to(_device(module))
        return F.cross_entropy(module(seqs).logits[:, -1], self.answer(seqs))

    def _cached_pairs(self) -> tuple[Tensor, Tensor]:
        cache = self.__dict__.get("_pairs")
        if cache is None:
            cache = self.pairs()
            object.__setattr__(self, "_pairs", cache)
        return cache

    def accuracy(self, model: Any, split: str = "test") -> float:
        """Argmax accuracy on the held-out pairs (``"test"``; the training pairs if none are held out) or ``"train"``."""
        train, test = self._cached_pairs()
        seqs = (test if split == "test" and len(test) else train).to(_device(model))
        with torch.no_grad():
            out = model(seqs)
            logits = out.logits if hasattr(out, "logits") else out
        return (logits[:, -1].argmax(-1) == self.answer(seqs)).double().mean().item()

    def prompts(self) -> Prompts:
        """Clean ``[a, b, =]`` and corrupted ``[a, b', =]`` with ``b' != b``, pairs drawn with the task's seed."""
        gen = torch.Generator().manual_seed(self.seed + 2)
        a = torch.randint(self.p, (self.n_prompts,), generator=gen)
        b = torch.randint(self.p, (self.n_prompts,), generator=gen)
        b2 = (b + torch.randint(1, self.p, (self.n_prompts,), generator=gen)) % self.p
        eq = torch.full((self.n_prompts,), self.p)
        clean, corrupted = torch.stack([a, b, eq], 1), torch.stack([a, b2, eq], 1)
        return Prompts(clean, corrupted, self.answer(clean), self.answer(corrupted))


Task = Union[InductionTask, ModularAdditionTask]
TASKS = {"induction": InductionTask, "modular_addition": ModularAdditionTask}


def get_task(task: "str | Task") -> Task:
    """A task object from its name (default settings) or passed through; a clear error naming the choices."""
    if isinstance(task, (InductionTask, ModularAdditionTask)):
        return task
    if isinstance(task, str) and task in TASKS:
        return TASKS[task]()
    raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)} or an InductionTask/ModularAdditionTask")


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device
