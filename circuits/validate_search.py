"""Checks run once before a search (ACDC, threshold sweeps) starts, on what it needs anyway.

``check_before_search`` runs the empty circuit (every edge ablated) once and checks the metric on its logits
and on the full circuit's (``circuits.validate.check_metric_values``); under resample ablation it also refuses
identical clean and corrupted batches (``circuits.validate.check_distinct_pair``). One forward pass, against the
hundreds a search makes.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from circuits.graph import Graph
from circuits.patching import full_mask, run_with_mask
from circuits.validate import check_distinct_pair, check_metric_values


@torch.no_grad()
def check_before_search(metric: Callable[[Tensor, Tensor], Any], model: Any, graph: Graph, clean: Tensor,
                        corrupted: Tensor, a_prime: dict[str, Tensor], full_logits: Tensor, ablation: str,
                        where: str) -> None:
    """Refuse, naming the problem, a metric that is not one finite number on the full and the empty circuit's
    logits, and identical clean/corrupted batches under resample ablation (every effect exactly 0)."""
    if ablation == "resample":
        check_distinct_pair(clean, corrupted, where)
    empty = {k: torch.zeros_like(v) for k, v in full_mask(graph, clean.device).items()}
    empty_logits, _ = run_with_mask(model, clean, a_prime, empty, graph)
    check_metric_values(metric, full_logits, empty_logits, where)
