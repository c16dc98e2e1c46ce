"""Why the bridge engine stores its MLP weights (out, in): the MLP of a 4-layer, d_model 128 GPT-2 bridge in
float64 on stacked candidate states, ``x @ W + b`` with W (in, out) against ``F.linear(x, W^T, b)`` with W^T
(out, in) contiguous (the layout ``torch.nn.Linear`` keeps). Same numbers to rounding; prints ms per call.

    PYTHONPATH=. python benchmarks/bench_matmul_layout.py [--calls 300]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()}, torch {torch.__version__}, 1 thread, float64")
    g = torch.Generator().manual_seed(0)
    d, m = 128, 512
    w_in, w_out = torch.randn(d, m, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
    b_in, b_out = torch.randn(m, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    wt_in, wt_out = w_in.T.contiguous(), w_out.T.contiguous()

    def act(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")

    def in_out(x: torch.Tensor) -> torch.Tensor:
        return act(x @ w_in + b_in) @ w_out + b_out

    def out_in(x: torch.Tensor) -> torch.Tensor:
        return F.linear(act(F.linear(x, wt_in, b_in)), wt_out, b_out)

    for states in (1, 3):
        x = torch.randn(states, 16, 12, d, generator=g, dtype=torch.float64)
        assert torch.allclose(in_out(x), out_in(x), rtol=1e-12, atol=1e-12)
        times = {}
        for name, f in (("x @ W (in, out)", in_out), ("F.linear, W (out, in)", out_in)):
            for _ in range(20):
                f(x)
            t0 = time.perf_counter()
            for _ in range(args.calls):
                f(x)
            times[name] = (time.perf_counter() - t0) / args.calls * 1e3
        print(f"{states} stacked states: " + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()) +
              f"; ratio {times['x @ W (in, out)'] / times['F.linear, W (out, in)']:.2f}x")


if __name__ == "__main__":
    main()
