"""Demo: train a 2-layer attention-only transformer to predict the first token, find its circuit.

    PYTHONPATH=. python demos/attention_only.py [--threshold 0.05]

Clean and corrupted sequences differ only in the first token, so the circuit is the path that moves
token 0 to the last position.
"""

from __future__ import annotations

import argparse

import torch

import circuits
from circuits.attribution import circuit_from_scores, eap
from hooked_bimt.zoo import HookedAttnOnly
from hooked_bimt.zoo.toy import fit, first_token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.05)
    args = ap.parse_args()
    torch.manual_seed(0)
    n_ctx, d_vocab = 4, 5
    model = HookedAttnOnly(n_layers=2, n_heads=2, d_model=16, d_head=8, n_ctx=n_ctx, d_vocab=d_vocab)
    print(f"trained: accuracy {fit(model, first_token(n_ctx, d_vocab), steps=200, batch=128, lr=2e-2):.3f}")
    model = model.double()
    gen = torch.Generator().manual_seed(1)
    clean, _ = first_token(n_ctx, d_vocab)(200, gen)
    corrupted = clean.clone()
    corrupted[:, 0] = (clean[:, 0] + torch.randint(1, d_vocab, (200,), generator=gen)) % d_vocab
    found = circuits.acdc(model, clean, corrupted, threshold=args.threshold, metric="kl")
    print(f"ACDC: {found.n_edges} of {found.n_total_edges} edges (sparsity {found.sparsity:.3f}) in {found.seconds:.2f}s")
    for edge in sorted(found.edges):
        print("  ", edge)
    top = circuit_from_scores(eap(model, clean, corrupted), model, top_n=max(found.n_edges, 1))
    print("EAP top edges:", ", ".join(str(e) for e in sorted(top.edges)))


if __name__ == "__main__":
    main()
