"""Find the circuit a BIMT model uses to tell an 8 from a 3 (the paper's Figure 1 task), and print it.

    python demos/find_8v3_circuit.py [--load runs/one] [--regime bimt] [--threshold 1e-5] [--quick]

Trains a model unless ``--load`` points at a saved one (``demos/train_one.py --out``).
"""

import argparse
import os

from circuits.acdc import acdc
from circuits.evaluate import evaluate
from circuits.validate import check_output_file
from hooked_bimt.study.measure import discovery_model
from hooked_bimt.study.presets import demo_training
from hooked_bimt.study.tasks import digit_pair
from hooked_bimt import TrainResult, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--load", default=None, help="a directory written by TrainResult.save")
parser.add_argument("--regime", default="bimt")
parser.add_argument("--threshold", type=float, default=1e-5, help="ACDC KL threshold")
parser.add_argument("--out", default=None, help="save the circuit as JSON here")
parser.add_argument("--quick", action="store_true", default=os.environ.get("HOOKED_BIMT_QUICK") == "1")
args = parser.parse_args()
if args.out:  # refused now, not after training and discovery
    check_output_file(args.out)

setup = demo_training(args.quick)
if args.load:
    model = TrainResult.load(args.load).model
else:
    model = train(args.regime, setup.config, data=setup.data).model

# Exact (float64) discovery on 8-vs-3 pairs that the model classifies correctly.
model64 = discovery_model(model, device=str(model.device))
task = digit_pair(8, 3)
batch = task.pairs(setup.test, model64, n=setup.n_pairs, seed=0)
print(f"{batch.n_used} pairs used, {batch.n_dropped} candidates dropped (misclassified)")

circuit = acdc(model64, batch.clean, batch.corrupted, threshold=args.threshold, metric="kl")
scores = evaluate(model64, circuit, batch.clean, batch.corrupted, clean_labels=batch.clean_labels,
                  corrupt_labels=batch.corrupt_labels, logit_diff=task.logit_diff)
print(f"circuit: {circuit.n_edges} of {circuit.n_total_edges} edges (sparsity {circuit.sparsity:.4f}), "
      f"found in {circuit.seconds:.2f} s")
print(f"logit gap {scores['logit_gap']:.4f}, logit-difference recovery {scores['logit_diff_recovery']:.3f}")
strongest = sorted(circuit.effects.items(), key=lambda kv: -abs(kv[1]))
for edge, effect in [(e, v) for e, v in strongest if e in circuit][:10]:
    print(f"  {edge}  effect {effect:+.5f}")
if args.out:
    circuit.save(args.out)
    print(f"saved to {args.out}")
