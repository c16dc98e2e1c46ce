import pytest
import torch

from bimt_fixtures import small_model
from hooked_bimt import HookedMLP


def test_hooks_fire_in_spec_order():
    model = small_model((16, 9, 4, 5))
    fired = []
    hooks = [(name, lambda act, hook: fired.append(hook.name)) for name in model.hook_dict]
    model.run_with_hooks(torch.rand(3, 16, dtype=torch.float64), fwd_hooks=hooks)
    assert fired == [
        "hook_in",
        "blocks.0.hook_pre",
        "blocks.0.hook_post",
        "blocks.1.hook_pre",
        "blocks.1.hook_post",
        "hook_logits",
    ]


def test_run_with_cache_shapes_and_values():
    model = small_model((16, 9, 4, 5))
    x = torch.rand(3, 16, dtype=torch.float64)
    logits, cache = model.run_with_cache(x)
    assert cache["blocks.0.hook_pre"].shape == (3, 9) and cache["blocks.1.hook_post"].shape == (3, 4)
    torch.testing.assert_close(cache["hook_logits"], logits)
    torch.testing.assert_close(cache["blocks.0.hook_post"], torch.nn.functional.silu(cache["blocks.0.hook_pre"]))


def test_zero_ablation_changes_logits_and_leaves_no_hook():
    model = small_model((16, 9, 4, 5))
    x = torch.rand(3, 16, dtype=torch.float64)
    clean = model(x)
    ablated = model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_post", lambda act, hook: torch.zeros_like(act))])
    assert not torch.allclose(ablated, clean)
    torch.testing.assert_close(ablated, model.linears[2](torch.nn.functional.silu(model.linears[1].bias)).expand(3, 5))
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())
    torch.testing.assert_close(model(x), clean, atol=0, rtol=0)


def test_swap_neurons_preserves_function_and_is_an_involution():
    model = small_model((16, 9, 4, 5))
    x = torch.rand(4, 16, dtype=torch.float64)
    before, w = model(x), model.linears[0].weight.clone()
    model.swap_neurons(0, 2, 7)
    torch.testing.assert_close(model(x), before, atol=1e-12, rtol=0)
    assert torch.equal(model.linears[0].weight[2], w[7])
    model.swap_neurons(0, 2, 7)
    assert torch.equal(model.linears[0].weight, w)


def test_output_position_swap_keeps_class_order():
    model = small_model((16, 9, 5))
    x = torch.rand(4, 16, dtype=torch.float64)
    before, ring = model(x), model.coords(2).clone()
    model.swap_positions(2, 0, 3)
    torch.testing.assert_close(model(x), before, atol=0, rtol=0)
    assert model.out_perm.tolist() == [3, 1, 2, 0, 4]
    assert torch.equal(model.coords(2)[0], ring[3])


def test_buffers_follow_double_and_perms_stay_integer():
    model = HookedMLP((16, 9, 5))
    model.double()
    assert model.coords(0).dtype == torch.float64 and model.linears[0].weight.dtype == torch.float64
    assert model.in_perm.dtype == torch.int64 and model.out_perm.dtype == torch.int64


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(3, 15), "expects 16"),
        (torch.full((3, 16), float("nan")), "NaN"),
        (torch.rand(16), "batched"),
        (torch.ones(3, 16, dtype=torch.long), "floating"),
    ],
)
def test_bad_input_is_a_clear_error(x, message):
    with pytest.raises(ValueError, match=message):
        HookedMLP((16, 9, 5))(x)


def test_bad_widths_and_layouts_are_clear_errors():
    with pytest.raises(ValueError, match="positive integer"):
        HookedMLP((16, 0, 5))
    with pytest.raises(ValueError, match="square width"):
        HookedMLP((16, 10, 5), layouts=["grid", "grid", "ring"])
    with pytest.raises(ValueError, match="layouts"):
        HookedMLP((16, 9, 5), layouts=["grid", "ring"])
    with pytest.raises(ValueError, match="out of range"):
        HookedMLP((16, 9, 5)).swap_neurons(0, 0, 9)
