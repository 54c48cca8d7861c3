"""Contract tests every built-in search space must pass."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from nas.space import list_spaces, load_space
from tests.conftest import shared_file

SPACES = list_spaces()


def test_builtin_spaces_present():
    assert {"nasbench201", "fbnet", "mobilenet_small", "mbconv_imagenet"} <= set(SPACES)


@pytest.mark.parametrize("name", SPACES)
def test_200_random_architectures_build_and_run(name):
    space = load_space(name)
    rng = np.random.default_rng(0)
    x = torch.randn(1, *space.input_shape)
    seen = set()
    for _ in range(200):
        arch = space.random(rng)
        seen.add(arch.arch_id)
        table = space.describe(arch)
        model = space.build(arch).eval()
        # the layer table counts exactly the parameters of the model it describes
        assert table.params == sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            out = model(x)
        assert out.shape == (1, space.num_classes)
        assert torch.isfinite(out).all()
    assert len(seen) > 150  # random sampling really explores the space


@pytest.mark.parametrize("name", SPACES)
def test_layers_counted_on_the_built_model_are_the_described_ones(name):
    """describe(arch, model=...) counts each layer on its module in the model (how a pruned
    model's table is made): on the unpruned model it must give describe(arch)'s layers."""
    space = load_space(name)
    for seed in range(3):
        arch = space.random(seed)
        want = space.describe(arch)
        got = space.describe(arch, model=space.build(arch))
        fields = ("name", "in_shape", "out_shape", "params", "macs", "hidden_elems", "live_elems")
        for a, b in zip(want.layers, got.layers, strict=True):
            assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert got.peak_mem_bytes == want.peak_mem_bytes


@pytest.mark.parametrize("name", SPACES)
def test_string_form_round_trip(name):
    space = load_space(name)
    rng = np.random.default_rng(1)
    for _ in range(100):
        arch = space.random(rng)
        text = space.format(arch)
        assert "\n" not in text
        assert space.parse(text) == arch
        assert space.from_choices(dict(arch.choices)) == arch
        assert space.from_choices(space.to_params(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
def test_parameters_are_fixed_length_categoricals(name):
    space = load_space(name)
    params = space.parameters()
    assert params and all(len(choices) >= 2 for choices in params.values())
    rng = np.random.default_rng(2)
    for _ in range(20):
        assert list(space.random(rng).choices) == list(params)


@pytest.mark.parametrize("name", SPACES)
def test_seeded_sampling_is_deterministic(name):
    space = load_space(name)
    a = [space.random(np.random.default_rng(7)).arch_id for _ in range(3)]
    assert len(set(a)) == 1
    m1 = space.build(space.random(3), seed=5)
    m2 = space.build(space.random(3), seed=5)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p1, p2)


@pytest.mark.parametrize("name", SPACES)
def test_spec_round_trip_keeps_hash(name):
    from nas.space import space_from_dict

    space = load_space(name)
    again = space_from_dict(space.to_dict())
    assert again.hash == space.hash
    assert again.parameters() == space.parameters()


def test_nasbench201_enumerates_exactly_15625():
    space = load_space("nasbench201")
    assert space.size() == 15625
    strings = {space.format(a) for a in space.enumerate()}
    assert len(strings) == 15625


def test_nasbench201_strings_agree_with_official_index():
    path = shared_file("nas-bench-201-arch-index/nb201_arch_index.csv")
    official = {row["arch_str"] for row in csv.DictReader(open(path))}
    space = load_space("nasbench201")
    ours = {space.format(a) for a in space.enumerate()}
    assert ours == official
    for text in list(official)[:500]:
        assert space.format(space.parse(text)) == text


def test_nasbench201_params_match_the_benchmark():
    """Parameter counts equal NAS-Bench-201's own (NASLib subset, params in millions)."""
    path = shared_file("nas-bench-201-accuracy/naslib_zc_subset/naslib_zc_nasbench201_subset.csv")
    space = load_space("nasbench201")
    rows = [r for r in csv.DictReader(open(path)) if r["dataset"] == "cifar10"][:200]
    for row in rows:
        table = space.describe(space.parse(row["arch_str"]))
        assert table.params / 1e6 == pytest.approx(float(row["params"]), abs=1e-6)


def test_fbnet_parses_help_architectures():
    path = shared_file("help-latency/fbnet_archs.csv")
    space = load_space("fbnet")
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 5000
    for row in rows:
        arch = space.parse(row["arch_str"])
        assert space.format(arch) == row["arch_str"]
    assert len(space.parameters()) == 22
    assert all(len(c) == 9 for c in space.parameters().values())
    assert space.size() == 9**22


def test_chain_space_size_counts_distinct_architectures():
    space = load_space("mobilenet_small")
    # small enough to check by brute force on a reduced copy: one stage
    spec = space.to_dict()
    spec["stages"] = spec["stages"][:2]
    from nas.space import space_from_dict

    small = space_from_dict(spec)
    assert small.size() == sum(1 for _ in small.enumerate())


EFFECTIVE_CASES = [
    # node 1's conv feeds nothing: dead
    (
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
    ),
    # nodes 1 and 2 receive nothing, so their outgoing convs are dead
    (
        "|none~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
    ),
    # node 1 is node 0 (its only input is a skip edge): its conv starts at node 0 instead
    (
        "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
        "|none~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    ),
    # nothing reaches the output: the whole cell is zero
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ),
]


@pytest.mark.parametrize(("text", "expected"), EFFECTIVE_CASES)
def test_effective_form_drops_edges_off_every_path(text, expected):
    space = load_space("nasbench201")
    eff = space.effective(space.parse(text))
    assert space.format(eff) == expected
    assert space.effective(eff) == eff


def test_effective_form_relabels_interchangeable_nodes():
    space = load_space("nasbench201")
    a = space.parse(
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|nor_conv_1x1~2|"
    )
    b = space.parse(
        "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    )
    assert a != b and space.effective(a) == space.effective(b)
    # node 2 reads node 1 here: no relabelling applies
    c = space.parse(
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    )
    assert space.effective(c) == c


def test_a_skip_then_op_path_is_the_op_then_skip_path():
    """x1 = skip(x0), x2 = x0 + conv(x1) is x1 = conv(x0), x2 = x0 + x1: both were trained."""
    space = load_space("nasbench201")
    end = "|+|none~0|none~1|skip_connect~2|"
    a = space.parse("|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1" + end)
    b = space.parse("|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1" + end)
    assert space.effective(a) == space.effective(b)
    # a node with two outgoing edges cannot take its edge's op: one op would run twice
    c = space.parse(
        "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    )
    assert space.effective(c).choices["0->1"] == "skip_connect"


def test_effective_forms_of_parameter_free_cells_compute_the_same_outputs():
    """Every rule of ``effective`` (merges, moved ops, dead edges, relabelling) on cells whose
    ops hold no weights, so the two models share every weight: the same outputs."""
    space = load_space("nasbench201")
    ops = ("none", "skip_connect", "avg_pool_3x3")
    archs = [
        space.parse("|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*combo))
        for combo in itertools.product(ops, repeat=6)
    ]
    changed = [a for a in archs if space.effective(a) != a]
    x = torch.randn(2, *space.input_shape)
    for i in np.random.default_rng(0).permutation(len(changed))[:40]:
        full = space.build(changed[i], seed=0).eval()
        form = space.build(space.effective(changed[i]), seed=0).eval()
        form.load_state_dict(full.state_dict())
        with torch.no_grad():
            out, same = full(x), form(x)
        # sums in another order: equal to rounding (values grow over the 15 cells)
        assert (out - same).abs().max() <= 1e-6 * out.abs().max(), space.format(changed[i])


def test_effective_forms_of_nasbench201_compute_the_same_function():
    space = load_space("nasbench201")
    archs = list(space.enumerate())
    forms = {space.effective(a).arch_id for a in archs}
    assert len(forms) == 7855
    # dead edges removed without relabelling: the shared weights give identical outputs (a dead
    # ReLU-conv-BN edge sees zeros and, in eval mode at init, outputs exactly zero)
    x = torch.randn(2, *space.input_shape)
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.permutation(len(archs)):
        arch = archs[i]
        eff = space.effective(arch)
        kept = {k for k, v in eff.choices.items() if v != "none"}
        if eff == arch or any(arch.choices[k] != eff.choices[k] for k in kept):
            continue  # unchanged, or relabelled: no one-to-one weight mapping
        full = space.build(arch, seed=0).eval()
        small = space.build(eff).eval()
        small.load_state_dict(
            {k: v for k, v in full.state_dict().items() if k in small.state_dict()}
        )
        with torch.no_grad():
            assert torch.equal(full(x), small(x))
        assert space.describe(eff).params <= space.describe(arch).params
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_spaces_without_zero_or_skip_ops_are_their_own_effective_form():
    space = load_space("mbconv_imagenet")
    arch = space.random(0)
    assert space.effective(arch) is arch


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # identity skips go: all but a stage's first layer, and the first where nothing changes
        (
            "w24 fused_k3_e3 | w40 mb_k3_e3 | w48 skip skip skip",
            "w24 fused_k3_e3 | w40 mb_k3_e3 | w48 skip",
        ),
        (
            "w24 fused_k3_e3 | w40 skip mb_k5_e6 skip | w48 mb_k3_e6",
            "w24 fused_k3_e3 | w40 skip mb_k5_e6 | w48 mb_k3_e6",
        ),
        (
            "w24 fused_k3_e3 | w40 mb_k3_e3 | w48 skip mb_k3_e6",
            "w24 fused_k3_e3 | w40 mb_k3_e3 | w48 skip mb_k3_e6",
        ),
    ],
)
def test_chain_effective_form_drops_identity_skips(text, expected):
    space = load_space("mobilenet_small")
    arch, eff = space.parse(text), space.effective(space.parse(text))
    assert space.format(eff) == expected and space.effective(eff) == eff
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():  # the same model: identity layers hold no weights
        assert torch.equal(space.build(arch, seed=0).eval()(x), space.build(eff, seed=0).eval()(x))


def test_one_stage_space_reads_its_own_string_form(tmp_path):
    # a single stage with a width choice prints no '|' ("w16 skip"): parsing must accept that
    from nas.space import SearchSpace

    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\ntype: chain\ninput: {channels: 1, height: 8, width: 8}\nnum_classes: 10\n"
        "stem: {op: conv_k3_relu6, width: 8, stride: 1}\n"
        "stages:\n  - {depth: [1], width: [8, 16], stride: 2, ops: [mbconv_k3_e3_relu6, skip]}\n"
    )
    space = SearchSpace.from_yaml(path)
    for arch in space.enumerate():
        assert "|" not in space.format(arch)
        assert space.parse(space.format(arch)) == arch


def test_peak_memory_counts_a_blocks_expanded_tensors():
    """An MBConv's peak was its input + output: 6x too small for an e6 block, whose depthwise
    conv holds the expanded input and output while the block keeps its own input."""
    space = load_space("mobilenet_small")
    arch = space.parse("w24 mb_k3_e3 | w24 fused_k3_e3 | w64 mb_k5_e6")
    layers = space.layers(arch)
    block = next(x for x in layers if x.label == "mb_k5_e6")
    c, h, w = block.in_shape
    _, ho, wo = block.out_shape
    # the depthwise conv: expanded input (at the block's resolution) + its output + block input
    assert block.live_elems == c * 6 * h * w + c * 6 * ho * wo + c * h * w
    assert block.live_elems > 2 * block.activation_elems
    assert space.describe(arch).peak_activation_elems >= block.live_elems
