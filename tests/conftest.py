"""Suite-wide settings.

- The test models are tiny: one intra-op thread is several times faster than two on a 2-core machine
  (thread spin-up and contention dominate), so the whole suite runs single-threaded.
- ``CIRCUITS_STRICT=1``: a fast ACDC path that cannot be used raises instead of warning and running a slower one
  (``circuits.acdc.options``), so a model family silently dropping to a slow path fails the suite.
- Hypothesis: under CI (``CI`` set) the examples are derandomized, so a landing is judged on a fixed
  set of cases; locally every run explores new ones (that is how the tie in ``relocate`` was found).
"""

import os

import torch
from hypothesis import settings

os.environ["CIRCUITS_STRICT"] = "1"
torch.set_num_threads(1)
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
