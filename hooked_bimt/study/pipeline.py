"""The study's outputs, from the finished units in DIR: results.csv, summary.csv, methods.csv, figures, report.md.

The units themselves are computed by executor jobs (``jobs.model_job``, one per trained model);
``write_outputs`` reads them back (``jobs.collect_rows``), so the outputs are the same whatever ran them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from circuits import MIB_LEVELS, Circuit
from hooked_bimt.study import measure
from hooked_bimt.study.environment import machine
from hooked_bimt.study.family import family_of
from hooked_bimt.study.figures import Figure, frontier_figures, training_figures
from hooked_bimt.study.jobs import collect_method_rows, collect_rows, fingerprint
from hooked_bimt.study.methods import method_columns, summarize_methods
from hooked_bimt.study.presets import Preset
from hooked_bimt.study.report import write_report
from hooked_bimt.study.summary import summarize, summarize_training, summary_columns, summary_rows, write_csv

FIGURE_A_REGIMES = ("bimt", "l1")


def setup_lines(preset: Preset, config: dict[str, Any], rows: list[dict[str, Any]], skipped: Sequence[str],
                executor: str) -> dict[str, str]:
    """The report's set-up section (``family.setup`` says how the models were trained and the batches drawn)."""
    fam = family_of(config)
    pairs = []
    for task in config["tasks"]:
        name = fam.get_task(task).name
        rs = [r for r in rows if r["task"] == name and r["threshold"] == config["thresholds"][0]]
        used, cand = sum(r["n_used"] for r in rs), sum(r["n_candidates"] for r in rs)
        pairs.append(f"{name}: {used} pairs used of {cand} candidates ({cand - used} dropped as misclassified)")
    methods = sorted({str(r.get("memory_method")) for r in rows})
    jobs = sorted({int(r["training_jobs"]) for r in rows if r.get("training_jobs") not in (None, "")})
    lines = fam.setup(config)
    return {
        "preset": f"{preset.name} — {preset.note}",
        "training": lines["training"] + "; " + " / ".join(f"{j} job(s) at once" for j in jobs)
                    + f" (executor {executor}; wall-clock training measures depend on this)",
        "regimes": ", ".join(config["regimes"]), "seeds": ", ".join(map(str, config["seeds"])),
        "tasks": ", ".join(fam.get_task(t).name for t in config["tasks"]),
        "example batches": lines["example batches"],
        fam.pairs_label: "; ".join(pairs),
        "ACDC": "fast engine, KL metric, resample ablation, float64, thresholds "
                + ", ".join(f"{t:g}" for t in config["thresholds"]) + " (one ACDC run per threshold)",
        "intervals": "95% percentile bootstrap, 2000 resamples (seed 0), over seeds x example batches "
                     "(training measures: over seeds)",
        "machine": ", ".join(f"{k} {v}" for k, v in machine().items()) + f", device {config['device']}",
        "peak memory method": ", ".join(methods),
        "skipped units": "; ".join(skipped) or "none",
    }


def _figure_a_threshold(config: dict[str, Any]) -> float:
    return sorted(config["thresholds"])[len(config["thresholds"]) // 2]


def figure_a_what(config: dict[str, Any]) -> str:
    """What figure (a) shows: the first task and seed, batch 0, the middle threshold."""
    task = family_of(config).get_task(config["tasks"][0])
    return f"{task.name}, seed {config['seeds'][0]}, batch 0, threshold {_figure_a_threshold(config):g}"


def _figure_a(store: Any, config: dict[str, Any], fig_dir: Path) -> list[Figure]:
    """(a) full network vs circuit for BIMT and L1: first seed, first task, batch 0, the middle threshold."""
    fam, figs = family_of(config), []
    task, seed = fam.get_task(config["tasks"][0]), config["seeds"][0]
    slug = fam.model_slug(fam.models(config["tasks"])[0][0])
    for regime in FIGURE_A_REGIMES:
        path = store.circuit_path((regime, seed, fam.slug(task), 0), _figure_a_threshold(config))
        loaded = (store.load_model(regime, seed, fingerprint, family=fam, slug=slug)
                  if regime in config["regimes"] else None)
        if loaded is None or not path.exists():
            continue
        figs.append(fam.figure_a(loaded[0], Circuit.load(path), fig_dir / f"a_network_vs_circuit_{regime}.png",
                                 regime, figure_a_what(config)))
    return figs


def summaries(config: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> tuple[Any, dict[str, Any], list]:
    """summary.csv and the summary figures from results.csv's rows: (summary, training per group, figures). The
    training measures are summarised per ``family.training_groups`` (MNIST: one group, its models serve every task;
    transformers: one per task, each task its own models); each summary row takes its task's group."""
    fam, regimes = family_of(config), config["regimes"]
    names = [fam.get_task(t).name for t in config["tasks"]]
    groups = {g: [fam.get_task(t).name for t in ts] for g, ts in fam.training_groups(config["tasks"]).items()}
    summary = summarize(rows)
    training = {g: summarize_training([r for r in rows if r["task"] in ts]) for g, ts in groups.items()}
    of_task = {t: training[g] for g, ts in groups.items() for t in ts}
    srows = summary_rows(summary, {}, regimes, by_task=of_task)
    write_csv(out / "summary.csv", srows, summary_columns())
    figs = frontier_figures(summary, out / "figures", regimes=regimes, tasks=names,
                            slug=lambda t: fam.slug(fam.get_task(t)))
    for g, tr in training.items():
        figs += training_figures(tr, out / "figures", regimes=regimes, group=g,
                                 slug=fam.slug(fam.get_task(g)) if g else "")
    return srows, training, figs


def write_outputs(store: Any, preset: Preset, setup_extra: dict[str, Any], executor: str) -> Path:
    """results.csv, summary.csv, figures/*.png and report.md from the finished units; returns the report's path."""
    out, config = store.out, store.config()
    fam = family_of(config)
    rows, skipped = collect_rows(store, config)
    write_csv(out / "results.csv", rows, measure.COLUMNS)
    figs = _figure_a(store, config, out / "figures")
    srows, training, more = summaries(config, rows, out)
    mrows = collect_method_rows(store, config)
    write_csv(out / "methods.csv", mrows, method_columns(MIB_LEVELS))
    setup = {**setup_lines(preset, config, rows, skipped, executor), **{k: str(v) for k, v in setup_extra.items()}}
    return write_report(out / "report.md", setup=setup, results=rows, training_groups=training, rows=srows,
                        figures=figs + more, tasks=[fam.get_task(t).name for t in config["tasks"]],
                        regimes=config["regimes"], methods=summarize_methods(mrows), family=fam)
