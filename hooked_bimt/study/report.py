"""report.md: set-up, measures, verdicts for each of the paper's four claims (SPEC 1), figures, tables.

Claims 1-3 (each BIMT variant, ``BIMT_VARIANTS``, against the non-BIMT regimes, per task) are judged at
matched sparsity on the threshold sweeps: the rule is ``frontier``'s (stated in the report too). A variant's
verdict over tasks, and the claim's over variants: reproduced if reproduced on every task (every variant), not
reproduced if not reproduced on every one, mixed otherwise.

Claim 4 (swaps cost training memory, the paper: ~1.5x): each swap regime against its no-swap twin,
the same loss without swaps (bimt and bimt_original / l1_local, l1_swap and l1_swap_original / l1);
r = the mean of those ratios. Reproduced if r >= 1.2 and each swap regime's interval lies above its
twin's (>= 2 seeds); not reproduced if r <= 1.05 (no memory cost worth the name); mixed otherwise. Where each
task has its own trained models (transformers: ``training_groups``), claim 4 and the training table are per task,
the verdicts combined over tasks as for claims 1-3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hooked_bimt.atomic import atomic_write_text
from hooked_bimt.study import frontier
from hooked_bimt.study.bootstrap import Interval
from hooked_bimt.study.methods import methods_markdown
from hooked_bimt.study.summary import Training

BIMT_VARIANTS = ("bimt", "bimt_original")  # the claims' subject; judged one at a time against the others
# swap regime -> the same loss without swaps (the *_original faithful modes of issue 14 included)
SWAP_TWINS = {"bimt": "l1_local", "l1_swap": "l1", "bimt_original": "l1_local", "l1_swap_original": "l1"}
SWAP_SEMANTICS = (("bimt", "bimt_original"), ("l1_swap", "l1_swap_original"))
# claim, text, x-axis, compared measure, lower is better
CLAIMS = (
    ("1", "BIMT circuits have a lower circuit logit gap (at matched edge sparsity)", "log_edges", "logit_gap", True),
    ("2", "BIMT circuits have a higher edge sparsity (at matched logit gap)", "logit_gap", "edge_sparsity", False),
    ("3", "BIMT circuits are discovered faster (ACDC wall-clock, at matched edge sparsity)", "log_edges",
     "discovery_seconds", True),
)


def _fmt(iv: Interval | None, scale: float = 1.0) -> str:
    if iv is None:
        return "n/a"
    return f"{iv.mean * scale:.4g} [{iv.low * scale:.4g}, {iv.high * scale:.4g}]"


def _combine(verdicts: list[str]) -> str:
    v = [x for x in verdicts if x != "not evaluated"]
    if not v:
        return "not evaluated"
    if all(x == "reproduced" for x in v):
        return "reproduced"
    if all(x == "not reproduced" for x in v):
        return "not reproduced"
    return "mixed"


def _memory_claim(training: Training, regimes: Sequence[str]) -> tuple[str, str]:
    per = {r: training[r]["peak_memory_bytes"] for r in regimes if "peak_memory_bytes" in training.get(r, {})}
    pairs = [(s, t) for s, t in SWAP_TWINS.items() if s in per and t in per and per[t].mean > 0]
    if not pairs:
        return "not evaluated", "peak training memory missing for a swap regime or its no-swap twin"
    ratios = {s: per[s].mean / per[t].mean for s, t in pairs}
    ratio = sum(ratios.values()) / len(ratios)
    separated = all(per[s].low > per[t].high for s, t in pairs)
    enough = all(per[r].n >= 2 for pair in pairs for r in pair)
    verdict = "not reproduced" if ratio <= 1.05 else ("reproduced" if ratio >= 1.2 and separated and enough else "mixed")
    twins = ", ".join(f"{s} / {t} {ratios[s]:.3f}" for s, t in pairs)
    nums = ", ".join(f"{r} {_fmt(iv, 1 / 2**20)} MiB" for r, iv in per.items())
    return verdict, f"swap / no-swap twin peak memory ratio {ratio:.3f} ({twins}; paper: ~1.5); {nums}"


def _cost_lines(training: Training, regimes: Sequence[str]) -> list[str]:
    """Descriptive comparison (no verdict): seconds per training step and inference latency per regime."""
    lines = []
    for measure, label in (("seconds_per_step", "training s / step"), ("inference_ms_per_batch", "inference ms / batch")):
        per = [f"{r} {_fmt(training[r][measure])}" for r in regimes if measure in training.get(r, {})]
        if per:
            lines.append(f"{label} (compared, no verdict): " + ", ".join(per))
    return lines


def _claim4(groups: dict[str, Training], regimes: Sequence[str]) -> dict[str, Any]:
    """Claim 4 per group of trained models (MNIST: one, ``""``; transformers: one per task), combined as over tasks."""
    per, evidence = {}, []
    for g, training in groups.items():
        per[g], e = _memory_claim(training, regimes)
        evidence += [f"{g}: {x}" if g else x for x in (e, *_cost_lines(training, regimes))]
    out = {"claim": "4", "text": "BIMT's swaps cost training memory (~1.5x); training time and inference compared",
           "measure": "peak_memory_bytes", "verdict": _combine(list(per.values())), "evidence": evidence}
    return {**out, "per_task": per} if any(per) else out


def verdicts(rows: Sequence[dict[str, Any]], training: Training | None, tasks: Sequence[str],
             regimes: Sequence[str], *, groups: dict[str, Training] | None = None) -> list[dict[str, Any]]:
    """The four claims with their verdict and the numbers behind it (``rows``: results.csv's rows; ``training``:
    the training measures, or ``groups`` of them, one per task whose models are its own)."""
    out = []
    variants = [r for r in BIMT_VARIANTS if r in regimes]
    others = [r for r in regimes if r not in BIMT_VARIANTS]
    for num, text, x, y, lower in CLAIMS:
        per_variant, evidence = {}, []
        for v in variants:
            per_task = [frontier.matched(rows, t, [v, *others], target=v, x=x, y=y, lower=lower) for t in tasks]
            per_variant[v] = _combine([w for w, _ in per_task])
            evidence += [f"{v} vs the non-BIMT regimes, {e}" for _, e in per_task]
        out.append({"claim": num, "text": text, "measure": y, "per_variant": per_variant,
                    "verdict": _combine(list(per_variant.values())), "evidence": evidence})
    out.append(_claim4(groups if groups is not None else {"": training or {}}, regimes))
    return out


def swap_semantics(rows: Sequence[dict[str, Any]], tasks: Sequence[str], regimes: Sequence[str]) -> list[str]:
    """Descriptive lines: each regime vs its faithful ``*_original`` mode, logit gap at matched edge sparsity."""
    lines = []
    for ours, original in SWAP_SEMANTICS:
        if ours in regimes and original in regimes:
            for t in tasks:
                _, ev = frontier.matched(rows, t, (ours, original), target=ours, x="log_edges", y="logit_gap",
                                         lower=True)
                task, rest = str(ev).split(": ", 1) if ": " in str(ev) else ("", str(ev))
                word, detail = rest.split("; ", 1) if "; " in rest else (rest, "")
                summary = {"reproduced": f"{ours} lower at every level", "not reproduced": f"{ours} lower at no level",
                           "mixed": f"{ours} lower at some levels"}.get(word, word)  # descriptive, not a claim
                lines.append(f"{ours} vs {original}, {task}: {summary}; {detail}")
    return lines


def _table(rows: list[dict[str, Any]], measures: Sequence[tuple[str, str, float]], per_task: bool = True) -> str:
    """Markdown table of ``mean [low, high]``; ``per_task=False``: one row per regime (training measures)."""
    keys = ("regime", "task", "threshold", "n") if per_task else ("regime", "seeds")
    lines = ["| " + " | ".join(keys) + " | " + " | ".join(label for _, label, _ in measures) + " |",
             "|" + "---|" * (len(keys) + len(measures))]
    seen = set()
    for r in rows:
        if not per_task and r["regime"] in seen:
            continue
        seen.add(r["regime"])
        cells = []
        for m, _, scale in measures:
            if f"{m}_mean" in r:
                cells.append(_fmt(Interval(r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"], 0), scale))
            else:
                cells.append("n/a")
        head = ([r["regime"], r["task"], f"{float(r['threshold']):g}", str(r["n"])] if per_task
                else [r["regime"], str(r.get("n_seeds", "?"))])
        lines.append("| " + " | ".join(head + cells) + " |")
    return "\n".join(lines)


CIRCUIT_TABLE = (("edge_sparsity", "edge sparsity", 1.0), ("logit_gap", "logit gap", 1.0),
                 ("logit_diff_recovery", "LD recovery", 1.0), ("kl", "KL (nats)", 1.0),
                 ("node_sparsity", "node sparsity", 1.0), ("discovery_seconds", "discovery s", 1.0))
TRAIN_TABLE = (("test_accuracy", "test acc", 1.0), ("train_seconds", "train s", 1.0),
               ("seconds_per_step", "s / step", 1.0), ("peak_memory_bytes", "peak MiB", 1 / 2**20),
               ("inference_ms_per_batch", "inference ms / batch", 1.0))
MNIST_TITLE = "hooked-bimt: reproduction of Nainani 2024 (arXiv 2401.03646) on MNIST"
MEASURES_TEXT = (
    "All circuit measures are on the clean batch of a unit (regime x seed x task x example batch x threshold), "
    "the circuit run with resample ablation (edges outside it carry the corrupted run's activation), float64.",
    "- **logit gap**: mean over examples and the 10 classes of |logits_full - logits_circuit| (logit units; lower "
    "is more faithful).",
    "- **KL**: KL(softmax(full logits) || softmax(circuit logits)) averaged over the batch (nats); the quantity "
    "ACDC thresholds.",
    "- **LD recovery** (logit-difference recovery, SPEC 5): (LD_circuit - LD_ablated) / (LD_full - LD_ablated), LD "
    "the mean task logit difference (8 vs 3: logit[8] - logit[3]; circle: logsumexp of the loop digits' logits "
    "minus that of the others), LD_ablated that of the empty circuit, i.e. the corrupted run: 1 = the full "
    "model's, 0 = none (dimensionless).",
    "- **edge sparsity**: 1 - edges in the circuit / all edges of the 784-100-100-10 graph (89,400); the "
    "frontier figures plot edges kept = 1 - edge sparsity on a log axis. **node sparsity**: the same over the "
    "200 hidden neurons (a neuron counts when a circuit edge touches it).",
    "- **discovery time**: wall-clock seconds of one `circuits.acdc` call (fast engine, one CPU thread per job; "
    "comparable within one run only).",
    "- **training measures**: test accuracy; wall seconds per step; peak memory (method stated in the set-up); "
    "inference milliseconds per batch. One value per trained model.",
    "- **95% intervals**: percentile bootstrap, 2000 resamples (seed 0), over seeds x example batches (training "
    "measures: over seeds); frontier differences: paired over (seed, batch).",
)


def _training_table(training: Training, regimes: Sequence[str]) -> str:
    """One row per regime of the training measures (mean [95% interval] over seeds)."""
    rows = []
    for r in (r for r in regimes if training.get(r)):
        row: dict[str, Any] = {"regime": r, "n_seeds": max(iv.n for iv in training[r].values())}
        for m, iv in training[r].items():
            row.update({f"{m}_mean": iv.mean, f"{m}_low": iv.low, f"{m}_high": iv.high})
        rows.append(row)
    return _table(rows, TRAIN_TABLE, per_task=False)


def _claims_rule(per_task_training: bool) -> str:
    text = ("Claims 1-3 are judged at matched sparsity, on each regime's frontier (its points over the ACDC "
            "thresholds): " + " ".join(frontier.__doc__.split("The rule (stated in the report):")[1].split())
            + " Over tasks, and then over the BIMT variants: reproduced / not reproduced only if so on every task "
            "(every variant), else mixed. Claim 4: r = mean over the swap regimes of their peak training memory / "
            "their no-swap twin's (bimt and bimt_original / l1_local, l1_swap and l1_swap_original / l1); reproduced "
            "if r >= 1.2 and each pair's intervals separate (>= 2 seeds), not reproduced if r <= 1.05, mixed "
            "otherwise.")
    return text + (" Each task has its own trained models here: claim 4 is judged per task, then over tasks as "
                   "above." if per_task_training else "")


def write_report(path: str | Path, *, setup: dict[str, Any], results: Sequence[dict[str, Any]],
                 training: Training | None = None, rows: list[dict[str, Any]], figures: Sequence[tuple[Path, str]],
                 tasks: Sequence[str], regimes: Sequence[str], methods: Any = None, family: Any = None,
                 training_groups: dict[str, Training] | None = None) -> Path:
    """Write report.md; ``results``: results.csv's rows, ``rows``: summary.csv's, ``figures``: (path, caption),
    ``methods``: ``methods.summarize_methods`` of methods.csv (its section left out when None or empty); ``family``
    (``family.family_of``; None: MNIST's): the title and the measures' text; ``training_groups``: the training
    measures per task when each task has its own models (else ``training``)."""
    title, measures = (MNIST_TITLE, MEASURES_TEXT) if family is None else (family.title, family.measures)
    groups = training_groups if training_groups is not None else {"": training or {}}
    path = Path(path)
    parts = [f"# {title}", "", "## Set-up", ""]
    parts += [f"- **{k}**: {v}" for k, v in setup.items()]
    parts += ["", "## Measures", "", *measures, ""]
    parts += ["## The paper's claims", "", _claims_rule(any(groups)), ""]
    for v in verdicts(results, None, tasks, regimes, groups=groups):
        each = ", ".join(f"{r}: {w}" for r, w in (v.get("per_variant") or v.get("per_task") or {}).items())
        parts.append(f"### Claim {v['claim']}: {v['text']} — **{v['verdict']}**" + (f" ({each})" if each else ""))
        parts += [f"- {e}" for e in v["evidence"]] + [""]
    semantics = swap_semantics(results, tasks, regimes)
    if semantics:
        parts += ["## Swap semantics (descriptive, no verdict)", "",
                  "Our swap rule vs the original notebook's (SPEC 2), logit gap at matched edge sparsity:", ""]
        parts += [f"- {line}" for line in semantics] + [""]
    parts += ["## Figures", ""]
    for f, caption in figures:
        parts += [f"![{f.stem}](figures/{f.name})", "", f"*{f.stem}*: {caption}", ""]
    parts += ["## Circuits per threshold (mean [95% interval] over seeds x example batches)", "",
              _table(rows, CIRCUIT_TABLE), ""]
    parts += methods_markdown(methods or {}, tasks, regimes)
    parts += ["## Training cost (mean [95% interval] over seeds)", ""]
    for g, tr in groups.items():
        parts += ([f"### {g}", ""] if g else []) + [_training_table(tr, regimes), ""]
    parts += ["Per-unit numbers: `results.csv`; these tables: `summary.csv`"
              + ("; methods per batch: `methods.csv`." if methods else "."), ""]
    return atomic_write_text(path, "\n".join(parts))
