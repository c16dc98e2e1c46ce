"""ACDC (Conmy et al. 2023): ``circuits.acdc(model, clean, corrupted, threshold=...)``.

Layout: ``loop.py`` the SPEC 4 order both engines share, ``reference.py`` one forward pass per tested
edge, ``fast.py`` the exact fast engine for MLP-shaped graphs, ``discover.py`` the public function.
"""

from circuits.acdc.discover import ENGINES, acdc
from circuits.acdc.loop import check_threshold

__all__ = ["ENGINES", "acdc", "check_threshold"]
