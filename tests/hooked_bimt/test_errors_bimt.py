"""Issue 13, API half (hooked_bimt): training settings and checkpoints refused by name before any work."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from bimt_fixtures import small_model
from safetensors.torch import load_file, save_file

from hooked_bimt import HookedMLP, MNISTSplit, TrainConfig, train
from hooked_bimt.checkpoint import CheckpointError

TINY = dataclasses.replace(TrainConfig.quick(), steps=20, swap_every=10, eval_every=10, train_subset=200,
                           test_subset=100)


def _data(n: int = 200) -> tuple[MNISTSplit, MNISTSplit]:
    g = torch.Generator().manual_seed(0)
    split = MNISTSplit(images=torch.rand(n, 28, 28, generator=g), labels=torch.randint(10, (n,), generator=g))
    return split, split


@pytest.mark.parametrize(
    "field, value, message",
    [("lr", float("inf"), "TrainConfig.lr must be a finite number, got inf"),
     ("lambda_", float("nan"), "TrainConfig.lambda_ must be a finite number"),
     ("y_star", -0.5, "TrainConfig.y_star must be >= 0 .*negative"),
     ("distance_factor", -2.0, "TrainConfig.distance_factor must be >= 0"),
     ("last_layer_distance_factor", -1.0, "TrainConfig.last_layer_distance_factor must be >= 0"),
     ("steps", 2.5, "TrainConfig.steps must be an int, got 2.5"),
     ("batch_size", True, "TrainConfig.batch_size must be an int, got True"),
     ("widths", (784, 100.0, 10), "TrainConfig.widths must be an int, got 100.0"),
     ("dtype", "float16", "TrainConfig.dtype must be one of")],
)
def test_train_config_refuses_bad_fields_by_name(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        dataclasses.replace(TrainConfig.quick(), **{field: value})


@pytest.mark.parametrize(
    "change, message",
    [({"widths": (784, 8, 7)}, r"widths\[-1\] is 7 but the data has 10 classes"),
     ({"widths": (100, 8, 10)}, r"widths\[0\] is 100 but the data has 784 features"),
     ({"device": "foo"}, "unknown device 'foo'"),
     ({"device": "meta"}, "unsupported device 'meta'"),
     ({"device": 3}, "device must be a string")],
)
def test_train_refuses_before_building_anything(change, message):
    started = []

    class Watch:  # a StepsHook: the run asks for its window before its first step
        def window(self, config):
            started.append(config)
            return range(0)

    config = dataclasses.replace(TINY, **{k: v for k, v in change.items() if k != "device"})
    with pytest.raises((ValueError, TypeError), match=message):
        train("bimt", config, device=change.get("device", "cpu"), data=_data(), progress=False, hook=Watch())
    assert started == []


@pytest.mark.parametrize("regime, steps, warns", [("bimt", 9, True), ("l1_swap", 9, True), ("bimt", 10, False),
                                                  ("l1", 9, False)])
def test_a_swapping_run_too_short_to_swap_warns(regime, steps, warns):
    config = dataclasses.replace(TINY, steps=steps, eval_every=steps)
    with pytest.warns(UserWarning, match="no swap will happen") if warns else _no_warning():
        result = train(regime, config, data=_data(), progress=False)
    assert result.metrics["swaps"] == 0 or not warns


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# ---------------------------------------------------------------------------- checkpoints
def _flip_bit(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's values: still a readable safetensors file
    path.write_bytes(bytes(data))


def _retensor(path, name, value):
    tensors = load_file(path)
    tensors[name] = value(tensors[name])
    save_file(tensors, path)


def _config(path, change):
    cfg = json.loads((path / "config.json").read_text())
    change(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def _rehash(path):
    _config(path, lambda c: c.__setitem__("weights_sha256",
                                          hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()))


BAD_CHECKPOINTS = {
    "flipped-bit": (lambda d: _flip_bit(d / "model.safetensors"), "do not match the SHA-256"),
    "out_perm-5-5-5": (lambda d: (_retensor(d / "model.safetensors", "out_perm", lambda t: torch.full_like(t, 4)),
                                  _rehash(d)), "'out_perm' is not a permutation"),
    "in_perm-repeat": (lambda d: (_retensor(d / "model.safetensors", "in_perm", lambda t: t.flip(0) * 0), _rehash(d)),
                       "'in_perm' is not a permutation"),
    "format_version-99": (lambda d: _config(d, lambda c: c.__setitem__("format_version", 99)),
                          "format_version 99; .* reads format_version 1"),
    "nan-weight": (lambda d: (_retensor(d / "model.safetensors", "linears.1.weight",
                                        lambda t: t.index_fill(0, torch.tensor([0]), float("nan"))), _rehash(d)),
                   "'linears.1.weight' holds NaN"),
    "inf-bias": (lambda d: (_retensor(d / "model.safetensors", "linears.0.bias", lambda t: t + float("inf")),
                            _rehash(d)), "'linears.0.bias' holds NaN or infinite"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused_naming_the_file(tmp_path, case):
    small_model((16, 9, 5)).save(tmp_path)
    damage, message = BAD_CHECKPOINTS[case]
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message) as err:
        HookedMLP.load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_checkpoint_hash_is_sha256_of_the_weights_file(tmp_path):
    model = small_model((16, 9, 5))
    model.save(tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())["weights_sha256"]
    assert recorded == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    x = torch.randn(3, 16, dtype=torch.float64)
    assert torch.equal(HookedMLP.load(tmp_path)(x), model(x))


def test_checkpoint_without_hash_loads_with_a_warning(tmp_path):
    model = small_model((16, 9, 5))
    model.save(tmp_path)
    _config(tmp_path, lambda c: c.pop("weights_sha256"))
    with pytest.warns(UserWarning, match="saved before content hashes"):
        loaded = HookedMLP.load(tmp_path)
    assert torch.equal(loaded.linears[0].weight, model.linears[0].weight)


@pytest.mark.parametrize("api", ["model.save", "TrainResult.save"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_saved_model_is_not_overwritten_without_opt_in(tmp_path, api, overwrite):
    first, second = small_model((784, 9, 10), seed=0), small_model((784, 9, 10), seed=1)
    first.save(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    if api == "model.save":
        save = lambda **kw: second.save(tmp_path, **kw)  # noqa: E731
    else:
        result = train("vanilla", TINY, data=_data(), progress=False)
        save = lambda **kw: result.save(tmp_path, **kw)  # noqa: E731
    if overwrite:
        save(overwrite=True)
        assert (tmp_path / "model.safetensors").read_bytes() != before
    else:
        with pytest.raises(FileExistsError, match="already holds a saved model.safetensors.*overwrite=True"):
            save()
        assert (tmp_path / "model.safetensors").read_bytes() == before


_FLOAT_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.type == "float"]
_INT_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.type in ("int", "int | None")]


@pytest.mark.parametrize("name", _FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan"), "0.1", None])
def test_every_float_field_refuses_non_finite_and_non_numbers(name, bad):
    """Generic over the dataclass: a field added later (swap options...) is covered without a new test."""
    with pytest.raises(ValueError, match=f"TrainConfig.{name} must be a finite number"):
        dataclasses.replace(TrainConfig.quick(), **{name: bad})


@pytest.mark.parametrize("name", _INT_FIELDS)
@pytest.mark.parametrize("bad", [2.5, 3.0, True, "7"])
def test_every_int_field_refuses_non_integers(name, bad):
    with pytest.raises(ValueError, match=f"TrainConfig.{name} must be an int"):
        dataclasses.replace(TrainConfig.quick(), **{name: bad})
