"""The study on transformers (issue 22): the ``transformer_smoke`` preset end to end through ``reproduce`` (units,
report, resume, rebuild), and the transformer family's tasks, batches and configuration."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from hooked_bimt.study import measure, methods, transformer_family
from hooked_bimt.study.presets import PRESETS, REGIME_ORDER
from hooked_bimt.study.reproduce import reproduce, study_config
from hooked_bimt.study.summary import read_csv
from hooked_bimt.study.transformer_family import SequenceTask, get_task

pytest.importorskip("transformer_lens.model_bridge")
REGIMES, TASKS, SLUGS = ("l1", "bimt"), ("modular_addition:5", "induction:12:8"), ("modular_addition_5", "induction_12_8")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("tsmoke") / "run"
    reproduce(out, "transformer_smoke", progress=False)
    return out


@pytest.mark.slow
def test_smoke_preset_writes_a_model_per_task_its_units_and_the_report(smoke):
    config = json.loads((smoke / "run.json").read_text())["config"]
    assert config["family"] == "transformer" and sorted(config["train_config"]) == sorted(TASKS)
    assert config["train_config"]["modular_addition:5"]["steps"] == 24
    for regime in REGIMES:
        for slug in SLUGS:  # one checkpoint per (regime, seed, task), hooked_bimt.transformer.save's files
            model = smoke / "models" / regime / "seed0" / slug
            assert {"model.safetensors", "config.json", "study.json"} <= {p.name for p in model.iterdir()}
            batch = smoke / "units" / regime / "seed0" / slug / "batch0"
            assert {"node_patching.json", "methods.json"} <= {p.name for p in batch.iterdir()}
            assert len(list(batch.glob("thr*/measures.json"))) == 3
    rows = read_csv(smoke / "results.csv")
    assert len(rows) == len(REGIMES) * len(TASKS) * 3  # regimes x tasks x thresholds (1 seed, 1 batch)
    assert {(r["regime"], r["task"]) for r in rows} == {(g, t) for g in REGIMES for t in TASKS}
    for r in rows:
        assert 0.0 <= float(r["edge_sparsity"]) <= 1.0 and int(r["n_used"]) == 8 and r["peak_memory_bytes"] != ""
    assert len(read_csv(smoke / "methods.csv")) == len(REGIMES) * len(TASKS) * 3  # x methods
    report = (smoke / "report.md").read_text()
    assert report.startswith("# hooked-bimt: Nainani 2024's (arXiv 2401.03646) claims on BIMT transformers")
    assert "- **skipped units**: none" in report and "## The paper's claims" in report
    for claim in "1234":
        assert f"### Claim {claim}: " in report
    assert "bimt vs the non-BIMT regimes, induction:12:8" in report  # claims 1-3 per task, by the MNIST rule
    assert "Each task has its own trained models here: claim 4 is judged per task" in report
    for task in TASKS:  # method tables and training cost (accuracy included) per task
        assert report.count(f"### {task}") == 2 and f"| eap_ig | bimt | 1 |" in report
    figures = {p.name for p in (smoke / "figures").iterdir()}
    assert {"a_network_vs_circuit_bimt.png", "a_network_vs_circuit_l1.png", "b_frontier_induction_12_8.png",
            "d_training_memory_modular_addition_5.png", "f_inference_latency_induction_12_8.png"} <= figures


@pytest.mark.slow
def test_resume_recomputes_nothing_and_rebuild_gives_the_same_report(smoke, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was recomputed on resume")

    for module, name in ((transformer_family, "train_measured"), (measure, "discover_unit"), (measure, "warm_up"),
                         (measure, "node_patching_unit"), (methods, "methods_unit")):
        monkeypatch.setattr(module, name, refuse)
    reproduce(out, "transformer_smoke", progress=False)
    for name in ("results.csv", "methods.csv", "summary.csv"):
        assert (out / name).read_bytes() == (smoke / name).read_bytes()
    old, new = ((d / "report.md").read_text().splitlines() for d in (smoke, out))
    assert [(a, b) for a, b in zip(old, new) if a != b] == [("- **resumed**: False", "- **resumed**: True")]

    from hooked_bimt.study.rebuild import main

    shutil.rmtree(out / "models")
    shutil.rmtree(out / "units")
    assert main([str(out)]) == 0
    rebuilt = (out / "report.md").read_text().splitlines()
    changed = [(a, b) for a, b in zip(old, rebuilt) if a != b]
    assert len(old) == len(rebuilt) and len(changed) == 1 and changed[0][1].startswith("- **resumed**: True (report")


class AddOracle(nn.Module):
    """Answers ``[a, b, =]`` with ``(a + b) mod p`` at the last position, except for the prompts whose ``a`` is in
    ``wrong`` (answered ``+1``)."""

    def __init__(self, p: int, wrong: frozenset = frozenset()) -> None:
        super().__init__()
        self.p, self.wrong, self.dummy = p, wrong, nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        answer = (tokens[:, 0] + tokens[:, 1]) % self.p
        answer = torch.where(torch.isin(tokens[:, 0], torch.tensor(sorted(self.wrong), dtype=torch.long)),
                             (answer + 1) % self.p, answer)
        logits = torch.zeros(len(tokens), tokens.shape[1], self.p + 1)
        logits[torch.arange(len(tokens)), -1, answer] = 5.0
        return logits


def test_batches_keep_correctly_answered_prompts_per_seed_and_batch():
    task, model = get_task("modular_addition:7"), AddOracle(7, frozenset({0, 1}))
    b0, b1 = task.pairs(model, 16, seed=0, batch_index=0), task.pairs(model, 16, seed=0, batch_index=1)
    a, b, b2 = b0.clean[:, 0], b0.clean[:, 1], b0.corrupted[:, 1]
    assert torch.equal(b0.clean_labels, (a + b) % 7) and torch.equal(b0.corrupt_labels, (a + b2) % 7)
    assert torch.equal(b0.corrupted[:, 0], a) and bool((b2 != b).all()) and not bool(torch.isin(a, torch.tensor([0, 1])).any())
    assert b0.n_used == 16 and b0.n_candidates > 16  # about 2/7 of the candidates are answered wrongly
    again = task.pairs(model, 16, seed=0, batch_index=0)
    assert torch.equal(again.clean, b0.clean) and not torch.equal(task.pairs(model, 16, seed=1).clean, b0.clean)
    assert not torch.equal(b1.clean, b0.clean)
    with pytest.raises(ValueError, match="only 0 of 4096 candidate pairs"):
        task.pairs(AddOracle(7, frozenset(range(7))), 16, seed=0)


def test_label_logit_difference_follows_node_patchings_stacked_copies():
    batch = SequenceTask("t", None)
    labels = type("B", (), {"clean_labels": torch.tensor([1, 2, 0]), "corrupt_labels": torch.tensor([0, 0, 2])})()
    logits = torch.randn(2 * 3, 4, 5, dtype=torch.float64)  # two stacked copies of a batch of 3
    ld = measure.logit_diff_of(batch, labels)(logits)
    expect = [logits[m * 3 + i, -1, [1, 2, 0][i]] - logits[m * 3 + i, -1, [0, 0, 2][i]] for m in range(2) for i in range(3)]
    assert torch.allclose(ld, torch.stack(expect))


def test_task_names_and_errors():
    assert get_task("modular_addition").name == "modular_addition:59" and get_task("modular_addition").base.p == 59
    assert get_task("modular_addition:23").base.p == 23 and get_task("induction").base.d_vocab == 32
    small = get_task("induction:12:8").base
    assert (small.d_vocab, small.seq_len, small.max_half, small.prompt_half) == (12, 8, 4, 4)
    for bad in ("square", "modular_addition:x", "8v3"):
        with pytest.raises(ValueError, match="unknown task"):
            get_task(bad)
    with pytest.raises(ValueError, match="unknown task '8v3'"):
        reproduce("/nonexistent/never", "transformer_smoke", tasks=["8v3"])
    with pytest.raises(ValueError, match="unknown task 'induction'"):
        reproduce("/nonexistent/never", "smoke", tasks=["induction"])


def test_transformer_presets_and_their_recorded_configuration():
    full, quick = PRESETS["transformer"], PRESETS["transformer_quick"]
    assert full.family == quick.family == "transformer" and full.regimes == quick.regimes == REGIME_ORDER
    assert full.n_seeds >= 3 and quick.n_seeds >= 2 and full.tasks == ("modular_addition:59", "induction")
    assert {t.split(":")[0] for t in quick.tasks} == {"modular_addition", "induction"}
    assert len(full.thresholds) > len(quick.thresholds) >= 3
    config = study_config(full, 3, "cpu", full.thresholds, list(full.tasks))
    assert config["family"] == "transformer" and config["train_subset"] is None
    assert config["train_config"]["modular_addition:59"]["steps"] == full.train_overrides["modular_addition"]["steps"]
    assert config["train_config"]["induction"]["batch"] == full.train_overrides["induction"]["batch"]
    mnist = PRESETS["smoke"]
    assert "family" not in study_config(mnist, 1, "cpu", mnist.thresholds, list(mnist.tasks))  # run.json as before


def test_a_run_directory_from_before_arch_existed_resumes_and_another_arch_is_refused(tmp_path):
    """Run directories written before ``TrainConfig.arch`` / ``n_kv_head`` existed hold neither: they resume as the
    GPT-2 runs they were; a stored configuration of another architecture is refused, naming the field."""
    from hooked_bimt.study.presets import get_preset
    from hooked_bimt.study.units import ConfigMismatchError, RunStore

    p = get_preset("transformer_smoke")
    config = json.loads(json.dumps(study_config(p, 1, "cpu", list(p.thresholds), list(p.tasks)), default=str))
    assert all(tc["arch"] == "gpt2" and tc["n_kv_head"] is None for tc in config["train_config"].values())
    old = json.loads(json.dumps(config))
    for tc in old["train_config"].values():
        del tc["arch"], tc["n_kv_head"]
    (tmp_path / "run.json").write_text(json.dumps({"format": "hooked-bimt-study", "version": 1, "config": old}))
    assert RunStore(tmp_path, log=lambda m: None).claim(config) is True
    for tc in old["train_config"].values():
        tc["arch"] = "llama"
    (tmp_path / "run.json").write_text(json.dumps({"format": "hooked-bimt-study", "version": 1, "config": old}))
    with pytest.raises(ConfigMismatchError, match="arch: 'llama' \\(in DIR\\) vs 'gpt2' \\(now\\)"):
        RunStore(tmp_path, log=lambda m: None).claim(config)
