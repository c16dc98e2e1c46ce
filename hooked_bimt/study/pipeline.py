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
from hooked_bimt.study.figures import Figure, network_figure, summary_figures
from hooked_bimt.study.jobs import collect_method_rows, collect_rows, fingerprint
from hooked_bimt.study.methods import method_columns, summarize_methods
from hooked_bimt.study.presets import Preset
from hooked_bimt.study.report import write_report
from hooked_bimt.study.summary import summarize, summarize_training, summary_columns, summary_rows, write_csv
from hooked_bimt.study.tasks import get_task, task_slug

FIGURE_A_REGIMES = ("bimt", "l1")


def setup_lines(preset: Preset, config: dict[str, Any], rows: list[dict[str, Any]], skipped: Sequence[str],
                executor: str) -> dict[str, str]:
    """The report's set-up section."""
    pairs = []
    for task in config["tasks"]:
        rs = [r for r in rows if r["task"] == get_task(task).name and r["threshold"] == config["thresholds"][0]]
        used, cand = sum(r["n_used"] for r in rs), sum(r["n_candidates"] for r in rs)
        pairs.append(f"{get_task(task).name}: {used} pairs used of {cand} candidates ({cand - used} dropped as "
                     "misclassified)")
    methods = sorted({str(r.get("memory_method")) for r in rows})
    jobs = sorted({int(r["training_jobs"]) for r in rows if r.get("training_jobs") not in (None, "")})
    tc = config["train_config"]
    return {
        "preset": f"{preset.name} — {preset.note}",
        "training": f"{tc.get('steps', '?')} steps, batch {tc.get('batch_size', '?')}"
                    + (f", training subset {tuple(config['train_subset'])}" if config["train_subset"] else "")
                    + "; " + " / ".join(f"{j} job(s) at once" for j in jobs)
                    + f" (executor {executor}; wall-clock training measures depend on this)",
        "regimes": ", ".join(config["regimes"]), "seeds": ", ".join(map(str, config["seeds"])),
        "tasks": ", ".join(get_task(t).name for t in config["tasks"]),
        "example batches": f"{config['n_batches']} per task and seed, {config['batch_size']} pairs each "
                           "(MNIST test set, only pairs the full model classifies correctly)",
        "MNIST pairs": "; ".join(pairs),
        "ACDC": "fast engine, KL metric, resample ablation, float64, thresholds "
                + ", ".join(f"{t:g}" for t in config["thresholds"]) + " (one ACDC run per threshold)",
        "intervals": "95% percentile bootstrap, 2000 resamples (seed 0), over seeds x example batches "
                     "(training measures: over seeds)",
        "machine": ", ".join(f"{k} {v}" for k, v in machine().items()) + f", device {config['device']}",
        "peak memory method": ", ".join(methods),
        "skipped units": "; ".join(skipped) or "none",
    }


def _figure_a(store: Any, config: dict[str, Any], fig_dir: Path) -> list[Figure]:
    """(a) full network vs circuit for BIMT and L1: first seed, first task, batch 0, the middle threshold."""
    figs = []
    task, seed = get_task(config["tasks"][0]), config["seeds"][0]
    thr = sorted(config["thresholds"])[len(config["thresholds"]) // 2]
    for regime in FIGURE_A_REGIMES:
        path = store.circuit_path((regime, seed, task_slug(task), 0), thr)
        loaded = store.load_model(regime, seed, fingerprint) if regime in config["regimes"] else None
        if loaded is None or not path.exists():
            continue
        what = f"{task.name}, seed {seed}, batch 0, threshold {thr:g}"
        figs.append(network_figure(loaded[0].model, Circuit.load(path), fig_dir / f"a_network_vs_circuit_{regime}.png",
                                   regime, what))
    return figs


def write_outputs(store: Any, preset: Preset, setup_extra: dict[str, Any], executor: str) -> Path:
    """results.csv, summary.csv, figures/*.png and report.md from the finished units; returns the report's path."""
    out, config = store.out, store.config()
    rows, skipped = collect_rows(store, config)
    write_csv(out / "results.csv", rows, measure.COLUMNS)
    summary, training = summarize(rows), summarize_training(rows)
    regimes = config["regimes"]
    srows = summary_rows(summary, training, regimes)
    write_csv(out / "summary.csv", srows, summary_columns())
    names = [get_task(t).name for t in config["tasks"]]
    figs = _figure_a(store, config, out / "figures")
    figs += summary_figures(summary, training, out / "figures", regimes=regimes, tasks=names)
    mrows = collect_method_rows(store, config)
    write_csv(out / "methods.csv", mrows, method_columns(MIB_LEVELS))
    setup = {**setup_lines(preset, config, rows, skipped, executor), **{k: str(v) for k, v in setup_extra.items()}}
    return write_report(out / "report.md", setup=setup, results=rows, training=training, rows=srows, figures=figs,
                        tasks=names, regimes=regimes, methods=summarize_methods(mrows))
