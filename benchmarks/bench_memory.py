"""Peak training memory per regime and the swap / no-swap ratio (claim 4: the paper saw ~1.5x on CUDA).

Each regime trains 502 steps (swap step 500 inside the measured window) with the MNIST defaults on a
2,000-image subset; peak memory as ``TrainResult.metrics['peak_memory_bytes']`` with the study's meter
(``train(..., hook=TrainingMemoryMeter())``; method printed). On
CUDA also ``torch.cuda.max_memory_allocated`` over the whole ``train`` call (peak stats reset before
it, data included), the number the paper's Figure 5 reports.

    PYTHONPATH=. python benchmarks/bench_memory.py [--device cpu|cuda[:N]] [--regimes bimt,l1_local,...]

Twins (the same loss without swaps): bimt / l1_local, l1_swap / l1, and the faithful modes
bimt_original / l1_local, l1_swap_original / l1 where ``REGIMES`` has them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from hooked_bimt import REGIMES, TrainConfig, load_mnist, train  # noqa: E402
from hooked_bimt.memory import TrainingMemoryMeter  # noqa: E402

TWINS = {"bimt": "l1_local", "l1_swap": "l1", "bimt_original": "l1_local", "l1_swap_original": "l1"}


def check_device(device: str) -> torch.device:
    """The device, or ``SystemExit`` with a clear message (before any training) when it cannot be used."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise SystemExit(f"bench_memory: unknown device {device!r} ({err}); use cpu or cuda[:N]") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench_memory: --device {device} asked for, but CUDA is not available on this machine "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"bench_memory: unsupported device {device!r}; use cpu or cuda[:N]")
    return dev


def measure(name: str, cfg: TrainConfig, dev: torch.device, data) -> dict:
    """Train one regime; its peak memory by the training metric and, on CUDA, max_memory_allocated overall."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    result = train(name, cfg, seed=0, device=str(dev), data=data, progress=False, hook=TrainingMemoryMeter())
    out = {"peak": result.metrics["peak_memory_bytes"], "method": result.metrics["memory_method"],
           "swaps": result.metrics["swaps"]}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        out["cuda_max_allocated"] = torch.cuda.max_memory_allocated(dev)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("device_pos", nargs="?", default=None, help=argparse.SUPPRESS)  # old form: bench_memory.py cuda
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--regimes", default=",".join(REGIMES))
    args = ap.parse_args()
    dev = check_device(args.device_pos or args.device)
    regimes = [r for r in args.regimes.split(",") if r]
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown:
        raise SystemExit(f"bench_memory: unknown regimes {unknown}; expected names from {list(REGIMES)}")
    torch.set_num_threads(1)
    print(machine(), f"device {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))
    data = load_mnist()
    cfg = TrainConfig(steps=502, eval_every=502, train_subset=2_000, test_subset=1_000)
    res = {}
    for name in regimes:
        res[name] = r = measure(name, cfg, dev, data)
        extra = f"   cuda max_memory_allocated {r['cuda_max_allocated'] / 2**20:9.2f} MiB" if "cuda_max_allocated" in r else ""
        print(f"{name:<18}{r['peak'] / 1024:>12.1f} KiB   swaps {r['swaps']}{extra}", flush=True)
    print(f"method: {next(iter(res.values()))['method']}" if res else "no regimes")
    for swap, twin in TWINS.items():
        if swap in res and twin in res:
            line = f"{swap} / {twin}: {res[swap]['peak'] / res[twin]['peak']:.3f}x (training metric)"
            if "cuda_max_allocated" in res[swap]:
                line += f", {res[swap]['cuda_max_allocated'] / res[twin]['cuda_max_allocated']:.3f}x (max_memory_allocated)"
            print(line)


if __name__ == "__main__":
    main()
