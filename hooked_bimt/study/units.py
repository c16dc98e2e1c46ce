"""The run directory: configuration guard and resumable, atomically written units.

Layout of ``DIR``::

    run.json                                     the study configuration (a DIR holds one configuration)
    models/{regime}/seed{seed}/                  TrainResult.save() + study.json (metrics; written last)
        {task}/                                  instead, one per task, for a family with a model per task
    units/{regime}/seed{seed}/{task}/batch{b}/   node_patching.json, or skipped.json (too few usable pairs)
        thr{threshold}/                          circuit.json + measures.json (written last), one per threshold
    submitit/                                    the executor's job files and logs (``executors``)

A unit is finished when its last file exists and reads back; a unit that fails to read back is
reported, moved aside to ``<dir>.corrupt-N`` (kept, never deleted) and recomputed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from hooked_bimt.atomic import atomic_write_json

RUN_FORMAT = "hooked-bimt-study"


class ConfigMismatchError(ValueError):
    """``DIR`` already holds the results of another study configuration."""


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ, by dotted path into nested dicts (``train_config.steps: 6000 (in DIR) vs 40 (now)``)."""
    out = []
    for k in sorted(set(old) | set(new), key=lambda k: (k != "preset", k)):  # the preset first: it says the most
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {_short(a)} (in DIR) vs {_short(b)} (now)")
    return out


# Transformer train-config fields added later, at the value every earlier run had (GPT-2, no KV groups): a run
# directory written before they existed resumes.
ADDED_TRANSFORMER = {"arch": "gpt2", "n_kv_head": None}


def _current(config: Any) -> Any:
    """A run.json configuration as this version writes it: MNIST train config fields retired at their one value
    dropped, transformer train config fields added later filled in at the value earlier runs had (a DIR of an
    earlier version resumes when nothing but those differs)."""
    if not isinstance(config, dict) or not isinstance(config.get("train_config"), dict):
        return config
    from hooked_bimt.train_config import RETIRED

    tc = {k: v for k, v in config["train_config"].items() if not (k in RETIRED and v == RETIRED[k])}
    tc = {k: {**ADDED_TRANSFORMER, **v} if isinstance(v, dict) else v for k, v in tc.items()}  # per transformer task
    return {**config, "train_config": tc}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary(lines: list[str], most: int = 4) -> str:
    more = f"; and {len(lines) - most} more" if len(lines) > most else ""
    return "; ".join(lines[:most]) + more


