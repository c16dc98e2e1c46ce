"""How ACDC's fast engine, EAP and EAP-IG grow with depth and width (issue 25 item 3), on seeded random GPT-2
bridges (float64, one torch thread, CPU time of this process):

* depth: ``L2 L4 L8 L12``: 2-12 layers at d_model 128, 8 heads, vocabulary 64 (``bench_bridge_acdc.py``'s model);
* width: ``D128 D256 D512 D768``: d_model 128-768 at 2 layers, 8 heads, GPT-2's vocabulary (50257);
* ``gpt2-small``: GPT-2 small's shape (12 layers, 12 heads, d_model 768, vocabulary 50257, 32491 edges).

Per size: EAP (gradient at the clean run, logit difference) and EAP-IG (5 steps), a first call (with the
declaration check) and a repeated one; ACDC (threshold 0.0002, KL at the last position) by the fast engine through
SPEC 4's loop with a sample of receiver nodes also decided by the reference from the same state
(``growth_acdc.py``: their removals must be identical, effects equal to rounding); where the fast engine would not
finish in ``--acdc-budget`` CPU seconds it is stopped between receiver hooks (the table says so) and its full cost
is extrapolated (``growth_report.estimate``). Sizes in ``--reference-full`` also run the public ``circuits.acdc``
with both engines (identical edge sets required). Writes ``growth.csv``, ``growth_hooks.csv``, ``growth.md`` and
``growth.png`` (log-log) into OUTDIR, one line printed per measurement as it ends.

    PYTHONPATH=. python benchmarks/growth.py OUTDIR [--sizes L2 L4 ...] [--prompts 16] [--tokens 12]
        [--threshold 0.0002] [--samples 3] [--reference-full L2] [--acdc-budget 900] [--gpt2-budget 240]
        [--methods eap acdc]
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bridge_acdc import batches, wrap  # noqa: E402
from growth_acdc import run_sampled  # noqa: E402
from growth_report import write_report  # noqa: E402

import circuits  # noqa: E402


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    d_model: int
    vocab: int
    positions: int = 32


SIZES = {
    "L2": Shape(2, 8, 128, 64), "L4": Shape(4, 8, 128, 64), "L8": Shape(8, 8, 128, 64), "L12": Shape(12, 8, 128, 64),
    "D128": Shape(2, 8, 128, 50257), "D256": Shape(2, 8, 256, 50257), "D512": Shape(2, 8, 512, 50257),
    "D768": Shape(2, 8, 768, 50257),
    "gpt2-small": Shape(12, 12, 768, 50257, positions=1024),
}
NO_SAMPLES = ("gpt2-small",)  # a reference forward pass there costs seconds; a node has up to 157 candidates


def build(shape: Shape, seed: int = 0):
    """A seeded GPT-2 bridge of ``shape`` (float64, eval); weights' scale 0.1 at d_model 128, shrinking as
    1/sqrt(d_model) so that pre-activations keep their size across widths (``bench_bridge_acdc.hf_model``'s at 128)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=shape.layers, n_head=shape.heads, n_embd=shape.d_model, vocab_size=shape.vocab,
                     n_positions=shape.positions, initializer_range=0.1 * (128 / shape.d_model) ** 0.5)
    return wrap("GPT2LMHeadModel", GPT2LMHeadModel(cfg).double().eval(), cfg)


def cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def time_eap(model, clean, corrupt, metric, steps: Optional[int], repeats: int) -> tuple[float, float]:
    """CPU seconds of a first call and the median of ``repeats`` repeated calls."""
    def call():
        return circuits.eap(model, clean, corrupt, metric, steps=steps, point="clean" if steps is None else "auto")
    _, first = cpu(call)
    again = [cpu(call)[1] for _ in range(repeats)]
    return first, statistics.median(again) if again else float("nan")


def measure_eap(row: dict, model, batch, repeats: int) -> None:
    clean, corrupt, answers, wrong = batch
    metric = circuits.metrics.logit_diff(answers, wrong)
    row["eap_first_s"], row["eap_s"] = time_eap(model, clean, corrupt, metric, None, repeats)
    say(row, f"EAP {row['eap_s']:.3f} s (first call {row['eap_first_s']:.3f} s)")
    row["eap_ig5_first_s"], row["eap_ig5_s"] = time_eap(model, clean, corrupt, metric, 5, repeats)
    say(row, f"EAP-IG 5 steps {row['eap_ig5_s']:.3f} s (first call {row['eap_ig5_first_s']:.3f} s)")


def measure_acdc(row: dict, model, batch, args, hooks_out: list) -> None:
    clean, corrupt = batch[:2]
    size = row["size"]
    k = 0 if size in NO_SAMPLES else args.samples
    budget = args.gpt2_budget if size == "gpt2-small" else args.acdc_budget
    out = run_sampled(model, clean, corrupt, args.threshold, k, budget_s=budget, seed=args.seed)
    row.update(acdc_finished=out.finished, acdc_s=out.fast_seconds, acdc_tested=out.tested, acdc_kept=out.n_kept,
               acdc_passes=out.passes, acdc_path=out.path, sampled_nodes=out.check.nodes,
               sampled_edges=out.check.edges, sampled_disagreements=len(out.check.disagreements),
               sampled_max_effect_diff=out.check.max_effect_diff, sampled_reference_s=out.check.seconds)
    hooks_out += [dict(size=size, **asdict(h)) for h in out.hooks]
    done = "finished" if out.finished else f"STOPPED by the {budget:.0f} s budget after"
    say(row, f"ACDC fast ({out.path}) {done} {out.fast_seconds:.2f} s CPU: {out.tested}/{out.n_edges} edges tested, "
             f"{out.n_kept} kept, {out.passes} passes; sampled nodes decided by the reference too: {out.check.nodes} "
             f"({out.check.edges} edges, {out.check.seconds:.1f} s), disagreements {len(out.check.disagreements)}, "
             f"max |effect difference| {out.check.max_effect_diff:.2e}")
    for d in out.check.disagreements:
        print(f"  DISAGREEMENT: {d}", flush=True)


