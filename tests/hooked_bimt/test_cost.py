import itertools

import pytest
import torch

from bimt_fixtures import small_model
from hooked_bimt import connection_cost


def _by_hand(model, factors, y_star):
    """SPEC 2, one term at a time: sum_l mean(|W| (A D + y*)) + mean(|b| y*)."""
    total = 0.0
    for l, (lin, a) in enumerate(zip(model.linears, factors)):
        recv, send = model.coords(l + 1).tolist(), model.coords(l).tolist()
        w = lin.weight.tolist()
        terms = [
            abs(w[j][i]) * (a * (abs(recv[j][0] - send[i][0]) + abs(recv[j][1] - send[i][1])) + y_star)
            for j, i in itertools.product(range(len(recv)), range(len(send)))
        ]
        total += sum(terms) / len(terms) + sum(abs(b) * y_star for b in lin.bias.tolist()) / len(recv)
    return total


@pytest.mark.parametrize("factors, y_star", [([2.0, 2.0, 0.0], 0.5), ([0.0, 0.0, 0.0], 0.5), ([1.0, 3.0, 2.0], 0.2)])
def test_connection_cost_matches_spec_formula(factors, y_star):
    model = small_model((9, 4, 6, 5), seed=3)
    assert float(connection_cost(model, factors, y_star).detach()) == pytest.approx(_by_hand(model, factors, y_star), rel=1e-12)


def test_grid_line_and_ring_positions():
    model = small_model((4, 3, 4))
    assert model.coords(0).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    line = torch.tensor([[1 / 6, 0.5], [0.5, 0.5], [5 / 6, 0.5]], dtype=torch.float64)
    ring = torch.tensor([[0.75, 0.5], [0.5, 0.75], [0.25, 0.5], [0.5, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(model.coords(1), line)
    torch.testing.assert_close(model.coords(2), ring)


def test_cost_is_differentiable_and_rejects_wrong_factor_count():
    model = small_model((9, 4, 5))
    connection_cost(model, 2.0).backward()
    assert model.linears[0].weight.grad is not None
    with pytest.raises(ValueError, match="distance_factor"):
        connection_cost(model, [1.0, 2.0, 3.0])
