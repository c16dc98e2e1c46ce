"""Demo: train a HookedResidualMLP on sign-XOR, find its circuit with ACDC, print it.

    PYTHONPATH=. python demos/residual_mlp.py [--threshold 0.01]
"""

from __future__ import annotations

import argparse

import torch

import circuits
from circuits.attribution import circuit_from_scores, eap
from hooked_bimt.zoo import HookedResidualMLP
from hooked_bimt.zoo.toy import fit, sign_xor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.01)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = HookedResidualMLP(4, 8, 2, 2)
    print(f"trained: accuracy {fit(model, sign_xor(4), steps=300, batch=128, lr=2e-2):.3f}")
    model = model.double()
    gen = torch.Generator().manual_seed(1)
    task = sign_xor(4)
    clean, _ = task(200, gen)
    corrupted, _ = task(200, gen)
    clean, corrupted = clean.double(), corrupted.double()
    found = circuits.acdc(model, clean, corrupted, threshold=args.threshold, metric="kl")
    print(f"ACDC: {found.n_edges} of {found.n_total_edges} edges (sparsity {found.sparsity:.3f}) in {found.seconds:.2f}s")
    for edge in sorted(found.edges):
        print("  ", edge)
    top = circuit_from_scores(eap(model, clean, corrupted, steps=10), model, top_n=found.n_edges)
    print(f"EAP-IG top-{found.n_edges} overlap with ACDC: {len(top.edges & found.edges)} edges")


if __name__ == "__main__":
    main()
