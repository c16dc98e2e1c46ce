"""ACDC's attention engine on a CUDA device (issue 25 item 4): fast on the device vs reference on the device vs
fast on the CPU, on the growth table's largest bridges; the edge sets must be identical.

Sizes (``benchmarks/bench_bridge_acdc.py``'s seeded GPT-2 bridges, float64, KL at the last position, threshold
0.0002 as in RESULTS.md's growth table): ``8L`` (8 layers, 6637 edges), ``4L`` (4 layers, 1519 edges), both with
16 prompts x 12 tokens, and ``pythia70m`` (the Pythia-70m-shaped GPT-NeoX, 8 prompts x 12 tokens). For each
size, in this order: the fast engine on the CPU (``--threads`` torch threads), on the device (a first run with
the one-time costs, then a timed one), then the reference on the device if the size is in ``--reference``
(the slowest step, so last). One line per run, flushed, so that a run cut short still reports what it did.
``--tiny`` (2 layers, 4 prompts x 8 tokens) checks the script itself, e.g. on a machine without a GPU:

    PYTHONPATH=. python benchmarks/gpu_attention.py [--device cuda] [--sizes 8L 4L] [--reference 4L 8L]
        [--threshold 0.0002] [--threads 1]
    PYTHONPATH=. python benchmarks/gpu_attention.py --device cpu --tiny

Without a CUDA device, ``--device cuda`` (the default) stops at once with a message and exit status 2.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bridge_acdc import batches, hf_model, pythia70m_hf, wrap  # noqa: E402

import circuits  # noqa: E402

# name: (HF model builder, prompts, tokens); "tiny" is only for --tiny
SIZES = {
    "8L": (lambda: hf_model(8), 16, 12),
    "4L": (lambda: hf_model(4), 16, 12),
    "pythia70m": (pythia70m_hf, 8, 12),
    "tiny": (lambda: hf_model(2), 4, 8),
}


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", nargs="*", default=["8L", "4L"], choices=[s for s in SIZES if s != "tiny"])
    ap.add_argument("--reference", nargs="*", default=["4L", "8L"], choices=list(SIZES),
                    help="sizes whose reference engine also runs on the device")
    ap.add_argument("--threshold", type=float, default=0.0002)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the CPU runs")
    ap.add_argument("--tiny", action="store_true", help="2 layers, 4 prompts x 8 tokens (a check of the script)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.sizes, args.reference = ["tiny"], ["tiny"]
    if args.threads < 1 or not args.threshold >= 0:
        ap.error("need --threads >= 1 and --threshold >= 0")
    return args


def require_device(device: str) -> torch.device:
    """The torch device, or a clear stop (exit status 2) when it is CUDA and none is available."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_attention.py: no CUDA device available (torch {torch.__version__}, "
              f"torch.version.cuda={torch.version.cuda}); run it where a GPU is, or pass --device cpu --tiny "
              "to check the script", file=sys.stderr)
        raise SystemExit(2)
    return dev


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run(model, clean, corrupted, threshold: float, engine: str, dev: torch.device):
    sync(dev)
    t0 = time.perf_counter()
    c = circuits.acdc(model, clean.to(dev), corrupted.to(dev), threshold=threshold, engine=engine)
    sync(dev)
    return c, time.perf_counter() - t0


def one_size(name: str, dev: torch.device, args) -> bool:
    """Fast on the CPU, fast on the device (twice), reference on the device if asked; True if the edges agree."""
    build, prompts, tokens = SIZES[name]
    arch, hf, cfg = build()
    clean, corrupted = batches(vocab=cfg.vocab_size, batch=prompts, seq=tokens)
    cpu_model = wrap(arch, hf, cfg)
    cpu, t_cpu = run(cpu_model, clean, corrupted, args.threshold, "fast", torch.device("cpu"))
    del cpu_model
    print(f"{name}: {cpu.n_total_edges} edges, {prompts} prompts x {tokens} tokens; CPU fast "
          f"({cpu.settings['engine_used']}) {t_cpu:.2f} s, {cpu.n_edges} kept", flush=True)
    model = wrap(*build(), device=str(dev))
    first, t_first = run(model, clean, corrupted, args.threshold, "fast", dev)
    fast, t_fast = run(model, clean, corrupted, args.threshold, "fast", dev)
    same = first.edges == cpu.edges and fast.edges == cpu.edges
    print(f"{name}: {dev} fast ({fast.settings['engine_used']}) {t_fast:.2f} s (first run {t_first:.2f} s), "
          f"{fast.n_edges} kept; identical edges to the CPU's: {same}; device / CPU time {t_fast / t_cpu:.2f}x",
          flush=True)
    if name in args.reference:
        ref, t_ref = run(model, clean, corrupted, args.threshold, "reference", dev)
        worst = max(abs(ref.effects[e] - fast.effects[e]) for e in ref.effects) \
            if ref.effects.keys() == fast.effects.keys() else float("nan")
        same = same and ref.edges == fast.edges
        print(f"{name}: {dev} reference {t_ref:.2f} s, {ref.n_edges} kept; identical edges: {ref.edges == fast.edges};"
              f" max |effect difference| {worst:.2e}; reference / fast on {dev}: {t_ref / t_fast:.1f}x", flush=True)
    return same


def main(argv=None) -> None:
    args = parse(argv)
    dev = require_device(args.device)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {dev} ({name}); torch {torch.__version__}, {args.threads} CPU thread(s), float64, "
          f"threshold {args.threshold}", flush=True)
    results = {size: one_size(size, dev, args) for size in args.sizes}
    print("summary: " + ", ".join(f"{s} edges identical: {ok}" for s, ok in results.items()), flush=True)
    if not all(results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
