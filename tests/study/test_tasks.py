"""Tasks: pairing, labels, seeding, dropping misclassified pairs, logit differences, name parsing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bimt.study.tasks import LOOP_DIGITS, NO_LOOP_DIGITS, circle, digit_pair, get_task, task_slug


def _row_index(split, rows: torch.Tensor) -> list[int]:
    """Index in ``split`` of each image row (exact match)."""
    flat = split.images.reshape(len(split.labels), -1)
    return [int(torch.nonzero((flat == r.to(flat.dtype)).all(1)).flatten()[0]) for r in rows]


def test_digit_pair_labels_and_images_match(test_slice, oracle_cls):
    task = digit_pair(8, 3)
    b = task.pairs(test_slice, oracle_cls(test_slice), n=20, seed=0)
    assert b.clean.shape == b.corrupted.shape == (20, 784)
    assert (b.clean_labels == 8).all() and (b.corrupt_labels == 3).all()
    # each row is the image of its label, row by row
    assert test_slice.labels[_row_index(test_slice, b.clean)].tolist() == [8] * 20
    assert test_slice.labels[_row_index(test_slice, b.corrupted)].tolist() == [3] * 20
    assert b.n_candidates == b.n_used == 20 and b.n_dropped == 0


def test_circle_pools(test_slice, oracle_cls):
    b = circle().pairs(test_slice, oracle_cls(test_slice), n=50, seed=3)
    assert set(b.clean_labels.tolist()) <= set(LOOP_DIGITS)
    assert set(b.corrupt_labels.tolist()) <= set(NO_LOOP_DIGITS)
    assert len(set(b.clean_labels.tolist())) > 1  # really a mix of loop digits


def test_same_seed_same_pairs_other_seed_other_pairs(test_slice, oracle_cls):
    model = oracle_cls(test_slice)
    a = digit_pair(8, 3).pairs(test_slice, model, n=16, seed=5)
    b = digit_pair(8, 3).pairs(test_slice, model, n=16, seed=5)
    c = digit_pair(8, 3).pairs(test_slice, model, n=16, seed=6)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupted, b.corrupted)
    assert not torch.equal(a.clean, c.clean)


def test_batches_of_one_seed_are_disjoint(test_slice, oracle_cls):
    model = oracle_cls(test_slice)
    b0 = digit_pair(8, 3).pairs(test_slice, model, n=10, seed=0, batch_index=0)
    b1 = digit_pair(8, 3).pairs(test_slice, model, n=10, seed=0, batch_index=1)
    assert not set(_row_index(test_slice, b0.clean)) & set(_row_index(test_slice, b1.clean))


def test_misclassified_pairs_are_dropped_and_counted(test_slice, oracle_cls):
    task = digit_pair(8, 3)
    honest = task.pairs(test_slice, oracle_cls(test_slice), n=30, seed=0)
    clean_ids = _row_index(test_slice, honest.clean)
    corrupt_ids = _row_index(test_slice, honest.corrupted)
    # make the model wrong on the clean image of pair 2 and the corrupted image of pair 7
    wrong = {clean_ids[2], corrupt_ids[7]}
    b = task.pairs(test_slice, oracle_cls(test_slice, wrong), n=30, seed=0)
    ids_c, ids_x = _row_index(test_slice, b.clean), _row_index(test_slice, b.corrupted)
    assert clean_ids[2] not in ids_c and corrupt_ids[7] not in ids_x
    kept = [p for k, p in enumerate(zip(clean_ids, corrupt_ids)) if k not in (2, 7)]
    assert list(zip(ids_c, ids_x))[:28] == kept  # the rest keep their pairing and order
    assert b.n_used == 30 and b.n_candidates == 32 and b.n_dropped == 2


def test_pairs_follow_model_dtype(test_slice, oracle_cls):
    model = oracle_cls(test_slice).double()
    b = digit_pair(8, 3).pairs(test_slice, model, n=4, seed=0)
    assert b.clean.dtype == torch.float64 and b.clean_labels.dtype == torch.int64


def test_not_enough_pairs_is_a_clear_error(test_slice, oracle_cls):
    with pytest.raises(ValueError, match="classified correctly"):
        digit_pair(8, 3).pairs(test_slice, oracle_cls(test_slice), n=10_000, seed=0)


@pytest.mark.parametrize("bad", [dict(n=0), dict(seed=-1), dict(batch_index=-2), dict(n=2.5)])
def test_bad_pairs_arguments(test_slice, oracle_cls, bad):
    kwargs = dict(n=4, seed=0, batch_index=0) | bad
    with pytest.raises(ValueError):
        digit_pair(8, 3).pairs(test_slice, oracle_cls(test_slice), **kwargs)


def test_logit_diffs_and_metric():
    logits = torch.randn(6, 10, dtype=torch.float64)
    assert torch.equal(digit_pair(8, 3).logit_diff(logits), logits[:, 8] - logits[:, 3])
    expected = torch.logsumexp(logits[:, [0, 6, 8, 9]], -1) - torch.logsumexp(logits[:, [1, 2, 3, 4, 5, 7]], -1)
    assert torch.allclose(circle().logit_diff(logits), expected)
    m = digit_pair(8, 3).metric()
    assert torch.isclose(m(logits, logits), -(logits[:, 8] - logits[:, 3]).mean())


@settings(max_examples=30, deadline=None)
@given(st.floats(-50, 50), st.integers(0, 9))
def test_circle_logit_diff_is_shift_invariant_and_monotone(shift, digit):
    logits = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(digit))
    base = circle().logit_diff(logits)
    assert torch.allclose(circle().logit_diff(logits + shift), base)
    bumped = logits.clone()
    bumped[:, digit] += 1.0
    change = circle().logit_diff(bumped) - base
    assert ((change > 0) if digit in LOOP_DIGITS else (change < 0)).all()


def test_get_task_names():
    assert get_task("8v3") == digit_pair(8, 3) == get_task("digit_pair:8:3")
    assert get_task("circle") == circle()
    assert task_slug(get_task("digit_pair:8:3")) == "8v3" and task_slug(circle()) == "circle"
    for bad in ["square", "8v8", "10v3", "digit_pair:8", ""]:
        with pytest.raises(ValueError):
            get_task(bad)
    with pytest.raises(ValueError):
        digit_pair(8, 12)
