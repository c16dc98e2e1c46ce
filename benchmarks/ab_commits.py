"""A/B of the fast ACDC engine between commits on the 4-layer bridge of ``bench_bridge_acdc.py`` (GPT-2 unless
``--arch``): CPU time of
one process per run (one thread), the commits alternating within each repeat so the VM's drifting speed hits them
alike. Each commit is checked out once into a temporary git worktree; every run is a fresh process importing that
tree's ``circuits`` (this venv's packages), so the first-call costs a user pays are in every number.

    PYTHONPATH=. python benchmarks/ab_commits.py [--repeats 3] [--layers 4] [--arch gpt2] COMMIT [COMMIT ...]

``HEAD`` or any commit of this repository; prints each run (CPU seconds, edges kept, passes) and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_RUN = """
import sys, time, torch
sys.path.insert(0, {bench!r})
from bench_bridge_acdc import batches, bridge
import circuits
torch.set_num_threads(1)
clean, corrupted = batches()
model = bridge({layers}, arch={arch!r})
c0 = time.process_time()
c = circuits.acdc(model, clean, corrupted, threshold=0.0002, engine="fast")
print(time.process_time() - c0, c.n_edges, c.settings.get("passes"))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("commits", nargs="+")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--arch", default="gpt2", choices=["gpt2", "neox", "qwen3", "llama"])
    args = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if len(set(args.commits)) != len(args.commits):
        ap.error(f"each commit once, got {args.commits}")
    for commit in args.commits:  # before any work: a name git cannot resolve to a commit of this repository
        found = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                               capture_output=True, text=True)
        if found.returncode != 0:
            ap.error(f"not a commit of this repository: {commit!r}")
    with tempfile.TemporaryDirectory() as tmp:
        trees: dict[str, Path] = {}
        times: dict[str, list[float]] = {c: [] for c in args.commits}
        try:
            for commit in args.commits:
                tree = Path(tmp) / f"tree{len(trees)}"
                subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-q", str(tree), commit],
                               check=True)
                trees[commit] = tree
            for rep in range(args.repeats):
                for commit, tree in trees.items():
                    code = _RUN.format(bench=str(tree / "benchmarks"), layers=args.layers, arch=args.arch)
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    run = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True,
                                         text=True)
                    if run.returncode != 0:
                        sys.exit(f"ab_commits: the run at {commit} failed (exit {run.returncode}):\n"
                                 f"{run.stderr[-2000:]}")
                    out = run.stdout.split()
                    times[commit].append(float(out[0]))
                    print(f"repeat {rep}: {commit}: {float(out[0]):.2f} s CPU, {out[1]} edges kept, {out[2]} passes",
                          flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=False)
    for commit, ts in times.items():
        print(f"{commit}: median {statistics.median(ts):.2f} s CPU of {len(ts)} runs "
              f"(min {min(ts):.2f}, max {max(ts):.2f})")


if __name__ == "__main__":
    main()
