"""report.md: set-up, figures, tables, and a verdict for each of the paper's four claims (SPEC 1).

Verdict rule for claims 1-3 (BIMT vs every other regime, per task, on the 95% bootstrap intervals):

- reproduced: BIMT's mean is the best (lowest logit gap / highest edge sparsity / lowest discovery
  time) AND its interval overlaps no other regime's AND it has >= 2 samples;
- mixed: BIMT's mean is the best, but an interval overlaps (or there is only one sample);
- not reproduced: another regime's mean is better.
Over tasks: reproduced if reproduced on every task, not reproduced if not reproduced on every task,
mixed otherwise. Each task's evidence also compares BIMT with every regime on its own (the paper's
Figure 2 is BIMT vs L1): *better* / *worse* when the intervals separate, *tied* when they overlap.

Claim 4 (swaps cost training memory, the paper: ~1.5x): each swap regime against its no-swap twin,
the same loss without swaps (bimt / l1_local, l1_swap / l1); r = the mean of those ratios.
Reproduced if r >= 1.2 and each swap regime's interval lies above its twin's (>= 2 seeds); not
reproduced if r <= 1.05 (no memory cost worth the name); mixed otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hooked_bimt.atomic import atomic_write_text
from hooked_bimt.study.bootstrap import Interval
from hooked_bimt.study.summary import Summary

TARGET = "bimt"
SWAP_TWINS = {"bimt": "l1_local", "l1_swap": "l1"}  # swap regime -> the same loss without swaps
CLAIMS = (
    ("1", "BIMT circuits have a lower circuit logit gap", "logit_gap", True),
    ("2", "BIMT circuits have a higher edge sparsity", "edge_sparsity", False),
    ("3", "BIMT circuits are discovered faster (ACDC wall-clock)", "discovery_seconds", True),
)


def _fmt(iv: Interval | None, scale: float = 1.0) -> str:
    if iv is None:
        return "n/a"
    return f"{iv.mean * scale:.4g} [{iv.low * scale:.4g}, {iv.high * scale:.4g}]"


def _pairwise(t: Interval, others: dict[str, Interval], lower: bool) -> str:
    """'vs l1 better, vs l1_local tied, ...': separated intervals decide, overlapping ones tie."""
    words = []
    for r, iv in others.items():
        if t.overlaps(iv):
            words.append(f"vs {r} tied")
        else:
            words.append(f"vs {r} {'better' if (t.mean < iv.mean) == lower else 'worse'}")
    return "bimt " + ", ".join(words)


def _one_task(summary: Summary, task: str, measure: str, lower: bool, regimes: Sequence[str]) -> tuple[str, str]:
    ivs = {r: summary.get((r, task), {}).get(measure) for r in regimes}
    ivs = {r: iv for r, iv in ivs.items() if iv is not None}
    if TARGET not in ivs or len(ivs) < 2:
        return "not evaluated", f"{task}: bimt or the other regimes are missing"
    t = ivs[TARGET]
    others = {r: iv for r, iv in ivs.items() if r != TARGET}
    best = all((t.mean < iv.mean) if lower else (t.mean > iv.mean) for iv in others.values())
    overlap = [r for r, iv in others.items() if t.overlaps(iv)]
    nums = ", ".join(f"{r} {_fmt(iv)}" for r, iv in ivs.items())
    if not best:
        verdict = "not reproduced"
    elif t.n < 2:
        verdict = "mixed"
        nums += " (one sample: no interval)"
    elif overlap:
        verdict = "mixed"
        nums += f" (bimt's interval overlaps {', '.join(overlap)})"
    else:
        verdict = "reproduced"
    return verdict, f"{task}: {verdict}; {nums}; {_pairwise(t, others, lower)}"


def _combine(verdicts: list[str]) -> str:
    v = [x for x in verdicts if x != "not evaluated"]
    if not v:
        return "not evaluated"
    if all(x == "reproduced" for x in v):
        return "reproduced"
    if all(x == "not reproduced" for x in v):
        return "not reproduced"
    return "mixed"


def _memory_claim(summary: Summary, regimes: Sequence[str]) -> tuple[str, str]:
    per = {}
    for r in regimes:
        iv = next((ivs.get("peak_memory_bytes") for (rr, _), ivs in sorted(summary.items()) if rr == r), None)
        if iv is not None:
            per[r] = iv
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


def _cost_lines(summary: Summary, regimes: Sequence[str]) -> list[str]:
    """Descriptive comparison (no verdict): seconds per training step and inference latency per regime."""
    lines = []
    for measure, label in (("seconds_per_step", "training s / step"), ("inference_ms_per_batch", "inference ms / batch")):
        per = []
        for r in regimes:
            iv = next((ivs.get(measure) for (rr, _), ivs in sorted(summary.items()) if rr == r and measure in ivs), None)
            if iv is not None:
                per.append(f"{r} {_fmt(iv)}")
        if per:
            lines.append(f"{label} (compared, no verdict): " + ", ".join(per))
    return lines


def verdicts(summary: Summary, tasks: Sequence[str], regimes: Sequence[str]) -> list[dict[str, Any]]:
    """The four claims with their verdict and the numbers behind it."""
    out = []
    for num, text, measure, lower in CLAIMS:
        per_task = [_one_task(summary, t, measure, lower, regimes) for t in tasks]
        out.append({"claim": num, "text": text, "measure": measure,
                    "verdict": _combine([v for v, _ in per_task]), "evidence": [e for _, e in per_task]})
    v, e = _memory_claim(summary, regimes)
    out.append({"claim": "4", "text": "BIMT's swaps cost training memory (~1.5x); training time and inference compared",
                "measure": "peak_memory_bytes", "verdict": v, "evidence": [e, *_cost_lines(summary, regimes)]})
    return out


def _table(rows: list[dict[str, Any]], measures: Sequence[tuple[str, str, float]], per_task: bool = True) -> str:
    """Markdown table of ``mean [low, high]``; ``per_task=False``: one row per regime (training measures)."""
    keys = ("regime", "task", "n") if per_task else ("regime", "seeds")
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
        head = [r["regime"], r["task"], str(r["n"])] if per_task else [r["regime"], str(r.get("n_seeds", "?"))]
        lines.append("| " + " | ".join(head + cells) + " |")
    return "\n".join(lines)


CIRCUIT_TABLE = (("logit_gap", "logit gap", 1.0), ("edge_sparsity", "edge sparsity", 1.0),
                 ("node_sparsity", "node sparsity", 1.0), ("discovery_seconds", "discovery s", 1.0),
                 ("logit_diff_recovery", "logit-diff recovery", 1.0))
TRAIN_TABLE = (("test_accuracy", "test acc", 1.0), ("train_seconds", "train s", 1.0),
               ("seconds_per_step", "s / step", 1.0), ("peak_memory_bytes", "peak MiB", 1 / 2**20),
               ("inference_ms_per_batch", "inference ms / batch", 1.0))


def write_report(path: str | Path, *, setup: dict[str, Any], summary: Summary, rows: list[dict[str, Any]],
                 figures: Sequence[Path], tasks: Sequence[str], regimes: Sequence[str]) -> Path:
    """Write report.md (set-up, verdicts, figures, tables); returns its path."""
    path = Path(path)
    parts = ["# hooked-bimt: reproduction of Nainani 2024 (arXiv 2401.03646) on MNIST", "", "## Set-up", ""]
    parts += [f"- **{k}**: {v}" for k, v in setup.items()]
    parts += ["", "## The paper's claims", "", "Verdict rule (claims 1-3, per task, 95% bootstrap intervals): "
              "*reproduced* if BIMT's mean is the best of all regimes, it has >= 2 samples and its interval "
              "overlaps no other regime's; *mixed* if best but overlapping (or one sample); *not reproduced* "
              "if another regime's mean is better; over tasks: reproduced/not reproduced only if so on every "
              "task, else mixed; the pairwise words compare BIMT with each regime alone (better / worse when "
              "the intervals separate, tied when they overlap). Claim 4: r = mean over the swap regimes of "
              "their peak training memory / their no-swap twin's (bimt / l1_local, l1_swap / l1); "
              "reproduced if r >= 1.2 and each pair's intervals separate (>= 2 seeds), not reproduced if "
              "r <= 1.05, mixed otherwise.", ""]
    for v in verdicts(summary, tasks, regimes):
        parts.append(f"### Claim {v['claim']}: {v['text']} — **{v['verdict']}**")
        parts += [f"- {e}" for e in v["evidence"]] + [""]
    parts += ["## Figures", ""]
    parts += [f"![{f.stem}](figures/{f.name})" for f in figures] + [""]
    parts += ["## Circuits (mean [95% interval] over seeds x example batches)", "", _table(rows, CIRCUIT_TABLE), ""]
    parts += ["## Training cost (mean [95% interval] over seeds)", "", _table(rows, TRAIN_TABLE, per_task=False), "",
              "Per-unit numbers: `results.csv`; these tables: `summary.csv`.", ""]
    return atomic_write_text(path, "\n".join(parts))
