import json

import pytest
import torch
from safetensors.torch import save_file

from bimt_fixtures import small_model
from hooked_bimt import HookedMLP, relocate
from hooked_bimt.checkpoint import CheckpointError, read_metadata, save_model


def _moved_model():
    model = small_model((16, 9, 4, 5), seed=2)
    assert relocate(model, top_k=9, distance_factor=[2.0, 2.0, 2.0]) > 0
    model.swap_positions(3, 0, 2)  # and an output-ring swap
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_load_round_trips_bit_exactly(tmp_path, dtype):
    model = _moved_model().to(dtype)
    assert not torch.equal(model.out_perm, torch.arange(5))  # the ring moved: the buffers matter
    save_model(model, tmp_path, regime="bimt", step=7, seed=3, metrics={"test_accuracy": 0.5})
    loaded = HookedMLP.load(tmp_path)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b and a.dtype == b.dtype and torch.equal(a, b), name
    meta = read_metadata(tmp_path)
    assert (meta["regime"], meta["step"], meta["seed"], meta["metrics"]) == ("bimt", 7, 3, {"test_accuracy": 0.5})
    x = torch.rand(3, 16, dtype=dtype)
    assert torch.equal(loaded(x), model(x))


def test_no_stray_temporary_files(tmp_path):
    _moved_model().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_wrong_shape_names_tensor_and_file(tmp_path):
    model = small_model((16, 9, 5))
    model.save(tmp_path)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["linears.0.weight"] = torch.zeros(8, 16, dtype=torch.float64)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model.safetensors.*linears.0.weight.*\(8, 16\)"):
        HookedMLP.load(tmp_path)


def test_corrupt_and_missing_files(tmp_path):
    small_model((16, 9, 5)).save(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        HookedMLP.load(tmp_path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors.*not found"):
        HookedMLP.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON"):
        HookedMLP.load(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        HookedMLP.load(tmp_path / "absent")


def test_config_that_does_not_match(tmp_path):
    small_model((16, 9, 5)).save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["widths"] = [16, 9, 4, 5]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing"):
        HookedMLP.load(tmp_path)


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        small_model((16, 9, 5)).save(tmp_path, weights=torch.zeros(2))
    assert not (tmp_path / "model.safetensors").exists()
