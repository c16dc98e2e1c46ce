"""Two training regimes side by side: accuracy, training cost and their 8-vs-3 circuits.

    python demos/compare_regimes.py [--regimes l1 bimt] [--quick]
"""

import argparse
import os

from circuits.acdc import acdc
from circuits.evaluate import evaluate
from hooked_bimt.study.measure import discovery_model
from hooked_bimt.study.presets import demo_training
from hooked_bimt.study.tasks import digit_pair
from hooked_bimt import train
from hooked_bimt.memory import TrainingMemoryMeter

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--regimes", nargs=2, default=["l1", "bimt"])
parser.add_argument("--threshold", type=float, default=1e-5)
parser.add_argument("--quick", action="store_true", default=os.environ.get("HOOKED_BIMT_QUICK") == "1")
args = parser.parse_args()

setup = demo_training(args.quick)
test = setup.test
task = digit_pair(8, 3)
table = {}
for regime in args.regimes:
    result = train(regime, setup.config, seed=0, data=setup.data, progress=False, hook=TrainingMemoryMeter())
    model64 = discovery_model(result.model, device=str(result.model.device))
    batch = task.pairs(test, model64, n=setup.n_pairs, seed=0)
    circuit = acdc(model64, batch.clean, batch.corrupted, threshold=args.threshold, metric="kl")
    scores = evaluate(model64, circuit, batch.clean, batch.corrupted, clean_labels=batch.clean_labels,
                      corrupt_labels=batch.corrupt_labels, logit_diff=task.logit_diff)
    table[regime] = {
        "test accuracy": result.metrics["test_accuracy"], "train s": result.metrics["train_seconds"],
        "peak memory MiB": result.metrics["peak_memory_bytes"] / 2**20, "edges": circuit.n_edges,
        "edge sparsity": circuit.sparsity, "logit gap": scores["logit_gap"], "discovery s": circuit.seconds,
    }

print(f"{'':18}" + "".join(f"{r:>14}" for r in args.regimes))
for key in table[args.regimes[0]]:
    print(f"{key:18}" + "".join(f"{table[r][key]:>14.4g}" for r in args.regimes))
