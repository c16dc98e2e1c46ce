import gzip
import shutil
from pathlib import Path

import pytest
import torch

from hooked_bimt.data import ENV_VAR, REPO_DATA, MNISTError, load_split

TEST_FILES = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _copy(dest: Path, raw: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        src = REPO_DATA / f"{name}.gz"
        if raw:
            (dest / name).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, dest / f"{name}.gz")
    return dest


def test_reads_the_vendored_test_split():
    split = load_split("test")
    assert split.images.shape == (10_000, 28, 28) and split.labels.dtype == torch.int64
    assert 0.0 <= float(split.images.min()) and float(split.images.max()) == 1.0
    assert torch.bincount(split.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_torchvision_layout_and_raw_files(tmp_path):
    _copy(tmp_path / "MNIST" / "raw", raw=True)
    split = load_split("test", tmp_path)
    assert torch.equal(split.labels, load_split("test").labels)


def test_environment_variable_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(MNISTError, match="nowhere"):
        load_split("test")
    monkeypatch.setenv(ENV_VAR, str(_copy(tmp_path / "mine")))
    assert len(load_split("test")) == 10_000


def test_rejects_an_altered_file(tmp_path):
    root = _copy(tmp_path, raw=True)
    path = root / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] = (data[100] + 1) % 10  # one label changed
    path.write_bytes(bytes(data))
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte.*checksum"):
        load_split("test", root)


def test_rejects_a_truncated_file(tmp_path):
    root = _copy(tmp_path)
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(MNISTError, match="t10k-images-idx3-ubyte"):
        load_split("test", root)


def test_missing_file_names_it(tmp_path):
    root = _copy(tmp_path)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte"):
        load_split("test", root)


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_split("validation")
