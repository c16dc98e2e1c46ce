"""GPT-2's tanh-GELU in float64 on one thread: torch's kernel against ``blocks.gelu_tanh`` (``x / (1 + exp(-2y))``)
and the ``x sigmoid(2y)`` form (tried in session 5, reverted), with ``exp`` and ``tanh`` alone for scale, and the
largest difference from HF's written-out formula.

    PYTHONPATH=. python benchmarks/bench_gelu.py [--rows 768] [--cols 512] [--repeats 40] [--activations]

``--activations``: instead of ``randn``, the layer-1 MLP pre-activations of ``bench_bridge_acdc.py``'s 4-layer
bridge on its clean batch, stacked 4 times (what the engine's GELU sees; the kernels' speed depends on the values).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from circuits.acdc.attention.blocks import gelu_tanh

_C = math.sqrt(2.0 / math.pi)


def gelu_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The same function as ``x sigmoid(2y)``."""
    y = x * x
    y.mul_(2.0 * 0.044715 * _C).add_(2.0 * _C).mul_(x)
    return y.sigmoid_().mul_(x)


def activations() -> torch.Tensor:
    """Layer 1's MLP pre-activations of the benchmark bridge on its clean batch, 4 copies: ``(4, 16, 12, 512)``."""
    import sys
    from pathlib import Path

    import torch.nn.functional as F

    from circuits.acdc.attention.blocks import BridgeBlocks, norm

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bridge_acdc import batches, bridge

    bb = BridgeBlocks(bridge(4))
    clean, _ = batches()
    with torch.no_grad():
        e, pos = bb.embed(clean)
        L = bb.layers[1]
        pre = F.linear(norm(e + pos, L.norm2), L.mlp.W_in, L.mlp.b_in)
    return pre.unsqueeze(0).expand(4, *pre.shape).contiguous()


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
    ap.add_argument("--activations", action="store_true", help="the bench bridge's layer-1 MLP inputs, not randn")
    args = ap.parse_args()
    for name in ("rows", "cols", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    if args.activations:
        x = activations()
    else:
        x = torch.randn(args.rows, args.cols, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hf = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    kernel = lambda t: torch.nn.functional.gelu(t, approximate="tanh")  # noqa: E731
    print(f"float64, {x.numel()} elements, 1 thread, {args.repeats} calls each")
    print(f"input: {'layer-1 MLP pre-activations' if args.activations else 'randn'}, std {float(x.std()):.2f}")
    for name, fn in (("torch gelu(approximate='tanh')", kernel), ("blocks.gelu_tanh", gelu_tanh),
                     ("x sigmoid(2y)", gelu_sigmoid),
                     ("exp alone", torch.exp), ("tanh alone", torch.tanh)):
        dt = per_call(fn, x, args.repeats)
        print(f"{name:32s} {1e3 * dt:7.3f} ms  {1e9 * dt / x.numel():5.1f} ns/element")
    print(f"max |difference| from HF's formula: torch kernel {float((kernel(x) - hf).abs().max()):.2e}, "
          f"gelu_tanh {float((gelu_tanh(x) - hf).abs().max()):.2e}")


if __name__ == "__main__":
    main()
