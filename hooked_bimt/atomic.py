"""Atomic file writes, re-exported from ``circuits._io`` (where they live, so ``circuits`` needs nothing of
``hooked_bimt``): a temporary file in the same folder, fsync, then ``os.replace``."""

from circuits._io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
