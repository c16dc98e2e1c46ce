"""EAP on a TransformerLens bridge against TransformerLens's own edge attribution (issue 11 item 4).

The bridge of ``bench_bridge_acdc.py`` (4 layers, 8 heads, d_model 128, float64), 16 clean/corrupted
12-token sequences; the metric is a logit difference at the last position. TL's
``attribution_patch(..., EdgeAttributionConfig(granularity="edge"))`` runs per example; ``circuits.eap`` with
``point="corrupted"`` scores the same edges in one batched pass and equals minus TL's scores summed over
positions. Prints both times (same process, same inputs), their ratio and the largest disagreement.

    PYTHONPATH=. python benchmarks/bench_bridge_eap.py [--layers 4] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

import circuits

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge_acdc import batches, bridge  # noqa: E402


def task(logits: torch.Tensor) -> torch.Tensor:
    return (logits[..., -1, 3] - logits[..., -1, 5]).mean()


def spec7(node, n_layers: int) -> tuple[str, int]:
    kind = node.kind
    if kind == "embed":
        return "embed.hook_out", 0
    if kind == "attn_head_out":
        return f"blocks.{node.layer}.attn.hook_result", node.head
    if kind in ("q_input", "k_input", "v_input"):
        return f"blocks.{node.layer}.attn.hook_{kind}", node.head
    if kind == "mlp_out":
        return f"blocks.{node.layer}.mlp.hook_out", 0
    if kind == "mlp_in":
        return f"blocks.{node.layer}.hook_mlp_in", 0
    return f"blocks.{n_layers - 1}.hook_out", 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()}, torch {torch.__version__}, 1 thread, float64")
    model, (clean, corrupted) = bridge(args.layers), batches()
    circuits.graph_of(model)
    t0 = time.perf_counter()
    tl = attribution_patch(model, clean, corrupted, task, EdgeAttributionConfig(granularity="edge"))
    t_tl = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = circuits.eap(model, clean, corrupted, lambda logits, full: task(logits), point="corrupted")
    t_ours = time.perf_counter() - t0
    summed: dict[circuits.Edge, float] = {}
    for (w, r), v in tl.edge_scores.items():
        e = circuits.Edge(*spec7(w, args.layers), *spec7(r, args.layers))
        summed[e] = summed.get(e, 0.0) + v
    err = max(abs(ours[e] + summed[e]) for e in ours)
    scale = max(abs(v) for v in ours.values())
    print(f"{len(ours)} edges; TL attribution_patch {t_tl:.2f} s, circuits.eap {t_ours:.3f} s: {t_tl / t_ours:.1f}x; "
          f"max |eap + TL| = {err:.2e} (largest score {scale:.2e})")
    t0 = time.perf_counter()
    circuits.eap(model, clean, corrupted, "kl", steps=args.steps)
    print(f"EAP-IG ({args.steps} steps, KL at the last position): {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
