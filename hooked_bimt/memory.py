"""Peak training memory, per SPEC section 5. ``TrainingMemoryMeter`` is the hook the study passes to
``train(..., hook=...)``: it meters ``TrainConfig.memory_window`` steps ending just after the first swap step.

- CUDA: ``torch.cuda.max_memory_allocated`` over the measured window (reset at its start), minus what was
  allocated on the device when the window opened, plus the bytes of the tensors alive then: the CPU meter's
  quantity. The device-wide figure alone also holds the cuBLAS workspace (~32 MiB, allocated at a process's
  first matrix product) and whatever earlier work in the process left on the device (seen on an H200: a
  no-swap model's peak read 68 MiB that way, 2.1 MiB this way).
- CPU: torch has no allocator statistics on CPU, so ``PeakMemory`` counts it itself. A
  ``TorchDispatchMode`` sees every tensor every aten op produces (forward, backward, optimizer,
  swaps); each new storage is added to a running total when first seen and removed when it is
  freed (a ``weakref.finalize`` on the storage, which torch keeps alive exactly as long as the
  C++ storage). The tensors alive when the window opens (parameters, gradients, optimizer state,
  cached cost scales) are counted from the start. peak = max over the window of the live bytes. Tensors made outside torch ops (``torch.from_numpy``) are not seen.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:
    from hooked_bimt.train_config import TrainConfig
    from hooked_bimt.training import Training

CPU_METHOD = (
    "cpu: TorchDispatchMode tracking every storage created by an aten op (freed via weakref.finalize) "
    "over a window of training steps that includes a swap step, plus the bytes of the tensors alive "
    "when the window opens (parameters, gradients, optimizer state, cost scales)"
)
CUDA_METHOD = (
    "cuda: torch.cuda.max_memory_allocated over a window of training steps that includes a swap step, minus the "
    "device's allocated bytes when the window opens, plus the bytes of the tensors alive then (parameters, "
    "gradients, optimizer state, cost scales); cuBLAS workspace and earlier work on the device excluded"
)


class PeakMemory(TorchDispatchMode):
    """Context manager: ``with PeakMemory(alive) as pm: ...`` then ``pm.peak`` (bytes).

    ``alive``: the tensors that exist when the window opens (counted from the start, and
    uncounted when freed, like any other).
    """

    def __init__(self, alive: Iterable[Tensor] = ()) -> None:
        super().__init__()
        self.live = 0
        self._tracked: set[int] = set()
        for t in alive:
            if isinstance(t, Tensor):
                self._track(t)
        self.peak = self.live

    def _free(self, key: int, nbytes: int) -> None:
        if key in self._tracked:
            self._tracked.discard(key)
            self.live -= nbytes

    def _track(self, t: Tensor) -> None:
        if t.device.type != "cpu":
            return
        s = t.untyped_storage()
        key = id(s)
        if key not in self._tracked and s.nbytes() > 0:
            self._tracked.add(key)
            self.live += s.nbytes()
            weakref.finalize(s, self._free, key, s.nbytes())

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                self._track(t)
        self.peak = max(self.peak, self.live)
        return out


def storage_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views of one storage counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        if isinstance(t, Tensor):
            s = t.untyped_storage()
            seen[(str(t.device), s.data_ptr())] = s.nbytes()
    return sum(seen.values())


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """Every tensor in an optimizer's per-parameter state."""
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]


class TrainingMemoryMeter:
    """Peak memory of a training run (SPEC 5): ``train(..., hook=TrainingMemoryMeter())`` adds
    ``peak_memory_bytes`` and ``memory_method`` to the result's metrics (a ``hooked_bimt.training.StepsHook``)."""

    def window(self, config: "TrainConfig") -> range:
        """The steps metered: ``memory_window`` steps ending just after the first swap step."""
        swap_step = config.swap_every - 1
        if swap_step >= config.steps:
            return range(0, min(config.memory_window, config.steps))
        end = min(swap_step + 2, config.steps)
        return range(max(0, end - config.memory_window), end)

    def around(self, training: "Training", run: Callable[[], None]) -> dict[str, Any]:
        """Run the window's steps under the meter; peak bytes, data excluded. No list of the start's tensors
        outlives the meter's set-up (one kept the freed gradients alive: + their bytes)."""
        device = training.device
        if device.type == "cuda":  # the CPU meter's quantity: alive at the start + what the window adds
            torch.cuda.synchronize(device)
            alive, start = storage_bytes(_alive(training)), torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            run()
            torch.cuda.synchronize(device)
            peak, method = torch.cuda.max_memory_allocated(device) - start + alive, CUDA_METHOD
        else:
            with PeakMemory(_alive(training)) as meter:
                run()
            peak, method = meter.peak, CPU_METHOD
        return {"peak_memory_bytes": int(peak), "memory_method": method + "; training/test data excluded"}


def _alive(training: "Training") -> list[Tensor]:
    """What the run holds between steps, data aside: parameters, gradients, optimizer state, cost scales."""
    params = list(training.model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    scales = [s for s in training.scales if isinstance(s, Tensor)]
    return params + grads + optimizer_tensors(training.optimizer) + scales
