"""Rebuild a study's summary.csv, summary figures and report.md from its run.json and results.csv (and methods.csv
when there is one) alone.

    python -m hooked_bimt.study.rebuild DIR [--executor inline]

For a study directory kept without its models and units (``docs/results/paper``: the paper preset takes ~53
minutes on a 2-core CPU), after a change of the report's rules. Nothing is recomputed but the summaries: the
per-unit numbers are read back from results.csv exactly (floats are stored at full precision). Figure (a)
(network vs circuit) needs the trained models: its PNG files are kept as they are, with their captions; the
set-up lines results.csv cannot give (the machine, skipped units) are kept from the existing report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from hooked_bimt.study import measure
from hooked_bimt.study.family import family_of
from hooked_bimt.study.methods import summarize_methods
from hooked_bimt.study.pipeline import FIGURE_A_REGIMES, figure_a_what, setup_lines, summaries
from hooked_bimt.study.presets import get_preset
from hooked_bimt.study.report import write_report
from hooked_bimt.study.summary import read_csv

TEXT_COLUMNS = ("regime", "task", "memory_method")


def typed(row: dict[str, str]) -> dict[str, Any]:
    """A results.csv row with its numbers as int or float (empty cells as None), text columns as they are."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in TEXT_COLUMNS or v is None:
            out[k] = v
        elif v == "":
            out[k] = None
        else:
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = float(v)
    return out


KEPT_SETUP = ("machine", "skipped units")  # not derivable from results.csv: read back from the existing report


def _kept_setup(report: Path) -> dict[str, str]:
    if not report.is_file():
        return {}
    lines = [ln for ln in report.read_text().splitlines() if ln.startswith("- **")]
    return {k: ln.split(f"- **{k}**: ", 1)[1] for k in KEPT_SETUP for ln in lines if ln.startswith(f"- **{k}**: ")}


def rebuild(out: str | Path, *, executor: str = "inline", skipped: Sequence[str] = ()) -> Path:
    """summary.csv, the summary figures and report.md of ``out`` from its run.json and results.csv."""
    out = Path(out)
    for name in ("run.json", "results.csv"):
        if not (out / name).is_file():
            raise ValueError(f"{out} has no {name}: not a study directory (hooked-bimt reproduce writes both)")
    config = json.loads((out / "run.json").read_text())["config"]
    rows = [typed(r) for r in read_csv(out / "results.csv")]
    missing = [c for c in measure.KEY_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{out / 'results.csv'} has no rows or lacks the columns {missing}")
    fam = family_of(config)
    names = [fam.get_task(t).name for t in config["tasks"]]
    figs = []
    what = figure_a_what(config)
    for regime in FIGURE_A_REGIMES:
        path = out / "figures" / f"a_network_vs_circuit_{regime}.png"
        if path.exists():
            figs.append((path, fam.figure_caption(regime, what)))
    srows, training, more = summaries(config, rows, out)
    setup = {**setup_lines(get_preset(config["preset"]), config, rows, skipped, executor),
             **_kept_setup(out / "report.md")}
    setup["resumed"] = "True (report rebuilt from results.csv by hooked_bimt.study.rebuild)"
    methods = summarize_methods(read_csv(out / "methods.csv")) if (out / "methods.csv").is_file() else None
    return write_report(out / "report.md", setup=setup, results=rows, training_groups=training, rows=srows,
                        figures=figs + more, tasks=names, regimes=config["regimes"], methods=methods, family=fam)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hooked_bimt.study.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a study directory holding run.json and results.csv")
    parser.add_argument("--executor", default="inline", help="the executor named in the set-up (default inline)")
    args = parser.parse_args(argv)
    try:
        report = rebuild(args.dir, executor=args.executor)
    except ValueError as err:
        print(f"rebuild: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
