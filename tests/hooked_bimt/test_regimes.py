import pytest

from hooked_bimt import REGIMES, Regime
from hooked_bimt.regimes import get_regime
from hooked_bimt import TrainConfig


def test_the_regimes_per_spec_table():
    """The five of SPEC 2, then the two swap regimes with the original notebook's swaps (issue 14)."""
    assert list(REGIMES) == ["vanilla", "l1", "l1_local", "l1_swap", "bimt", "l1_swap_original", "bimt_original"]
    cfg = TrainConfig()
    table = {
        name: (r.uses_cost, cfg.loss_factors(r), r.swaps, cfg.swap_factors(r), r.swap_mode)
        for name, r in REGIMES.items()
    }
    zero, local, every = [0.0, 0.0, 0.0], [2.0, 2.0, 0.0], [2.0, 2.0, 2.0]
    assert table == {
        "vanilla": (False, zero, False, zero, "ours"),
        "l1": (True, zero, False, zero, "ours"),
        "l1_local": (True, local, False, zero, "ours"),
        "l1_swap": (True, zero, True, local, "ours"),
        "bimt": (True, local, True, local, "ours"),
        "l1_swap_original": (True, zero, True, every, "original"),  # scored with A on every layer
        "bimt_original": (True, local, True, every, "original"),
    }


def test_regime_is_frozen_and_unknown_name_lists_valid_ones():
    with pytest.raises(AttributeError):
        REGIMES["bimt"].swaps = False  # type: ignore[misc]
    with pytest.raises(ValueError, match="vanilla, l1, l1_local, l1_swap, bimt, l1_swap_original, bimt_original"):
        get_regime("bimtt")
    assert isinstance(get_regime("l1"), Regime)


def test_lambda_schedule_paper_defaults():
    cfg = TrainConfig.paper()
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.swap_every, cfg.top_k, cfg.y_star) == (40_000, 100, 1e-3, 500, 30, 0.5)
    assert [cfg.lambda_at(s) for s in (0, 9_999, 10_000, 19_999, 20_000, 39_999)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 1.0, 1.0]
    )


def test_config_round_trips_and_rejects_bad_values():
    cfg = TrainConfig.quick()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="Regime.swap_mode"):
        Regime("x", uses_cost=True, distance_factor=2.0, swaps=True, swap_distance_factor=2.0, swap_mode="notebook")


@pytest.mark.parametrize("field, value", [("batches", "shuffled"), ("original_moments", "dropped")])
def test_original_options_reject_unknown_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be one of"):
        TrainConfig(**{field: value})
    cfg = TrainConfig(batches="epochs", original_moments="moved")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_configs_of_earlier_versions_still_read():
    """Checkpoints and study directories written before the brute-force search left the library hold
    ``original_search: "fast"``; they read as today's config. The brute force is no config value any more."""
    old = {**TrainConfig.quick().to_dict(), "original_search": "fast"}
    assert TrainConfig.from_dict(old) == TrainConfig.quick()
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['original_search'\]"):
        TrainConfig.from_dict({**old, "original_search": "brute_force"})
