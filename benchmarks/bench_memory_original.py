"""Claim 4 against the original notebook's swap algorithm (issue 14): peak training memory and time of
the brute-force relocate (a full connection cost of a deep-copied model per candidate swap, as the
notebook scores swaps; ``_brute_relocate.py``, kept out of the library) vs our fast relocate vs the same swaps found the fast way vs no swaps.

Each run trains the MNIST defaults (784-100-100-10, float32, batch 100, swaps every 500 steps) for
``steps`` steps (default 1002: two relocate calls, at steps 500 and 1000) on a 2,000-image subset. Peak
memory is ``TrainResult.metrics['peak_memory_bytes']``: the same meter as ``bench_memory.py`` (CPU:
``hooked_bimt.memory.PeakMemory`` over steps 498-500, which include the first relocate call; CUDA:
``torch.cuda.max_memory_allocated`` over the same window). Relocate time is measured around every
relocate call; the one reported is the last call's (outside the metered window, whose dispatch-mode
meter slows every op); training time is the whole run, metered window included.
A second table meters one relocate call alone (CPU meter), on the no-swap run's trained model right after
an AdamW step (parameters, gradients and moments alive, as in the notebook's loop): its scratch memory
above those tensors, and that peak over the no-swap training window's peak.
    PYTHONPATH=. python benchmarks/bench_memory_original.py [device] [steps]
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from _brute_relocate import BruteForceTraining, brute_force_swaps  # noqa: E402

from hooked_bimt import TrainConfig, load_mnist  # noqa: E402
from hooked_bimt.memory import PeakMemory, TrainingMemoryMeter, optimizer_tensors  # noqa: E402
from hooked_bimt.regimes import get_regime  # noqa: E402
from hooked_bimt.swaps import relocate  # noqa: E402
from hooked_bimt.swaps_original import relocate_original  # noqa: E402
from hooked_bimt.training import Training  # noqa: E402

RUNS = [  # (label, regime, brute-force search, no-swap twin)
    ("l1_local (no swaps)", "l1_local", False, None),
    ("bimt (ours, fast)", "bimt", False, "l1_local (no swaps)"),
    ("bimt_original fast", "bimt_original", False, "l1_local (no swaps)"),
    ("bimt_original brute force", "bimt_original", True, "l1_local (no swaps)"),
    ("l1 (no swaps)", "l1", False, None),
    ("l1_swap (ours, fast)", "l1_swap", False, "l1 (no swaps)"),
    ("l1_swap_original fast", "l1_swap_original", False, "l1 (no swaps)"),
]


def timed(base: type[Training], times: list[float]) -> type[Training]:
    """``base`` whose relocation calls append their wall time (synchronised on CUDA) to ``times``."""

    class Timed(base):
        def move_neurons(self) -> int:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            out = super().move_neurons()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
            return out

    return Timed


def run(regime, brute, cfg, data, device):
    times: list[float] = []
    training = timed(BruteForceTraining if brute else Training, times)
    result = training(get_regime(regime), cfg, 0, torch.device(device), data).run(hook=TrainingMemoryMeter())
    return result, times


def relocate_alone(model, cfg, data, no_swap_peak: int) -> None:
    """One relocate call of each kind, metered alone with parameters, moments (and gradients) alive."""
    x, y = data[0].flat()[: cfg.batch_size], data[0].labels[: cfg.batch_size]

    def brute(m, o):
        return len(brute_force_swaps(m, cfg.top_k, 2.0, optimizer=o))

    variants = [  # (label, relocate, gradients kept alive)
        ("ours (relocate)", lambda m, o: relocate(m, cfg.top_k, [2.0, 2.0, 0.0], optimizer=o), True),
        ("original, fast", lambda m, o: relocate_original(m, cfg.top_k, 2.0, optimizer=o), True),
        ("original, brute force", brute, True),
        ("  same, gradients freed", brute, False),
    ]
    print(f"{'relocate alone':<24}{'alive KiB':>10}{'scratch KiB':>12}{'peak / no-swap train peak':>27}{'s':>8}")
    for label, fn, keep_grads in variants:
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr)
        torch.nn.functional.mse_loss(m(x), torch.nn.functional.one_hot(y, 10).to(m.dtype)).backward()
        opt.step()
        if not keep_grads:
            opt.zero_grad(set_to_none=True)
        params = list(m.parameters())
        alive = params + [p.grad for p in params if p.grad is not None] + optimizer_tensors(opt)
        t0 = time.perf_counter()
        with PeakMemory(alive) as meter:
            base = meter.live
            fn(m, opt)
        dt = time.perf_counter() - t0
        scratch = meter.peak - base
        print(f"{label:<24}{base / 1024:>10.1f}{scratch / 1024:>12.1f}{meter.peak / no_swap_peak:>27.3f}{dt:>8.2f}")


def main(device: str = "cpu", steps: int = 1002) -> None:
    torch.set_num_threads(1)
    print(machine(), f"device {device}")
    data = load_mnist()
    cfg = TrainConfig(steps=steps, eval_every=steps, train_subset=2_000, test_subset=1_000)
    peaks, method, models = {}, "", {}
    print(f"{'run':<28}{'peak KiB':>10}{'x no-swap':>10}{'train s':>9}{'relocate s (last)':>20}{'swaps':>7}")
    for label, regime, brute, twin in RUNS:
        result, times = run(regime, brute, cfg, data, device)
        m = result.metrics
        peaks[label], method, models[label] = m["peak_memory_bytes"], m["memory_method"], result.model
        ratio = f"{peaks[label] / peaks[twin]:.3f}" if twin else "-"
        per_call = f"{times[-1]:.3f} ({len(times)} calls)" if times else "-"
        kib = peaks[label] / 1024
        print(f"{label:<28}{kib:>10.1f}{ratio:>10}{m['train_seconds']:>9.1f}{per_call:>20}{m['swaps']:>7}")
    print(f"method: {method}")
    if device == "cpu":
        relocate_alone(models["l1_local (no swaps)"], cfg, data, peaks["l1_local (no swaps)"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu", int(sys.argv[2]) if len(sys.argv) > 2 else 1002)
