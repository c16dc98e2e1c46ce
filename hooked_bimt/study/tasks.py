"""The paper's tasks on MNIST (SPEC 6): paired clean / corrupted batches and their logit differences.

``digit_pair(a, b)``: clean = test images of digit a, corrupted = images of digit b; the task's
logit difference is ``logits[:, a] - logits[:, b]``.

``circle()``: clean = digits with a closed loop {0, 6, 8, 9}, corrupted = digits without one
{1, 2, 3, 4, 5, 7}; the logit difference is

    logsumexp(logits[:, loop]) - logsumexp(logits[:, no_loop])

``task.pairs(test_split, model, n, seed, batch_index)`` pairs the two pools row by row after a seeded
shuffle and keeps only pairs the full model gets right (clean predicted as its label AND corrupted
predicted as its label); the returned ``TaskBatch`` says how many candidate pairs were looked at
and how many were kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float, Int64
from torch import Tensor

LOOP_DIGITS = (0, 6, 8, 9)
NO_LOOP_DIGITS = (1, 2, 3, 4, 5, 7)
_BLOCK = 4096  # rows per forward pass when classifying candidates


@dataclass(frozen=True)
class TaskBatch:
    """One batch of paired examples: row i of ``clean`` is paired with row i of ``corrupted``.

    ``n_candidates`` candidate pairs were examined to fill the batch; ``n_used`` of them (the batch
    size) were kept because the full model classifies both of their images correctly.
    """

    clean: Float[Tensor, "n d_in"]
    corrupted: Float[Tensor, "n d_in"]
    clean_labels: Int64[Tensor, " n"]
    corrupt_labels: Int64[Tensor, " n"]
    n_candidates: int
    n_used: int

    @property
    def n_dropped(self) -> int:
        return self.n_candidates - self.n_used


class _Task:
    """Shared pairing logic; subclasses give ``name``, the two digit pools and ``logit_diff``."""

    name: str
    clean_digits: tuple[int, ...]
    corrupt_digits: tuple[int, ...]

    def logit_diff(self, logits: Float[Tensor, "batch 10"]) -> Float[Tensor, " batch"]:
        raise NotImplementedError

    def metric(self) -> Callable[[Tensor, Tensor | None], Tensor]:
        """Metric callable ``metric(logits, full_logits) -> -mean(logit_diff(logits))`` (to be minimised)."""

        def task_metric(logits: Tensor, full_logits: Tensor | None = None) -> Tensor:
            return -self.logit_diff(logits).mean()

        task_metric.__name__ = f"neg_logit_diff[{self.name}]"
        return task_metric

    def pairs(self, split, model: torch.nn.Module, n: int, seed: int, batch_index: int = 0) -> TaskBatch:
        """Batch ``batch_index`` of ``n`` correctly classified (clean, corrupted) pairs from ``split``.

        ``split`` is the MNIST test split (``hooked_bimt.load_mnist()[1]``). Both pools are shuffled
        with ``torch.Generator().manual_seed(seed)`` and paired row by row; candidate pairs are
        scanned in that order and batch b takes kept pairs ``b*n .. (b+1)*n - 1``, so batches of the
        same seed never share a pair. Tensors follow the model's device and dtype.
        """
        _check_pairs_args(split, n, seed, batch_index)
        clean_idx, corrupt_idx = self._candidates(split, seed)
        device, dtype = _device_dtype(model)
        images = split.images.reshape(len(split.labels), -1)
        labels = split.labels
        ok = _correct(model, images[clean_idx], labels[clean_idx], device, dtype)
        ok &= _correct(model, images[corrupt_idx], labels[corrupt_idx], device, dtype)
        rows, n_candidates = take_batch(ok, n, batch_index, self.name)
        ci, xi = clean_idx[rows], corrupt_idx[rows]
        return TaskBatch(
            clean=images[ci].to(device=device, dtype=dtype),
            corrupted=images[xi].to(device=device, dtype=dtype),
            clean_labels=labels[ci].to(device),
            corrupt_labels=labels[xi].to(device),
            n_candidates=n_candidates,
            n_used=n,
        )

    def _candidates(self, split, seed: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed)
        labels = split.labels
        pools = []
        for digits in (self.clean_digits, self.corrupt_digits):
            idx = torch.nonzero(torch.isin(labels, torch.tensor(digits))).flatten()
            pools.append(idx[torch.randperm(len(idx), generator=gen)])
        m = min(len(pools[0]), len(pools[1]))
        return pools[0][:m], pools[1][:m]


@dataclass(frozen=True)
class DigitPair(_Task):
    """Digit ``a`` (clean) against digit ``b`` (corrupted); logit diff ``logits[:, a] - logits[:, b]``."""

    a: int
    b: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"digit_pair:{self.a}:{self.b}"

    @property
    def clean_digits(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.a,)

    @property
    def corrupt_digits(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.b,)

    def logit_diff(self, logits: Float[Tensor, "batch 10"]) -> Float[Tensor, " batch"]:
        return logits[:, self.a] - logits[:, self.b]


@dataclass(frozen=True)
class Circle(_Task):
    """Closed-loop digits {0,6,8,9} (clean) against the rest; logit diff = LSE(loop) - LSE(others)."""

    name: str = "circle"
    clean_digits: tuple[int, ...] = LOOP_DIGITS
    corrupt_digits: tuple[int, ...] = NO_LOOP_DIGITS

    def logit_diff(self, logits: Float[Tensor, "batch 10"]) -> Float[Tensor, " batch"]:
        loop = torch.logsumexp(logits[:, list(self.clean_digits)], dim=-1)
        rest = torch.logsumexp(logits[:, list(self.corrupt_digits)], dim=-1)
        return loop - rest


Task = DigitPair | Circle


def digit_pair(a: int, b: int) -> DigitPair:
    """The digit-pair task ``a`` vs ``b`` (SPEC 6); the paper's Figure 1 uses 8 vs 3."""
    for name, d in (("a", a), ("b", b)):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 9:
            raise ValueError(f"digit_pair: {name} must be a digit 0..9, got {d!r}")
    if a == b:
        raise ValueError(f"digit_pair: the two digits must differ, got {a} and {b}")
    return DigitPair(a, b)