class RunStore:
    """Paths, configuration guard and unit persistence for one study directory."""

    def __init__(self, out: str | os.PathLike, log: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.log = log

    # ------------------------------------------------------------------ configuration
    def claim(self, config: dict[str, Any]) -> bool:
        """Record ``config`` in ``run.json``, or check it matches the one there. Returns True when resuming.

        Raises ``ConfigMismatchError`` (a ``ValueError``) if DIR holds another configuration's results.
        """
        config = json.loads(json.dumps(config, default=str))  # normalise tuples, dtypes... to their JSON form
        run_json = self.out / "run.json"
        if run_json.exists():
            try:
                old = json.loads(run_json.read_text())
            except json.JSONDecodeError as err:
                raise ConfigMismatchError(f"{run_json} is not valid JSON ({err}); use a fresh --out directory") from err
            if _current(old.get("config")) != config:
                lines = _summary(_diff(_current(old.get("config")) or {}, config)) or "unreadable configuration"
                raise ConfigMismatchError(
                    f"{self.out} holds results of another configuration ({lines}); refusing to mix them. "
                    "Use a fresh --out directory or the original settings."
                )
            return True
        if any((self.out / d).exists() for d in ("models", "units", "results.csv")):
            raise ConfigMismatchError(f"{self.out} holds study results but no run.json; refusing to mix. Use a fresh --out")
        atomic_write_json(run_json, {"format": RUN_FORMAT, "version": 1, "config": config})
        return False

    # ------------------------------------------------------------------ paths
    def model_dir(self, regime: str, seed: int, slug: str | None = None) -> Path:
        d = self.out / "models" / regime / f"seed{seed}"
        return d if slug is None else d / slug

    def batch_dir(self, regime: str, seed: int, task_slug: str, batch: int) -> Path:
        return self.out / "units" / regime / f"seed{seed}" / task_slug / f"batch{batch}"

    def unit_dir(self, regime: str, seed: int, task_slug: str, batch: int, threshold: float) -> Path:
        return self.batch_dir(regime, seed, task_slug, batch) / f"thr{threshold:g}"

    def config(self) -> dict[str, Any]:
        """The configuration recorded in run.json (``claim`` writes it)."""
        return json.loads((self.out / "run.json").read_text())["config"]

    def move_aside(self, path: Path, why: str) -> Path:
        """Rename a bad unit to ``<name>.corrupt-N`` (first free N) and report it."""
        n = 1
        while (dest := path.with_name(f"{path.name}.corrupt-{n}")).exists():
            n += 1
        os.replace(path, dest)
        self.log(f"warning: {path} is corrupt ({why}); moved aside to {dest.name}, recomputing this unit")
        return dest

    # ------------------------------------------------------------------ trained models
    def load_model(self, regime: str, seed: int, fingerprint: Callable[[Any], str], *, family: Any = None,
                   slug: str | None = None) -> tuple[Any, dict] | None:
        """(TrainResult, study info) of a finished model unit, None if unfinished; corrupt ones are moved aside.

        ``family`` (``family.family_of``; default MNIST) reads the checkpoint; ``slug``: the task of a per-task model."""
        from hooked_bimt.study.family import family_of

        fam = family if family is not None else family_of("mnist")
        d = self.model_dir(regime, seed, slug)
        marker = d / "study.json"
        if not marker.exists():
            return None
        try:
            info = json.loads(marker.read_text())
            result = fam.load(d)
            if fingerprint(fam.network(result)) != info["fingerprint"]:
                raise ValueError("the weights do not match the fingerprint recorded when the unit was written")
        except Exception as err:  # any unreadable checkpoint: CheckpointError, JSON, safetensors, KeyError...
            self.move_aside(d, f"{type(err).__name__}: {err}")
            return None
        return result, info

    def save_model(self, result: Any, info: dict[str, Any], *, family: Any = None, slug: str | None = None) -> None:
        from hooked_bimt.study.family import family_of

        d = self.model_dir(result.regime.name, result.seed, slug)
        (family if family is not None else family_of("mnist")).save(result, d)
        atomic_write_json(d / "study.json", {**info, "finished": True})

    # ------------------------------------------------------------------ discovery units
    def load_unit(self, key: tuple[str, int, str, int], threshold: float, fingerprint: str) -> dict | None:
        """Measures of a finished discovery unit (``key`` = regime, seed, task slug, batch) for the model
        ``fingerprint``; None if it must be (re)computed."""
        d = self.unit_dir(*key, threshold)
        marker = d / "measures.json"
        if not marker.exists():
            return None
        try:
            from circuits import Circuit

            measures = json.loads(marker.read_text())
            Circuit.load(d / "circuit.json")
            if not measures.get("finished") or "row" not in measures:
                raise ValueError("measures.json is incomplete")
        except Exception as err:
            self.move_aside(d, f"{type(err).__name__}: {err}")
            return None
        if measures.get("model_fingerprint") != fingerprint:
            self.log(f"note: {d} was computed for another model (retrained); recomputing it")
            return None
        return measures

    def save_unit(self, key: tuple[str, int, str, int], threshold: float, circuit: Any, measures: dict) -> None:
        d = self.unit_dir(*key, threshold)
        circuit.save(d / "circuit.json", overwrite=True)  # an unfinished unit of this run is redone
        atomic_write_json(d / "measures.json", {**measures, "finished": True})

    def load_record(self, key: tuple[str, int, str, int], name: str, fingerprint: str) -> dict | None:
        """A finished per-batch JSON record (``node_patching`` or ``skipped``) for the model ``fingerprint``."""
        path = self.batch_dir(*key) / f"{name}.json"
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if not record.get("finished"):
                raise ValueError(f"{path.name} is incomplete")
        except Exception as err:
            self.move_aside(path, f"{type(err).__name__}: {err}")
            return None
        return record if record.get("model_fingerprint") == fingerprint else None

    def save_record(self, key: tuple[str, int, str, int], name: str, record: dict) -> None:
        atomic_write_json(self.batch_dir(*key) / f"{name}.json", {**record, "finished": True})

    def circuit_path(self, key: tuple[str, int, str, int], threshold: float) -> Path:
        return self.unit_dir(*key, threshold) / "circuit.json"
