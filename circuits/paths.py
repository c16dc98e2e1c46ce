"""Output paths, checked before any work: a directory or file that cannot be written, or that holds something
saved, is refused by name. Imports nothing heavy, so the command line answers a bad ``--out`` at once (before
torch is imported); ``circuits.validate`` re-exports both checks.
"""

from __future__ import annotations

import os
from pathlib import Path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (``os.access`` says yes to root on read-only or virtual
    file systems such as /proc): a temporary file is created and removed at once."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_dir(path: str | os.PathLike, *, overwrite: bool = False, holds: tuple[str, ...] = ()) -> Path:
    """Refuse an output directory that cannot be created or written, before any work is done.

    ``holds``: file names that, if present in ``path``, mean something saved would be overwritten;
    refused unless ``overwrite``. Nothing is left behind (the nearest existing folder gets a temporary file, created
    and removed, to find out whether it is writable).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {path} is an existing file, not a directory; choose another path")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output path {path} lies under {parent}, which is a file, not a directory; "
                         "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK) or not _can_create_in(parent):
        raise ValueError(f"output path {path}: {parent} is not writable; choose a directory you can write to")
    found = [name for name in holds if (path / name).exists()]
    if found and not overwrite:
        raise FileExistsError(
            f"{path} already holds a saved {', '.join(found)}; pass --force (overwrite=True) to replace it, "
            "or choose another directory"
        )
    return path


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The same for one output file: its folder must be creatable and an existing file needs ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {path} is a directory; give a file name such as {path / 'circuit.json'}")
    check_output_dir(path.parent)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another name")
    return path
