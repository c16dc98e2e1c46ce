"""Real MNIST, read offline from IDX files (gzipped or raw), verified by SHA-256.

Root resolution: the ``root`` argument, then ``$HOOKED_BIMT_MNIST``, then the repository's ``data/mnist``.
A root may hold the four files directly or in torchvision's ``<root>/MNIST/raw/`` layout.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int64
from torch import Tensor

ENV_VAR = "HOOKED_BIMT_MNIST"
REPO_DATA = Path(__file__).resolve().parent.parent / "data" / "mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
# SHA-256 of the decompressed bytes (data/mnist/SHA256SUMS.raw); kept here so a foreign root is checked too.
SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}


class MNISTError(RuntimeError):
    """A missing, truncated or altered MNIST file; the message names the file."""


@dataclass(frozen=True)
class MNISTSplit:
    """One split: ``images`` (n, 28, 28) float in [0, 1] and ``labels`` (n,) int64."""

    images: Float[Tensor, "n 28 28"]
    labels: Int64[Tensor, " n"]

    def __len__(self) -> int:
        return len(self.labels)

    def flat(self) -> Float[Tensor, "n 784"]:
        return self.images.reshape(len(self), -1)


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else REPO_DATA


def _find(root: Path, name: str) -> Path:
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise MNISTError(f"MNIST file {name}[.gz] not found in {root} or {root / 'MNIST' / 'raw'}")


def _read_verified(path: Path, name: str) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise MNISTError(f"MNIST file {path} is not a valid gzip file (truncated or corrupt): {err}") from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise MNISTError(
            f"MNIST file {path} failed its checksum (sha256 {digest[:16]}..., expected {SHA256[name][:16]}...): "
            "the file is truncated or altered"
        )
    return raw


def _parse_idx(raw: bytes, path: Path, expected: int, is_images: bool) -> np.ndarray:
    magic, n = struct.unpack(">II", raw[:8])
    want_magic = 2051 if is_images else 2049
    if magic != want_magic or n != expected:
        raise MNISTError(f"MNIST file {path} has header (magic {magic}, n {n}), expected ({want_magic}, {expected})")
    if is_images:
        rows, cols = struct.unpack(">II", raw[8:16])
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(raw, dtype=np.uint8, offset=8)


def load_split(split: str, root: str | os.PathLike | None = None) -> MNISTSplit:
    if split not in FILES:
        raise ValueError(f"unknown MNIST split {split!r}; expected 'train' or 'test'")
    base = resolve_root(root)
    img_name, lbl_name, n = FILES[split]
    img_path, lbl_path = _find(base, img_name), _find(base, lbl_name)
    images = _parse_idx(_read_verified(img_path, img_name), img_path, n, True)
    labels = _parse_idx(_read_verified(lbl_path, lbl_name), lbl_path, n, False)
    return MNISTSplit(
        images=torch.from_numpy(images.astype(np.float32) / 255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


def load_mnist(root: str | os.PathLike | None = None) -> tuple[MNISTSplit, MNISTSplit]:
    """(train, test): 60,000 and 10,000 verified MNIST images in [0, 1] with int64 labels."""
    return load_split("train", root), load_split("test", root)