def circle() -> Circle:
    """The circle-detection task: digits with a closed loop {0, 6, 8, 9} against the others."""
    return Circle()


def get_task(name: str) -> Task:
    """Task from its name: ``"circle"``, ``"digit_pair:8:3"`` or ``"8v3"``; ``ValueError`` otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "circle":
        return circle()
    m = re.fullmatch(r"digit_pair:(\d):(\d)", key) or re.fullmatch(r"(\d)v(\d)", key)
    if m:
        return digit_pair(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unknown task {name!r}; expected 'circle', 'digit_pair:A:B' or 'AvB' (digits 0-9)")


def task_slug(task: Task) -> str:
    """A file-name-safe name: ``circle`` or ``8v3``."""
    return f"{task.a}v{task.b}" if isinstance(task, DigitPair) else task.name


def take_batch(ok: Tensor, n: int, batch_index: int, task: str) -> tuple[Tensor, int]:
    """Batch ``batch_index`` of ``n`` among candidate pairs scanned in order, ``ok`` marking the ones the model gets
    right: (the candidates' indices, how many candidates were looked at to fill it). Batch b takes kept pairs
    ``b*n .. (b+1)*n - 1``; ``ValueError`` when too few are kept (the study skips that batch)."""
    kept = torch.nonzero(ok).flatten()
    need = (batch_index + 1) * n
    if len(kept) < need:
        raise ValueError(f"task {task}: only {len(kept)} of {len(ok)} candidate pairs are classified correctly by the "
                         f"model; batch {batch_index} of size {n} needs {need}")
    rows = kept[batch_index * n : need]
    start = int(kept[batch_index * n - 1]) + 1 if batch_index > 0 else 0
    return rows, int(rows[-1]) + 1 - start


def _check_pairs_args(split, n: int, seed: int, batch_index: int) -> None:
    if not (hasattr(split, "images") and hasattr(split, "labels")):
        raise TypeError(f"split must be an MNISTSplit (with .images and .labels), got {type(split).__name__}")
    for label, v, low in (("n", n, 1), ("seed", seed, 0), ("batch_index", batch_index, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {v!r}")


def _device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


@torch.no_grad()
def _correct(model, x: Tensor, y: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Boolean (cpu) mask: does the model predict ``y`` for each row of ``x``."""
    out = []
    for s in range(0, len(x), _BLOCK):
        logits = model(x[s : s + _BLOCK].to(device=device, dtype=dtype))
        out.append(logits.argmax(-1).cpu() == y[s : s + _BLOCK])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
