"""What the study needs from a model family: the one seam between the pipeline and the models it trains.

The pipeline is the same for every family: one job per (regime, seed) trains its model(s) and, per task and
example batch, runs node patching, ACDC at each threshold and the methods comparison in float64; the rows are read
back from the run store and judged by one report (``jobs``, ``units``, ``pipeline``, ``report``). A family says
what differs:

- tasks: ``get_task(name)``, ``slug(task)`` (a file-name-safe name) and ``batch(task, model64, config, seed, b)``
  (batch ``b`` of correctly answered clean / corrupted pairs, a ``tasks.TaskBatch``);
- models: ``models(task names)``, which tasks share a trained model (MNIST: one model per (regime, seed) for every
  task; transformers: one per task), ``train``, ``save`` / ``load`` (checkpoints), ``network(result)`` (what the
  run store fingerprints) and ``discovery_model(result, device)`` (the float64 model the circuits are found on);
- the report: ``title``, ``measures`` (the definitions' text), ``setup(config)`` lines, ``figure_a`` and its
  caption, and ``training_groups``: the tasks whose models the training measures (claim 4) pool.

``family_of(config)`` picks it from run.json (``"family"``; absent means ``mnist``, so run directories made before
transformers existed resume unchanged). The families: ``mnist`` here, ``transformer`` in ``transformer_family``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

FAMILY_NAMES = ("mnist", "transformer")


class Mnist:
    """SPEC 2 MLPs (784-100-100-10) trained on MNIST; the paper's tasks on the MNIST test set (``tasks``)."""

    name = "mnist"
    pairs_label = "MNIST pairs"

    @property
    def title(self) -> str:
        from hooked_bimt.study.report import MNIST_TITLE

        return MNIST_TITLE

    @property
    def measures(self) -> tuple[str, ...]:
        from hooked_bimt.study.report import MEASURES_TEXT

        return MEASURES_TEXT

    def get_task(self, name: str) -> Any:
        from hooked_bimt.study.tasks import get_task

        return get_task(name)

    def slug(self, task: Any) -> str:
        from hooked_bimt.study.tasks import task_slug

        return task_slug(task)

    def models(self, tasks: Sequence[str]) -> list[tuple[str | None, list[str]]]:
        """One model per (regime, seed), shared by every task."""
        return [(None, list(tasks))]

    def model_slug(self, task: str | None) -> str | None:
        return None

    def training_groups(self, tasks: Sequence[str]) -> dict[str, list[str]]:
        return {"": list(tasks)}

    def train_config(self, preset: Any, tasks: Sequence[str]) -> dict[str, Any]:
        return preset.train_config().to_dict()

    def train(self, config: dict[str, Any], regime: str, seed: int, task: str | None, concurrent: int
              ) -> tuple[Any, dict[str, Any]]:
        from hooked_bimt import TrainConfig
        from hooked_bimt.study import measure
        from hooked_bimt.study.presets import _mnist, training_data

        data = training_data(config["train_subset"], *_mnist())
        cfg = TrainConfig.from_dict(config["train_config"])
        return measure.train_unit(regime, cfg, seed, config["device"], data, concurrent)

    def save(self, result: Any, directory: Path) -> None:
        result.save(directory, overwrite=True)  # the store redoes an unfinished unit of its own run (claim checked)

    def load(self, directory: Path) -> Any:
        from hooked_bimt import TrainResult

        return TrainResult.load(directory)

    def network(self, result: Any) -> Any:
        return result.model

    def discovery_model(self, result: Any, device: str) -> Any:
        from hooked_bimt.study import measure

        return measure.discovery_model(result.model, device)

    def batch(self, task: Any, model64: Any, config: dict[str, Any], seed: int, b: int) -> Any:
        from hooked_bimt.study.presets import _mnist

        return task.pairs(_mnist()[1], model64, config["batch_size"], seed, b)

    def setup(self, config: dict[str, Any]) -> dict[str, str]:
        tc = config["train_config"]
        subset = f", training subset {tuple(config['train_subset'])}" if config["train_subset"] else ""
        return {"training": f"{tc.get('steps', '?')} steps, batch {tc.get('batch_size', '?')}{subset}",
                "example batches": f"{config['n_batches']} per task and seed, {config['batch_size']} pairs each "
                                   "(MNIST test set, only pairs the full model classifies correctly)"}

    def figure_a(self, result: Any, circuit: Any, path: Path, regime: str, what: str) -> tuple[Path, str]:
        from hooked_bimt.study import figures

        return figures.network_figure(result.model, circuit, path, regime, what)

    def figure_caption(self, regime: str, what: str) -> str:
        from hooked_bimt.study.figures import network_caption

        return network_caption(regime, what)


def family_of(config: dict[str, Any] | str) -> Any:
    """The family of a study configuration (run.json's ``family``, default ``mnist``) or of a name."""
    name = config if isinstance(config, str) else config.get("family", "mnist")
    if name == "mnist":
        return Mnist()
    if name == "transformer":
        from hooked_bimt.study.transformer_family import Transformer

        return Transformer()
    raise ValueError(f"unknown model family {name!r}; expected one of {list(FAMILY_NAMES)}")