def measure_reference(row: dict, model, batch, threshold: float) -> None:
    """The public ``circuits.acdc`` with both engines: identical edge sets, effects equal to rounding."""
    clean, corrupt = batch[:2]
    fast, t_fast = cpu(lambda: circuits.acdc(model, clean, corrupt, threshold=threshold, engine="fast"))
    ref, t_ref = cpu(lambda: circuits.acdc(model, clean, corrupt, threshold=threshold, engine="reference"))
    diff = max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects)
    row.update(public_fast_s=t_fast, reference_s=t_ref, reference_identical=fast.edges == ref.edges,
               reference_max_effect_diff=diff)
    say(row, f"public acdc: fast {t_fast:.2f} s, reference {t_ref:.2f} s CPU ({t_ref / t_fast:.1f}x); identical edge "
             f"sets: {fast.edges == ref.edges} ({ref.n_edges} kept); max |effect difference| {diff:.2e}")


def say(row: dict, what: str) -> None:
    print(f"{row['size']}: {what}", flush=True)


def make_batch(shape: Shape, prompts: int, tokens: int):
    clean, corrupt = batches(vocab=shape.vocab, batch=prompts, seq=tokens)
    g = torch.Generator().manual_seed(2)
    answers, wrong = torch.randint(0, shape.vocab, (2, prompts), generator=g)
    return clean, corrupt, answers, wrong


def measure(size: str, args, hooks_out: list) -> dict:
    shape = SIZES[size]
    model, t_build = cpu(lambda: build(shape, args.seed))
    row = dict(size=size, **asdict(shape), edges=circuits.graph_of(model).n_edges, prompts=args.prompts,
               tokens=args.tokens, params=sum(p.numel() for p in model.parameters()))
    say(row, f"{shape}, {row['edges']} edges, {row['params']:,} parameters (built in {t_build:.1f} s)")
    batch = make_batch(shape, args.prompts, args.tokens)
    if "eap" in args.methods:
        measure_eap(row, model, batch, args.repeats)
    if "acdc" in args.methods:
        measure_acdc(row, model, batch, args, hooks_out)
    if size in args.reference_full:
        measure_reference(row, model, batch, args.threshold)
    return row


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--threshold", type=float, default=0.0002)
    ap.add_argument("--samples", type=int, default=3, help="receiver nodes per size also decided by the reference")
    ap.add_argument("--reference-full", nargs="*", default=["L2"], choices=list(SIZES),
                    help="sizes on which the public acdc runs with both engines in full")
    ap.add_argument("--acdc-budget", type=float, default=900.0, help="fast-engine CPU seconds before a run stops")
    ap.add_argument("--gpt2-budget", type=float, default=240.0, help="the same for gpt2-small")
    ap.add_argument("--repeats", type=int, default=1, help="repeated (timed) EAP and EAP-IG calls after the first")
    ap.add_argument("--methods", nargs="+", default=["eap", "acdc"], choices=["eap", "acdc"],
                    help="eap: EAP and EAP-IG; acdc: the fast engine with sampled reference nodes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rewrite growth.md and growth.png from OUTDIR's growth.csv and growth_hooks.csv")
    return ap.parse_args(argv)


def read_tables(outdir: Path) -> tuple[list[dict], list[dict]]:
    """growth.csv and growth_hooks.csv back as the rows ``measure`` returns (numbers and flags typed again)."""
    def typed(v: str):
        if v in ("True", "False"):
            return v == "True"
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return None if v == "" else v

    def load(name: str) -> list[dict]:
        path = outdir / name
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return [{k: typed(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return load("growth.csv"), load("growth_hooks.csv")


def main(argv=None) -> None:
    args = parse(argv)
    if args.report_only:
        rows, hooks = read_tables(args.outdir)
        write_report(args.outdir, rows, hooks, "report rewritten from growth.csv")
        return
    args.outdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    header = (f"{platform.machine()}, torch {torch.__version__}, 1 thread, float64; {args.prompts} prompts x "
              f"{args.tokens} tokens, threshold {args.threshold}; load average at start {' '.join(load)}")
    print(header, flush=True)
    t0 = time.process_time()
    rows: list[dict] = []
    hooks: list[dict] = []
    for size in args.sizes:
        rows.append(measure(size, args, hooks))
        write_tables(args.outdir, rows, hooks)  # after every size, so a cut-short run keeps what it measured
    write_report(args.outdir, rows, hooks, header + f"; total CPU {time.process_time() - t0:.0f} s")
    print(f"total CPU {time.process_time() - t0:.0f} s; wrote {args.outdir}/growth.csv, growth_hooks.csv, growth.md, "
          "growth.png", flush=True)


def write_tables(outdir: Path, rows: list[dict], hooks: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for name, data, cols in (("growth.csv", rows, keys), ("growth_hooks.csv", hooks, None)):
        if not data:
            continue
        with open(outdir / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols or list(data[0]))
            w.writeheader()
            w.writerows(data)


if __name__ == "__main__":
    main()
