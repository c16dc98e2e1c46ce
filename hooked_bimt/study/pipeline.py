"""The study loop: regime x seed -> model unit -> (task x batch) discovery units -> tables, figures, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from circuits import Circuit, model_identity
from hooked_bimt.study import measure
from hooked_bimt.study.environment import machine
from hooked_bimt.study.figures import network_figure, summary_figures
from hooked_bimt.study.presets import Preset
from hooked_bimt.study.report import write_report
from hooked_bimt.study.summary import summarize, summary_columns, summary_rows, write_csv
from hooked_bimt.study.tasks import task_slug

FIGURE_A_REGIMES = ("bimt", "l1")


def _fingerprint(model: Any) -> str:
    return model_identity(model)["fingerprint"]


class Pipeline:
    """Runs every unit (reusing finished ones from the store) and writes DIR's outputs."""

    def __init__(self, store: Any, preset: Preset, train_config: Any, seeds: Sequence[int], tasks: Sequence[Any],
                 threshold: float, device: str, train_data: Any, test_split: Any) -> None:
        self.store, self.preset, self.cfg = store, preset, train_config
        self.seeds, self.tasks, self.threshold, self.device = list(seeds), list(tasks), threshold, device
        self.train_data, self.test_split = train_data, test_split
        self.models: dict[tuple[str, int], Any] = {}
        self.skipped: list[str] = []

    def _model(self, regime: str, seed: int) -> tuple[Any, dict[str, Any]]:
        loaded = self.store.load_model(regime, seed, _fingerprint)
        if loaded is not None:
            result, info = loaded
            return result.model, info
        result, metrics = measure.train_unit(regime, self.cfg, seed, self.device, self.train_data)
        info = {"metrics": metrics, "fingerprint": _fingerprint(result.model)}
        self.store.save_model(result, info)
        return result.model, info

    def _discover(self, regime: str, seed: int, model64: Any, fp: str, task: Any, b: int) -> dict[str, Any] | None:
        slug = task_slug(task)
        done = self.store.load_unit(regime, seed, slug, b, fp)
        if done is not None:
            return done["row"]
        try:
            batch = task.pairs(self.test_split, model64, self.preset.batch_size, seed, b)
        except ValueError as err:  # too few correctly classified pairs: a badly trained model, not a crash
            self.skipped.append(f"{regime} seed{seed} {task.name} batch{b}: {err}")
            self.store.log(f"warning: skipping {self.skipped[-1]}")
            return None
        circuit, row, restored = measure.discover_unit(model64, task, batch, self.threshold)
        self.store.save_unit(regime, seed, slug, b, circuit,
                             {"row": row, "node_patching": restored, "model_fingerprint": fp})
        return row

    def run(self, bar: Any) -> list[dict[str, Any]]:
        """All units in order (regime, seed, task, batch); returns the rows of results.csv."""
        rows = []
        for regime in self.preset.regimes:
            for seed in self.seeds:
                bar.set_postfix_str(f"{regime} seed{seed} training")
                model, info = self._model(regime, seed)
                bar.update(1)
                self.models[(regime, seed)] = model
                model64 = measure.discovery_model(model, self.device)
                for task in self.tasks:
                    for b in range(self.preset.n_batches):
                        bar.set_postfix_str(f"{regime} seed{seed} {task.name} batch{b}")
                        row = self._discover(regime, seed, model64, info["fingerprint"], task, b)
                        if row is not None:
                            rows.append({"regime": regime, "seed": seed, "task": task.name, "batch": b,
                                         **row, **info["metrics"]})
                        bar.update(1)
        return rows

    def setup(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        pairs = []
        for task in self.tasks:
            rs = [r for r in rows if r["task"] == task.name]
            used, cand = sum(r["n_used"] for r in rs), sum(r["n_candidates"] for r in rs)
            pairs.append(f"{task.name}: {used} pairs used of {cand} candidates ({cand - used} dropped as misclassified)")
        methods = sorted({str(r.get("memory_method")) for r in rows})
        jobs = sorted({int(r["training_jobs"]) for r in rows if r.get("training_jobs") not in (None, "")})
        return {
            "preset": f"{self.preset.name} — {self.preset.note}",
            "training": f"{getattr(self.cfg, 'steps', '?')} steps, batch {getattr(self.cfg, 'batch_size', '?')}"
                        + (f", training subset {self.preset.train_subset}" if self.preset.train_subset else "")
                        + "; models trained " + " / ".join("in-process, one at a time" if j == 1 else
                                                           f"{j} at once in single-threaded worker processes"
                                                           for j in jobs)
                        + " (wall-clock training measures depend on this)",
            "regimes": ", ".join(self.preset.regimes), "seeds": ", ".join(map(str, self.seeds)),
            "tasks": ", ".join(t.name for t in self.tasks),
            "example batches": f"{self.preset.n_batches} per task and seed, {self.preset.batch_size} pairs each "
                               "(MNIST test set, only pairs the full model classifies correctly)",
            "MNIST pairs": "; ".join(pairs),
            "ACDC": f"fast engine, KL metric, resample ablation, float64, threshold {self.threshold}",
            "intervals": "95% percentile bootstrap, 2000 resamples (seed 0), over seeds x example batches "
                         "(training measures: over seeds)",
            "machine": ", ".join(f"{k} {v}" for k, v in machine().items()) + f", device {self.device}",
            "peak memory method": ", ".join(methods),
            "skipped units": "; ".join(self.skipped) or "none",
        }

    def write_outputs(self, rows: list[dict[str, Any]], setup_extra: dict[str, Any]) -> Path:
        """results.csv, summary.csv, figures/*.png and report.md; returns the report's path."""
        out = self.store.out
        write_csv(out / "results.csv", rows, measure.COLUMNS)
        summary = summarize(rows)
        srows = summary_rows(summary, self.preset.regimes)
        write_csv(out / "summary.csv", srows, summary_columns())
        names = [t.name for t in self.tasks]
        figs = self._figure_a(out / "figures")
        figs += summary_figures(summary, out / "figures", regimes=self.preset.regimes, tasks=names)
        setup = {**self.setup(rows), **{k: str(v) for k, v in setup_extra.items()}}
        return write_report(out / "report.md", setup=setup, summary=summary, rows=srows, figures=figs,
                            tasks=names, regimes=self.preset.regimes)

    def _figure_a(self, fig_dir: Path) -> list[Path]:
        """(a) full network vs circuit for BIMT and L1: first seed, first task, batch 0."""
        paths = []
        task, seed = self.tasks[0], self.seeds[0]
        for regime in FIGURE_A_REGIMES:
            path = self.store.circuit_path(regime, seed, task_slug(task), 0)
            if (regime, seed) not in self.models or not path.exists():
                continue
            circuit = Circuit.load(path)
            paths.append(network_figure(self.models[(regime, seed)], circuit,
                                        fig_dir / f"a_network_vs_circuit_{regime}.png", regime))
        return paths
