"""The study on transformers (issue 22): GPT-2-style modules trained by ``hooked_bimt.transformer`` (SPEC 8), one
model per (regime, seed, task), their circuits found on the float64 ``TransformerBridge`` (``family`` explains the
seam; everything else is the MNIST study's code).

Tasks (study names): ``modular_addition:P`` (``[a, b, =] -> (a + b) mod P``, trained on all P^2 pairs) and
``induction`` (``hooked_bimt.transformer.InductionTask()``; ``induction:V:L``, a smaller one, for tests). A task is judged on the labels of its prompts: the
logit difference is ``logit[clean answer] - logit[corrupted answer]`` at the last position (``logit_diff`` is None:
``measure.logit_diff_of``). Example batch b of seed s: 4,096 candidate prompt pairs drawn from the task's generator
with seed ``task.seed + 1000 (s + 1)``, kept when the full model predicts the clean answer, batch b the kept pairs
``b n .. (b + 1) n - 1`` (``tasks.take_batch``, as on MNIST).

Training measures: ``TrainResult.accuracy`` (modular addition: argmax accuracy over the P^2 pairs; induction: the
worst over repeat lengths of the second-copy accuracy on fresh sequences), wall seconds per step (the memory window
left out), peak memory over the 3 steps ending with the first swap step (``Trainer.measured_steps``, CPU meter;
not measured on CUDA) and inference milliseconds per forward pass over a batch of the task's prompts.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

CANDIDATES = 4096
PROMPT_SEED_STRIDE = 1000
MEMORY_WINDOW = 3
DEFAULT_P = 59

MEASURES_TEXT = (
    "All circuit measures are on the clean prompts of a unit (regime x seed x task x example batch x threshold), "
    "the circuit run with resample ablation (edges outside it carry the corrupted run's activation) on the float64 "
    "TransformerBridge of the trained GPT-2 module.",
    "- **logit gap**: mean over prompts, positions and the vocabulary of |logits_full - logits_circuit| "
    "(`circuits.evaluate` on sequences: every position, also those the task never trains; lower is more faithful).",
    "- **KL**: KL(softmax(full logits) || softmax(circuit logits)) at the last position (the answer's), averaged over "
    "the batch (nats); the quantity ACDC thresholds.",
    "- **LD recovery** (SPEC 5): (LD_circuit - LD_ablated) / (LD_full - LD_ablated), LD the mean of logit[clean "
    "answer] - logit[corrupted answer] at the last position (modular addition: (a + b) mod p against (a + b') mod p; "
    "induction: the token that followed the current one in the first copy against the one the reversed copy "
    "predicts), LD_ablated that of the empty circuit, i.e. the corrupted run: 1 = the full model's, 0 = none.",
    "- **edge sparsity**: 1 - edges in the circuit / all edges of the bridge's graph (SPEC 7: the embedding, each "
    "head's query, key and value inputs and its output, each MLP, the logits); the frontier figures plot edges kept "
    "= 1 - edge sparsity on a log axis. **node sparsity**: the same over the hidden nodes (heads and MLPs).",
    "- **discovery time**: wall-clock seconds of one `circuits.acdc` call (fast engine: the attention engine on "
    "bridges; one CPU thread per job; comparable within one run only).",
    "- **training measures**: accuracy (modular addition: over all p^2 pairs; induction: the worst repeat length's "
    "second-copy accuracy on fresh sequences); wall seconds per step; peak memory (method in the set-up); inference "
    "milliseconds per forward pass over a batch of prompts. One value per trained model (one model per task).",
    "- **95% intervals**: percentile bootstrap, 2000 resamples (seed 0), over seeds x example batches (training "
    "measures: over seeds); frontier differences: paired over (seed, batch).",
)


@dataclass(frozen=True)
class SequenceTask:
    """A ``hooked_bimt.transformer`` task under its study name, with the study's seeded, filtered batches."""

    name: str
    base: Any  # ModularAdditionTask or InductionTask
    logit_diff: ClassVar[None] = None  # judged on the prompts' labels (measure.logit_diff_of)

    def pairs(self, model: Any, n: int, seed: int, batch_index: int = 0) -> Any:
        """Batch ``batch_index`` of ``n`` prompt pairs whose clean prompt the model answers correctly, tokens on the
        model's device; ``ValueError`` when fewer than ``(batch_index + 1) n`` of the candidates are. The corrupted
        prompt is not asked to be answered: induction's (a reversed first copy) has no trained answer, and a model
        that matches more than the current token (trained induction models do) predicts neither label there."""
        import torch

        from hooked_bimt.study.tasks import TaskBatch, take_batch

        pool = dataclasses.replace(self.base, n_prompts=CANDIDATES,
                                   seed=self.base.seed + PROMPT_SEED_STRIDE * (seed + 1)).prompts()
        device = next(model.parameters()).device
        with torch.no_grad():
            ok = model(pool.clean.to(device))[:, -1].argmax(-1).cpu() == pool.clean_labels
        rows, n_candidates = take_batch(ok, n, batch_index, self.name)
        return TaskBatch(clean=pool.clean[rows].to(device), corrupted=pool.corrupted[rows].to(device),
                         clean_labels=pool.clean_labels[rows].to(device),
                         corrupt_labels=pool.corrupt_labels[rows].to(device), n_candidates=n_candidates, n_used=n)


