"""Demo: the induction circuit of a 2-layer transformer trained in this repo, found with ACDC and EAP-IG.

    PYTHONPATH=. python demos/induction_circuit.py [--model data/induction] [--train] [--out out/induction]

The model (``hooked_bimt.zoo.induction``: Llama-style, rotary positions; repeated random tokens, trained on
CPU, saved as safetensors + JSON) is loaded as a TransformerLens 4 ``TransformerBridge``. Its attention patterns name the
previous-token head (layer 0) and the induction head (layer 1); the known mechanism is the edge
``blocks.0.attn.hook_result[prev] -> blocks.1.attn.hook_k_input[induction]`` (K-composition).
Clean prompts end inside the second copy; corrupted ones reverse the first copy (same tokens, other
order), so only induction tells them apart. ``--train`` retrains (a few minutes). Existing pages in ``--out`` (and,
with ``--train``, a saved model) are kept unless ``--overwrite``. HOOKED_BIMT_QUICK=1 uses fewer prompts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import circuits
import circuits.viz as viz
from circuits import Edge
from circuits.attribution import circuit_from_scores
from circuits.metrics import logit_diff
from circuits.validate import check_output_file
from hooked_bimt.zoo.induction import (
    InductionSetup, head_scores, load_induction, prompts, save_induction, train_induction,
)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "induction"


def full_sequences(batch: dict) -> torch.Tensor:
    """The clean prompts with their answer appended: whole ``[BOS, filler, r, r]`` sequences."""
    return torch.cat([batch["clean"], batch["clean_labels"][:, None]], 1)


def known_edge(scores: dict) -> tuple[Edge, int, int]:
    """The K-composition edge between the strongest previous-token head of layer 0 and induction head of layer 1."""
    prev = int(scores["previous_token"][0].argmax())
    ind = int(scores["induction"][1].argmax())
    return Edge("blocks.0.attn.hook_result", prev, "blocks.1.attn.hook_k_input", ind), prev, ind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--train", action="store_true", help="train and save the model first")
    ap.add_argument("--overwrite", action="store_true", help="replace existing pages (and, with --train, a saved model)")
    ap.add_argument("--threshold", type=float, default=0.05, help="ACDC threshold on the logit difference")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("HOOKED_BIMT_OUT", "out")) / "induction")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("HOOKED_BIMT_QUICK") == "1")
    args = ap.parse_args()
    pages = {name: args.out / f"induction_{name}.html" for name in ("acdc", "eap_ig")}
    for page in pages.values():  # before any work: existing pages are kept unless --overwrite
        check_output_file(page, overwrite=args.overwrite)
    if args.train:
        setup = InductionSetup()
        model, record = train_induction(setup, log_every=250)
        save_induction(model, setup, args.model, record=record, overwrite=args.overwrite)
        print(f"trained and saved to {args.model}: {record}")

    bridge, setup = load_induction(args.model)  # float64, eval mode
    half = 6
    batch = prompts(16 if args.quick else 48, setup, half, seed=1)
    with torch.no_grad():
        top1 = bridge(batch["clean"])[:, -1].argmax(-1)
    print(f"accuracy at the last position (clean prompts, half={half}): {(top1 == batch['clean_labels']).double().mean():.3f}")
    heads = head_scores(bridge, full_sequences(batch), half)
    edge, prev, ind = known_edge(heads)
    print(f"attention patterns: previous-token head L0H{prev} (score {heads['previous_token'][0, prev]:.2f}), "
          f"induction head L1H{ind} (score {heads['induction'][1, ind]:.2f}); known edge {edge}")

    metric = logit_diff(batch["clean_labels"], batch["corrupt_labels"])
    found = circuits.acdc(bridge, batch["clean"], batch["corrupted"], threshold=args.threshold, metric=metric)
    print(f"ACDC: {found.n_edges} of {found.n_total_edges} edges in {found.seconds:.1f}s "
          f"({found.settings['engine_used']} engine); known edge found: {edge in found.edges}")
    for e in sorted(found.edges, key=lambda e: -abs(found.effects[e])):
        print(f"   {found.effects[e]:+.3f}  {e}")

    scores = circuits.eap(bridge, batch["clean"], batch["corrupted"], metric, steps=8 if args.quick else 20)
    top = circuit_from_scores(scores, bridge, top_n=max(found.n_edges, 1))
    rank = sorted(scores, key=lambda e: -abs(scores[e])).index(edge) + 1
    print(f"EAP-IG: known edge ranked {rank} of {len(scores)}; top {top.n_edges} edges:")
    for e in sorted(top.edges, key=lambda e: -abs(scores[e])):
        print(f"   {scores[e]:+.3f}  {e}")

    args.out.mkdir(parents=True, exist_ok=True)
    for name, circuit in (("acdc", found), ("eap_ig", top)):
        page = viz.circuit_graph(bridge, circuit, title=f"Induction circuit ({name}): {circuit.n_edges} edges")
        print(f"view: {page.save(pages[name], overwrite=args.overwrite)}")


if __name__ == "__main__":
    main()
