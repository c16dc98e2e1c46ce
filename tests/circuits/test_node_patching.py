"""node_patching: the restored fraction per hidden node, equal to a one-node-at-a-time hook computation."""

from __future__ import annotations

import pytest
import torch
from conftest import HeadMixer, make_batches, make_mlp

from circuits import node_patching


def ld(logits):
    return logits[:, 0] - logits[:, 1]


def one_node(model, hook, index, axis, clean, corrupted):
    _, cache = model.run_with_cache(clean)
    src = cache[hook]

    def patch(act, hook):
        act = act.clone()
        idx = [slice(None)] * act.dim()
        if axis is not None:
            idx[axis] = index
        act[tuple(idx)] = src[tuple(idx)]
        return act

    return model.run_with_hooks(corrupted, fwd_hooks=[(hook, patch)])


@torch.no_grad()
def test_mlp_scores_equal_one_node_patches():
    model = make_mlp(4, widths=(5, 4, 3, 3))
    clean, corrupted = make_batches(4)
    scores = node_patching(model, clean, corrupted, ld)
    assert list(scores) == ["blocks.0.hook_post", "blocks.1.hook_post"]
    base, top = ld(model(corrupted)).mean(), ld(model(clean)).mean()
    for hook, s in scores.items():
        assert s.shape == (model.widths[1 + int(hook.split(".")[1])],)
        for j in range(len(s)):
            want = (ld(one_node(model, hook, j, -1, clean, corrupted)).mean() - base) / (top - base)
            assert float(s[j]) == pytest.approx(float(want), abs=1e-12)


@torch.no_grad()
def test_head_axis_nodes():
    model = HeadMixer(seed=5)
    clean, corrupted = make_batches(5, batch=4, shape=(3, 2))
    s = node_patching(model, clean, corrupted, ld)["hook_post"]
    base, top = ld(model(corrupted)).mean(), ld(model(clean)).mean()
    for h in range(3):
        want = (ld(one_node(model, "hook_post", h, 1, clean, corrupted)).mean() - base) / (top - base)
        assert float(s[h]) == pytest.approx(float(want), abs=1e-12)


def test_bad_logit_diff():
    model = make_mlp(0)
    with pytest.raises(TypeError, match="callable"):
        node_patching(model, *make_batches(0), "ld")
    with pytest.raises(ValueError, match="one value per example"):
        node_patching(model, *make_batches(0), lambda logits: logits)
    x = make_batches(0)[0]
    with pytest.raises(ValueError, match="same mean logit difference"):
        node_patching(model, x, x.clone(), ld)
