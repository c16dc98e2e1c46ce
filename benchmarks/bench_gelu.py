"""GPT-2's tanh-GELU in float64 on one thread: torch's kernel against ``blocks.gelu_tanh`` (``x / (1 + exp(-2y))``),
with ``exp`` and ``tanh`` alone for scale, and the largest difference from HF's written-out formula.

    PYTHONPATH=. python benchmarks/bench_gelu.py [--rows 768] [--cols 512] [--repeats 40]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from circuits.acdc.attention.blocks import gelu_tanh


def per_call(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=768)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.rows, args.cols, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hf = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    kernel = lambda t: torch.nn.functional.gelu(t, approximate="tanh")  # noqa: E731
    print(f"float64, {x.numel()} elements, 1 thread, {args.repeats} calls each")
    for name, fn in (("torch gelu(approximate='tanh')", kernel), ("blocks.gelu_tanh", gelu_tanh),
                     ("exp alone", torch.exp), ("tanh alone", torch.tanh)):
        dt = per_call(fn, x, args.repeats)
        print(f"{name:32s} {1e3 * dt:7.3f} ms  {1e9 * dt / x.numel():5.1f} ns/element")
    print(f"max |difference| from HF's formula: torch kernel {float((kernel(x) - hf).abs().max()):.2e}, "
          f"gelu_tanh {float((gelu_tanh(x) - hf).abs().max()):.2e}")


if __name__ == "__main__":
    main()
