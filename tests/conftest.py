"""Suite-wide settings.

The test models are tiny: one intra-op thread is several times faster than two on a 2-core machine
(thread spin-up and contention dominate), so the whole suite runs single-threaded.
"""

import torch

torch.set_num_threads(1)
