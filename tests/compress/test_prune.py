"""Structured and unstructured pruning: every built-in space prunes to a smaller dense model with
the same output shape, and a pruned model's widths round-trip as data onto a fresh build."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nas import NasConfigError
from nas.compress import (
    apply_shape_overrides,
    prune_structured,
    prune_unstructured,
    shape_overrides,
    sparsity_of,
)
from nas.space import list_spaces, load_space, parse_op
from nas.space._network import Network
from nas.space._ops import ChannelShuffle, Zero
from tests.conftest import TINY_SPACE


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _example(space, batch: int = 2) -> torch.Tensor:
    """A batch at the space's resolution, capped at 64x64: channel pruning does not depend on
    the resolution, and tracing mbconv_imagenet at 224x224 is slow on a laptop CPU."""
    c, h, w = space.input_shape
    return torch.randn(batch, c, min(h, 64), min(w, 64))


def _check_pruned(build, x: torch.Tensor, ratio: float, round_to: int = 8) -> nn.Module:
    """Prune ``build()``; check shape, size, rounding and the round trip through overrides."""
    model = build().eval()
    pruned = prune_structured(model, x, ratio=ratio, round_to=round_to)
    with torch.no_grad():
        y, y_pruned = model(x), pruned(x)
    assert y_pruned.shape == y.shape
    assert torch.isfinite(y_pruned).all()
    assert _params(pruned) < _params(model)
    overrides = shape_overrides(pruned, build())
    for name, attrs in overrides.items():
        for key in ("out_channels", "num_features", "cout"):  # kept widths are vector friendly
            if key in attrs and key != "cout":
                assert attrs[key] % round_to == 0, (name, attrs)
    assert json.loads(json.dumps(overrides)) == overrides
    fresh = apply_shape_overrides(build(), overrides, source="test").eval()
    fresh.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.allclose(fresh(x), y_pruned, atol=1e-6)
    return pruned


@pytest.mark.parametrize("seed", range(30))
def test_mobilenet_small_archs_prune_and_round_trip(seed):
    space = load_space("mobilenet_small")
    arch = space.random(seed)
    _check_pruned(lambda: space.build(arch, seed=seed), _example(space), ratio=0.5)


@pytest.mark.parametrize("name", list_spaces())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_builtin_space_prunes_and_round_trips(name, seed):
    space = load_space(name)
    arch = space.random(seed)
    _check_pruned(lambda: space.build(arch, seed=0), _example(space), ratio=0.3)


def _custom_network() -> Network:
    """Ops no built-in space combines: a channel shuffle (grouped MBConv with expansion), SE
    after it, and a Zero op that widens 16 -> 32 channels."""
    torch.manual_seed(0)
    body = [
        parse_op("mbconv_k3_e2_g2").op().build(16, 16, 1),
        parse_op("mbconv_k3_e2_g2_se").op().build(16, 24, 2),
        parse_op("zero").op().build(24, 32, 2),
        parse_op("mbconv_k3_e3").op().build(32, 32, 1),
    ]
    stem = parse_op("conv_k3_relu").op().build(3, 16, 1)
    return Network(stem, body, parse_op("conv1x1").op().build(32, 64, 1), 64, 10, 0.0)


def test_channel_shuffle_and_zero_stay_consistent():
    pruned = _check_pruned(_custom_network, torch.randn(2, 3, 16, 16), ratio=0.5)
    for block in (pruned.body[0].body, pruned.body[1].body):
        assert isinstance(block[1], ChannelShuffle)
        # the conv feeding a shuffle keeps its width: DepGraph would treat the permutation
        # as the identity and prune mismatched channels on its two sides
        assert block[0][0].out_channels == 32
        assert block[-2].groups == 2 and block[-2].out_channels % 2 == 0
    zero = pruned.body[2]
    assert isinstance(zero, Zero) and zero.cout == pruned.body[3].body[0][0].in_channels < 32


def test_zero_edges_follow_the_pruned_width(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    space = load_space(tmp_path / "tiny.yaml")
    arch = space.from_choices({key: "none" for key in space.parameters()})
    pruned = _check_pruned(
        lambda: space.build(arch, seed=0), _example(space), ratio=0.5, round_to=2
    )
    assert {m.cout for m in pruned.modules() if isinstance(m, Zero)} == {4}


def test_small_groups_are_never_emptied():
    space = load_space("mobilenet_small")
    model = space.build(space.random(3), seed=0)
    # each group keeps >= round_to channels: 16 channels at 0.9 keep 8, never 0
    pruned = prune_structured(model, _example(space), ratio=0.9, round_to=8, importance="l1")
    assert min(m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)) >= 8


def test_input_model_is_untouched_and_mode_kept():
    space = load_space("mobilenet_small")
    model = space.build(space.random(5), seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_structured(model, _example(space), ratio=0.5)
    assert pruned.training and model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats
    same = prune_structured(model, _example(space), ratio=0.0)
    assert _params(same) == _params(model) and same is not model


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_ratio_out_of_range(ratio):
    space = load_space("mobilenet_small")
    with pytest.raises(NasConfigError, match=r"`0 <= ratio < 1` must hold"):
        prune_structured(space.build(space.random(0)), _example(space), ratio=ratio)


def test_bad_importance_and_round_to():
    space = load_space("mobilenet_small")
    model = space.build(space.random(0))
    with pytest.raises(NasConfigError, match=r"unknown pruning importance 'l3'.*did you mean"):
        prune_structured(model, _example(space), ratio=0.5, importance="l3")
    for round_to in (0, 2.5):  # (2.5 'must hold round_to >= 1', which it does)
        with pytest.raises(NasConfigError, match=r"^round_to: expected an integer >= 1, got "):
            prune_structured(model, _example(space), ratio=0.5, round_to=round_to)


def test_apply_shape_overrides_errors_name_module_key_and_source():
    space = load_space("mobilenet_small")
    arch = space.random(0)
    cases = [
        ({"stem.9": {"out_channels": 8}}, r"src\.json: pruned: no module 'stem\.9'"),
        ({"stem.0": {"kernel_size": 8}}, r"src\.json: pruned: stem\.0: .*'kernel_size'"),
        ({"stem.0": {"out_channels": 0}}, r"src\.json: pruned: stem\.0\.out_channels: .*positive"),
        ({"stem.0": {"groups": 3}}, r"src\.json: pruned: stem\.0: .*multiples of groups 3"),
    ]
    for overrides, match in cases:
        with pytest.raises(NasConfigError, match=match):
            apply_shape_overrides(space.build(arch), overrides, source="src.json")


def test_shape_overrides_needs_the_same_architecture():
    space = load_space("mobilenet_small")
    assert shape_overrides(space.build(space.random(0)), space.build(space.random(0))) == {}
    with pytest.raises(NasConfigError, match="in the reference model"):
        shape_overrides(nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.ReLU()))


def test_unstructured_pruning_is_global_and_permanent():
    space = load_space("mobilenet_small")
    model = space.build(space.random(1), seed=0)
    sparse = prune_unstructured(model, sparsity=0.6)
    assert sparsity_of(sparse) == pytest.approx(0.6, abs=1e-3)
    assert sparsity_of(model) == 0.0  # the input is untouched
    assert set(sparse.state_dict()) == set(model.state_dict())  # no weight_orig / weight_mask
    with pytest.raises(NasConfigError, match=r"`0 <= sparsity < 1` must hold"):
        prune_unstructured(model, sparsity=1.0)