def get_task(name: str) -> SequenceTask:
    """``"modular_addition:P"`` (``"modular_addition"``: P = 59), ``"induction"`` (``InductionTask()``) or
    ``"induction:V:L"`` (vocabulary V, sequences of L tokens); ``ValueError`` otherwise (a bad size: the task's own)."""
    from hooked_bimt.transformer import InductionTask, ModularAdditionTask

    if not isinstance(name, str):
        raise TypeError(f"task name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "induction":
        return SequenceTask("induction", InductionTask())
    m = re.fullmatch(r"induction:(\d+):(\d+)", key)
    if m:  # a smaller vocabulary / sequence (tests): repeats of 3 .. min(6, L / 2) tokens, prompts of min(5, that)
        vocab, seq = int(m.group(1)), int(m.group(2))
        top = min(6, seq // 2)
        return SequenceTask(f"induction:{vocab}:{seq}", InductionTask(d_vocab=vocab, seq_len=seq, max_half=top,
                                                                      prompt_half=min(5, top)))
    m = re.fullmatch(r"modular_addition(?::(\d+))?", key)
    if m:
        p = int(m.group(1) or DEFAULT_P)
        return SequenceTask(f"modular_addition:{p}", ModularAdditionTask(p=p))
    raise ValueError(f"unknown task {name!r}; the transformer presets take 'modular_addition:P' (P >= 3), 'induction' "
                     "or 'induction:VOCAB:SEQ_LEN'")


def train_measured(regime: str, task: SequenceTask, config: Any, seed: int, jobs: int) -> tuple[Any, dict[str, Any]]:
    """Train one transformer (``hooked_bimt.transformer.Trainer``); returns its TrainResult and training measures
    (``measure.TRAIN_COLUMNS``), the peak memory read over the window of steps that ends with the first swap step."""
    from hooked_bimt.memory import CPU_METHOD
    from hooked_bimt.timing import inference_ms
    from hooked_bimt.transformer import Trainer

    trainer = Trainer(regime, task.base, config, seed)
    end = min(config.swap_every, config.steps)
    window = range(max(0, end - MEMORY_WINDOW), end)
    cpu, peak = config.device == "cpu", None
    t0 = time.perf_counter()
    while trainer.step_index < config.steps:
        if cpu and trainer.step_index == window.start:
            peak = trainer.measured_steps(len(window))
        else:
            trainer.step()
    total = time.perf_counter() - t0
    result = trainer.result()
    timed = [s for i, s in enumerate(trainer.history["seconds"]) if not (cpu and i in window)]
    prompts = dataclasses.replace(task.base, n_prompts=64).prompts().clean.to(config.device)
    metrics = {"test_accuracy": result.accuracy, "train_seconds": total,
               "seconds_per_step": sum(timed) / max(len(timed), 1), "peak_memory_bytes": peak,
               "memory_method": (CPU_METHOD + f"; {len(window)} steps ending with the first swap step (step "
                                 f"{end}), the batch's tokens included") if cpu else "not measured off the CPU",
               "inference_ms_per_batch": inference_ms(result.module, prompts), "steps": config.steps,
               "swaps": sum(n for _, n in trainer.history["swaps"]), "training_jobs": jobs}
    return result, metrics


def _config_line(name: str, tc: dict[str, Any]) -> str:
    milestones = " and ".join(f"{f:.0%}" for f in tc["lambda_milestones"])
    return (f"{name}: GPT-2 with {tc['n_layer']} layers, d_model {tc['d_model']}, {tc['n_head']} heads, d_mlp "
            f"{tc['d_mlp']}, {tc['steps']} steps of batch {tc['batch']}, AdamW lr {tc['lr']:g}, lambda {tc['lambda_']:g} "
            f"(x{tc['lambda_factor']:g} at {milestones} of the steps), A {tc['distance_factor']:g}, y* {tc['y_star']:g}, "
            f"relocate every {tc['swap_every']} steps (top {tc['top_k']}) in l1_swap and bimt, {tc['dtype']}")


class Transformer:
    """GPT-2-style transformers trained under the five regimes (SPEC 8), one model per task."""

    name = "transformer"
    title = "hooked-bimt: Nainani 2024's (arXiv 2401.03646) claims on BIMT transformers (GPT-2-style, SPEC 8)"
    pairs_label = "prompt pairs"
    measures = MEASURES_TEXT

    def get_task(self, name: str) -> SequenceTask:
        return get_task(name)

    def slug(self, task: SequenceTask) -> str:
        return task.name.replace(":", "_")

    def models(self, tasks: Sequence[str]) -> list[tuple[str | None, list[str]]]:
        return [(t, [t]) for t in tasks]

    def model_slug(self, task: str | None) -> str | None:
        return None if task is None else self.slug(get_task(task))

    def training_groups(self, tasks: Sequence[str]) -> dict[str, list[str]]:
        return {get_task(t).name: [t] for t in tasks}

    def train_config(self, preset: Any, tasks: Sequence[str]) -> dict[str, Any]:
        """``{task name: TrainConfig dict}``: the preset's base config with the overrides of the task's kind."""
        from hooked_bimt.transformer import TrainConfig

        base = TrainConfig.quick() if preset.base_config == "quick" else TrainConfig()
        out = {}
        for t in tasks:
            task = get_task(t)
            over = preset.train_overrides.get(task.name.split(":")[0], {})
            out[task.name] = dataclasses.replace(base, **over).to_dict()
        return out

    def train(self, config: dict[str, Any], regime: str, seed: int, task: str | None, concurrent: int
              ) -> tuple[Any, dict[str, Any]]:
        from hooked_bimt.transformer import TrainConfig

        t = get_task(task)
        cfg = TrainConfig(**{**config["train_config"][t.name], "device": config["device"]})
        return train_measured(regime, t, cfg, seed, concurrent)

    def save(self, result: Any, directory: Path) -> None:
        from hooked_bimt.transformer import save

        save(result, directory, overwrite=True)

    def load(self, directory: Path) -> Any:
        from hooked_bimt.transformer import load

        return load(directory)

    def network(self, result: Any) -> Any:
        return result.bridge

    def discovery_model(self, result: Any, device: str) -> Any:
        return result.bridge  # float64, eval mode, on the module's device

    def batch(self, task: SequenceTask, model64: Any, config: dict[str, Any], seed: int, b: int) -> Any:
        return task.pairs(model64, config["batch_size"], seed, b)

    def setup(self, config: dict[str, Any]) -> dict[str, str]:
        names = [get_task(t).name for t in config["tasks"]]
        return {"training": ". ".join(_config_line(n, config["train_config"][n]) for n in names),
                "example batches": f"{config['n_batches']} per task and seed, {config['batch_size']} prompt pairs "
                                   f"each (drawn per seed from {CANDIDATES} candidates of the task's generator; only "
                                   "pairs whose clean answer the full model predicts)"}

    def figure_a(self, result: Any, circuit: Any, path: Path, regime: str, what: str) -> tuple[Path, str]:
        from hooked_bimt.study.figures import _save
        from hooked_bimt.transformer.figure import bimt_transformer_figure

        fig = bimt_transformer_figure(result.module, circuit, title=f"{regime}: ")
        return _save(fig, Path(path)), self.figure_caption(regime, what)

    def figure_caption(self, regime: str, what: str) -> str:
        return (f"{regime}, {what}: left the trained transformer (residual dimensions, head dimensions and MLP neurons "
                "at their SPEC 8 positions, line width ~ |weight|), right its ACDC circuit (SPEC 7 nodes: embedding, "
                "heads, MLPs, logits). The paper's Figure 2 on a transformer: BIMT's network should be local (short, "
                "near-vertical lines) and its circuit small.")
