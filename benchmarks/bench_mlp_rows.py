"""The fast attention engine's MLP (LayerNorm, W_in, the tanh GELU, W_out) on the 4-layer bench bridge's shapes
(d_model 128, d_mlp 512, float64, one thread): all rows at once against ``blocks.ROWS`` rows at a time
(``BridgeBlocks(..., rows=...)``, ``blocks.by_rows``), each timed in turn within every repeat, and the largest
difference between the two (the rows are computed alike).

    PYTHONPATH=. python benchmarks/bench_mlp_rows.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import bridge  # noqa: E402
from circuits.acdc.attention import blocks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = bridge(1)
    variants = {"all at once": blocks.BridgeBlocks(model, rows=1 << 30),
                f"{blocks.ROWS} at a time": blocks.BridgeBlocks(model)}
    g = torch.Generator().manual_seed(0)
    for rows in (192, 384, 768, 1536, 3072):  # 1, 2, 4, 8, 16 stacked states of 16 x 12 positions
        x = torch.randn(rows // 192, 16, 12, 128, generator=g, dtype=torch.float64)
        seconds = dict.fromkeys(variants, 0.0)
        outs = {name: bb.mlp(0, x) for name, bb in variants.items()}
        for _ in range(args.repeats):
            for name, bb in variants.items():
                t0 = time.perf_counter()
                bb.mlp(0, x)
                seconds[name] += time.perf_counter() - t0
        (a, b), (full, part) = seconds.values(), outs.values()
        print(f"{rows:5d} rows: " + ", ".join(f"{name} {1e3 * t / args.repeats:7.3f} ms" for name, t in seconds.items())
              + f" ({a / b:.2f}x); max |difference| {float((full - part).abs().max()):.1e}")


if __name__ == "__main__":
    main()
