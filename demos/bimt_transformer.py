"""Demo: train a GPT-2-style transformer with BIMT, find its circuit with ACDC and EAP-IG, draw both.

    PYTHONPATH=. python demos/bimt_transformer.py [--task modular_addition|induction] [--regime bimt] [--out out/bimt_transformer]

Trains ``hooked_bimt.transformer.train(regime, task)`` (SPEC 8: the original BioTransformer's coordinates, cost and
swaps on a Hugging Face ``GPT2LMHeadModel``), saves it (safetensors + JSON, hashed), loads it back as a
TransformerLens 4 ``TransformerBridge``, runs ACDC (logit difference, fast engine) and EAP-IG on the task's
clean/corrupted prompts, compares the two circuits by logit-difference recovery, and writes
``network_vs_circuit.png`` (neurons at their positions, weights, the circuit beside, the measured wiring length
against random placements) and the offline viewer's page: the circuit over every neuron at its BIMT position
with its weights (``hooked_bimt.transformer.viewer.bimt_placement``). Modular addition uses p = 23 here (the full table; ``--p``). Existing outputs are kept unless
``--overwrite``. HOOKED_BIMT_QUICK=1: ``TrainConfig.quick()`` and p = 11 (well under a minute).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

import circuits
import circuits.viz as viz
from circuits.validate import check_output_file
from hooked_bimt.transformer import InductionTask, ModularAdditionTask, TrainConfig, connection_cost, load, save, train
from hooked_bimt.transformer.figure import bimt_transformer_figure
from hooked_bimt.transformer.viewer import bimt_placement


def recovery(bridge, circuit, task) -> float:
    """Logit-difference recovery (SPEC 5): (LD_circuit - LD_corrupted) / (LD_full - LD_corrupted)."""
    def ld(logits):
        rows = torch.arange(len(task.clean_labels))
        return (logits[rows, -1, task.clean_labels] - logits[rows, -1, task.corrupt_labels]).mean().item()
    with torch.no_grad():
        full, bad = ld(bridge(task.clean)), ld(bridge(task.corrupted))
        return (ld(circuits.run_circuit(bridge, circuit, task.clean, task.corrupted)) - bad) / (full - bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["modular_addition", "induction"], default="modular_addition")
    ap.add_argument("--regime", default="bimt", help="vanilla | l1 | l1_local | l1_swap | bimt")
    ap.add_argument("--p", type=int, default=None, help="modulus of modular addition (default 23; quick: 11)")
    ap.add_argument("--threshold", type=float, default=0.05, help="ACDC threshold on the logit difference")
    ap.add_argument("--lambda", dest="lambda_", type=float, default=None,
                    help="first lambda of the schedule (default TrainConfig's 1e-3; 1e-2 wires more locally)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default TrainConfig's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("HOOKED_BIMT_OUT", "out")) / "bimt_transformer")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("HOOKED_BIMT_QUICK") == "1")
    args = ap.parse_args()
    figure, page = args.out / "network_vs_circuit.png", args.out / "circuit.html"
    for path in (figure, page):  # before any work
        check_output_file(path, overwrite=args.overwrite)
    config = TrainConfig.quick() if args.quick else TrainConfig()
    config = dataclasses.replace(config, **{k: v for k, v in (("lambda_", args.lambda_), ("steps", args.steps))
                                           if v is not None})
    task = (ModularAdditionTask(p=args.p or (11 if args.quick else 23)) if args.task == "modular_addition"
            else InductionTask())
    result = train(args.regime, task, config, seed=args.seed)
    print(f"trained {args.regime} on {task.name}: accuracy {result.accuracy:.3f}, "
          f"swaps {sum(n for _, n in result.history['swaps'])}, cost {connection_cost(result.module).item():.4f}")
    loaded = load(save(result, args.out / "model", overwrite=args.overwrite))  # from disk, as a user would
    bridge, task = loaded.bridge, loaded.task
    acdc = circuits.acdc(bridge, task.clean, task.corrupted, threshold=args.threshold, metric=task.metric)
    scores = circuits.eap(bridge, task.clean, task.corrupted, metric=task.metric, steps=8)  # EAP-IG
    eap_ig = circuits.circuit_from_scores(scores, bridge, top_n=acdc.n_edges)
    print(f"ACDC: {acdc.n_edges} of {acdc.n_total_edges} edges, recovery {recovery(bridge, acdc, task):.3f}, "
          f"{acdc.seconds:.2f} s")
    print(f"EAP-IG (top {eap_ig.n_edges}): recovery {recovery(bridge, eap_ig, task):.3f}, "
          f"shared with ACDC: {len(acdc.edges & eap_ig.edges)}")
    fig = bimt_transformer_figure(loaded.module, acdc, figure, title=f"{args.regime}, {task.name}: ",
                                  overwrite=args.overwrite)
    loc = fig.locality
    print(f"wiring length {loc.length:.3f}, random placements {loc.expected_random:.3f} (ratio {loc.ratio:.2f})")
    viz.circuit_graph(bridge, acdc, placement=bimt_placement(loaded.module)).save(page, overwrite=args.overwrite)
    print(f"wrote {figure} and {page}")


if __name__ == "__main__":
    main()
