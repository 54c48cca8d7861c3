"""Edge-NPU analytic profiles (Edge TPU, Ethos-U55, Eyeriss) and the accelerator rules of
:class:`AnalyticDevice`: channel granularity, depthwise rate, pooling on the MAC array, partial
SRAM spill, pinned weights. The last tests check the ranking against measured data."""

from __future__ import annotations

import dataclasses
import math

import pytest

from nas import NasConfigError
from nas.cost import AnalyticDevice, CostModel, load_cost_model
from nas.space import Layer, OpSpec, list_spaces, load_space
from tests.conftest import shared_file

NPU_PROFILES = {"edge-tpu": 8, "ethos-u55": 8, "eyeriss": 16}  # device -> bit width


def _npu(name: str) -> AnalyticDevice:
    model = load_cost_model(name)
    assert isinstance(model, AnalyticDevice)
    return model


def _layer(
    op: OpSpec,
    shape: tuple[int, int, int],
    out: tuple[int, int, int] | None = None,
    *,
    params: int = 0,
    macs: int = 0,
) -> Layer:
    return Layer("l", op.type, op, shape, out or shape, 1, params=params, macs=macs)


CONV1 = OpSpec("conv", kernel=1, groups=1, act="relu")


def _device(**overrides) -> AnalyticDevice:
    base = dict(
        name="d",
        peak_macs_per_s=1e9,
        efficiency=1.0,
        memory_bandwidth_bytes_per_s=1e9,
        layer_overhead_ms=0.0,
        bits=8,
        mac_pj_at_8bit=1.0,
        dram_pj_per_byte=100.0,
        sram_pj_per_byte=1.0,
        sram_bytes=1000,
    )
    return AnalyticDevice(**{**base, **overrides})


# -- the profiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NPU_PROFILES))
def test_profile_loads_with_its_bit_width_and_sources(name):
    model = _npu(name)
    assert isinstance(model, CostModel) and model.device == name
    assert model.bits == NPU_PROFILES[name]
    assert model.spill == "partial" and model.free_identity
    assert len(model.sources) >= 3 and all(model.sources)
    assert AnalyticDevice(**{**model.to_dict(), "sources": tuple(model.sources)}) == model


def test_peak_from_macs_per_cycle_and_clock():
    assert _npu("eyeriss").peak_macs_per_s == pytest.approx(168 * 200e6)
    assert _npu("ethos-u55").peak_macs_per_s == pytest.approx(256 * 500e6)


@pytest.mark.parametrize("name", sorted(NPU_PROFILES))
def test_energy_per_mac_is_quadratic_in_bits(name):
    model = dataclasses.replace(
        _npu(name), dram_pj_per_byte=0.0, sram_pj_per_byte=0.0, static_power_w=0.0
    )
    layer = _layer(CONV1, (64, 8, 8), params=64 * 64, macs=64 * 64 * 64)
    energy = {
        b: dataclasses.replace(model, bits=b).estimate([layer]).energy_mj for b in (4, 8, 16)
    }
    assert energy[8] == pytest.approx(4 * energy[4])
    assert energy[16] == pytest.approx(4 * energy[8])
    int8, int16 = (dataclasses.replace(model, bits=b) for b in (8, 16))
    assert int16.mac_pj == pytest.approx(4 * int8.mac_pj)


@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("name", sorted(NPU_PROFILES))
def test_positive_finite_costs_on_every_builtin_space(name, space_name):
    model = _npu(name)
    space = load_space(space_name)
    for seed in range(3):
        est = model.estimate(space.layers(space.random(seed)))
        for value in (est.latency_ms, est.energy_mj):
            assert math.isfinite(value) and value > 0
        assert model.estimate(space.layers(space.random(seed))) == est  # pure


# -- spill to off-chip memory -----------------------------------------------------------------


def test_partial_spill_by_hand():
    dev = _device(spill="partial")
    # 10x10x10 in + out = 2000 int8 bytes; 1000 fit the SRAM, 1000 spill
    layer = _layer(CONV1, (10, 10, 10))
    lat, energy = dev.layer_cost(layer)
    assert energy == pytest.approx((1000 * 1.0 + 1000 * 100.0) * 1e-9)
    assert lat == pytest.approx(1000 / 1e9 * 1e3)  # only the spilled bytes use the DRAM bus


def test_a_block_moves_its_inner_tensors_twice():
    """An MBConv's expanded and depthwise outputs are written by one conv and read by the next;
    they were left out, so a block with a 6x hidden width moved as little as a 1x1 conv."""
    from nas.space import profile_layer

    op = OpSpec("mbconv", kernel=3, expansion=6, groups=1, se=False, act="relu")
    prof = profile_layer(op, (16, 8, 8), 24, 2)
    assert prof.hidden_elems == 96 * 8 * 8 + 96 * 4 * 4  # expand output + depthwise output
    e1 = OpSpec("mbconv", kernel=3, expansion=1, groups=1, se=False, act="relu")
    assert profile_layer(e1, (16, 8, 8), 16, 1).hidden_elems == 16 * 8 * 8  # depthwise only
    assert profile_layer(CONV1, (16, 8, 8), 24, 1).hidden_elems == 0
    layer = Layer(
        "l",
        "k3_e6",
        op,
        (16, 8, 8),
        prof.out_shape,
        2,
        prof.params,
        prof.macs,
        prof.hidden_elems,
    )
    dev = _device(peak_macs_per_s=1e15, sram_bytes=0)  # memory-bound, everything off chip
    moved = 16 * 8 * 8 + 24 * 4 * 4 + 2 * prof.hidden_elems + prof.params  # int8: 1 byte each
    assert dev.layer_cost(layer)[0] == pytest.approx(moved / 1e9 * 1e3)


@pytest.mark.parametrize("name", sorted(NPU_PROFILES))
def test_larger_working_sets_spill_to_dram(name):
    model = dataclasses.replace(_npu(name), static_power_w=0.0)
    nbytes = model.bits // 8
    channels = 16

    def energy_per_byte(width: int) -> float:  # a 16 x width x width feature map, in and out
        layer = _layer(CONV1, (channels, width, width))
        return model.estimate([layer]).energy_mj / (layer.activation_elems * nbytes)

    side = math.isqrt(model.sram_bytes // (2 * channels * nbytes))  # in + out just fit
    fits, spills = energy_per_byte(side // 2), energy_per_byte(side * 4)
    assert fits == pytest.approx(model.sram_pj_per_byte * 1e-9)
    assert spills > 5 * fits  # most of the working set now crosses the off-chip bus
    assert spills < model.dram_pj_per_byte * 1e-9


def test_edge_tpu_streams_parameters_that_miss_the_8mb_cache():
    tpu = _npu("edge-tpu")
    small = _layer(CONV1, (512, 1, 1), (512, 1, 1), params=4 * 2**20, macs=4 * 2**20)
    large = _layer(CONV1, (4096, 1, 1), (4096, 1, 1), params=16 * 2**20, macs=16 * 2**20)
    e_small, e_large = tpu.estimate([small]), tpu.estimate([large])
    # 4x the MACs, but half the 16 MB of weights now comes over PCIe on every inference, and
    # with the SRAM full of weights the 8 KB of activations go off chip too
    assert e_large.energy_mj > 8 * e_small.energy_mj
    assert e_large.latency_ms == pytest.approx((8 * 2**20 + 8192) / 5e8 * 1e3)  # PCIe-bound


# -- compute rules ----------------------------------------------------------------------------


def test_ethos_u55_rates_follow_vela():
    u55 = dataclasses.replace(_npu("ethos-u55"), memory_bandwidth_bytes_per_s=1e30)
    u55 = dataclasses.replace(u55, sram_bandwidth_bytes_per_s=1e30)
    macs = 64 * 64 * 9 * 8 * 8
    dense = _layer(OpSpec("conv", kernel=3, groups=1, act="relu"), (64, 8, 8), macs=macs)
    half = _layer(OpSpec("conv", kernel=3, groups=1, act="relu"), (16, 8, 8), macs=macs)
    dw = _layer(OpSpec("conv", kernel=3, groups=64, act="relu"), (64, 8, 8), macs=macs)
    t_dense = u55.estimate([dense]).latency_ms
    assert t_dense == pytest.approx(macs / (256 * 500e6) * 1e3)  # full 32-channel IFM blocks
    assert u55.estimate([half]).latency_ms == pytest.approx(2 * t_dense)  # 16 of 32 channels
    assert u55.estimate([dw]).latency_ms == pytest.approx(8 * t_dense)  # 32 MACs/cycle


def test_pooling_modes_on_the_mac_array():
    pool = _layer(OpSpec("avgpool", kernel=3), (16, 8, 8))
    window = 16 * 9 * 8 * 8
    for mode, macs in (("none", 0), ("depthwise", window), ("dense", window * 16)):
        dev = _device(pool_on_mac_array=mode, memory_bandwidth_bytes_per_s=1e30)
        assert dev.estimate([pool]).latency_ms == pytest.approx(macs / 1e9 * 1e3)


def test_identity_and_zero_edges_are_free_only_where_declared():
    skip = _layer(OpSpec("skip"), (16, 8, 8))
    zero = _layer(OpSpec("zero"), (16, 8, 8))
    assert _device(free_identity=True).estimate([skip, zero]).energy_mj == 0.0
    assert _device().estimate([skip, zero]).energy_mj > 0.0


def test_bad_accelerator_keys_name_the_rule(tmp_path):
    with pytest.raises(NasConfigError, match=r"unknown pool_on_mac_array 'dens'.*'dense'"):
        _device(pool_on_mac_array="dens")
    with pytest.raises(NasConfigError, match="weights_on_chip needs spill: partial"):
        _device(weights_on_chip=True)
    base = (
        "device: x\nkind: analytic\nmemory_bandwidth_bytes_per_s: 1e9\nmac_pj_at_8bit: 1\n"
        "dram_pj_per_byte: 1\nsram_pj_per_byte: 1\nsram_bytes: 10\nbits: 8\n"
    )
    both = tmp_path / "x.yaml"
    both.write_text(base + "peak_macs_per_s: 1e9\nclock_hz: 1e9\n")
    with pytest.raises(NasConfigError, match="clock_hz: give either peak_macs_per_s or"):
        load_cost_model(str(both))
    typo = tmp_path / "y.yaml"
    typo.write_text(base.replace("device: x", "device: y") + "peak_macs_per_s: 1e9\nspill: part\n")
    with pytest.raises(NasConfigError, match=r"y\.yaml:10: spill: .*did you mean 'partial'"):
        load_cost_model(str(typo))
    # no silent default bit width: it sets the bytes moved and the energy per MAC
    typo.write_text(
        base.replace("device: x", "device: y").replace("bits: 8\n", "") + "peak_macs_per_s: 1e9\n"
    )
    with pytest.raises(NasConfigError, match=r"y\.yaml:1: missing required key 'bits': the width"):
        load_cost_model(str(typo))
    # a missing key is not blamed on a right one read before it (dram_ for sram_pj_per_byte)
    typo.write_text(
        base.replace("device: x", "device: y").replace("sram_pj_per_byte: 1\n", "")
        + "peak_macs_per_s: 1e9\n"
    )
    with pytest.raises(NasConfigError) as info:
        load_cost_model(str(typo))
    assert "missing required key 'sram_pj_per_byte'" in str(info.value)
    assert "misspelling" not in str(info.value)


def test_a_value_in_the_wrong_unit_is_refused_or_warned_of(tmp_path, caplog):
    """A bandwidth of 4 (GB/s meant) loaded with a warning and predicted 7,889,000 ms."""
    import logging

    path = tmp_path / "z.yaml"
    text = (
        "device: z\nkind: analytic\nmemory_bandwidth_bytes_per_s: 2.0\nmac_pj_at_8bit: 1\n"
        "dram_pj_per_byte: 1\nsram_pj_per_byte: 1\nsram_bytes: 10\nbits: 8\n"
        "macs_per_cycle: 256\nclock_hz: 1000\nlayer_overhead_ms: 5\n"
    )
    path.write_text(text)
    with pytest.raises(NasConfigError) as info:
        load_cost_model(str(path))
    assert str(info.value).startswith(
        f"{path}:3: memory_bandwidth_bytes_per_s: 2 is below any real device (at least 1e+06): "
        "written in GB/s or MB/s? the key is in bytes per second"
    )
    path.write_text(text.replace("bytes_per_s: 2.0", "bytes_per_s: 2e9"))
    with pytest.raises(NasConfigError, match=r"z\.yaml:10: clock_hz: 1000 is below any real"):
        load_cost_model(str(path))
    path.write_text(
        text.replace("bytes_per_s: 2.0", "bytes_per_s: 2e9")
        .replace("clock_hz: 1000", "clock_hz: 1e9")
        .replace("mac_pj_at_8bit: 1", "mac_pj_at_8bit: 0.0002")
    )
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        load_cost_model(str(path))
    said = [r.message for r in caplog.records]
    assert any(m.startswith(f"{path}:11: layer_overhead_ms: 5 ms") for m in said)
    assert any(m.startswith(f"{path}:7: sram_bytes: 10 bytes") and "in KB?" in m for m in said)
    assert any(m.startswith(f"{path}:4: mac_pj_at_8bit: 0.0002 pJ") for m in said)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        for device in ("edge-tpu", "ethos-u55", "eyeriss", "cpu", "gpu"):
            load_cost_model(device)
    assert not caplog.records  # the built-in profiles are all in range


def test_an_energy_constant_of_zero_is_refused_and_unlikely_ones_are_warned_of(tmp_path, caplog):
    """mac_pj_at_8bit: 0 (and the per-byte energies 0) loaded silently, and energy_mj@DEVICE
    was 0.0 for every trial of a search that minimized it; DRAM cheaper than SRAM and 64-bit
    arithmetic passed without a word."""
    import logging

    path = tmp_path / "e.yaml"
    text = (
        "device: e\nkind: analytic\nmemory_bandwidth_bytes_per_s: 2e9\nmac_pj_at_8bit: 0.2\n"
        "dram_pj_per_byte: 160\nsram_pj_per_byte: 1.25\nsram_bytes: 524288\nbits: 8\n"
        "peak_macs_per_s: 1e12\n"
    )
    for key, line in (("mac_pj_at_8bit: 0.2", 4), ("dram_pj_per_byte: 160", 5)):
        path.write_text(text.replace(key, key.split(":")[0] + ": 0"))
        with pytest.raises(NasConfigError) as info:
            load_cost_model(str(path))
        assert str(info.value).startswith(f"{path}:{line}: {key.split(':')[0]}: 0 makes that")
    path.write_text(
        text.replace("dram_pj_per_byte: 160", "dram_pj_per_byte: 1").replace("bits: 8", "bits: 64")
    )
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        load_cost_model(str(path))
    said = [r.message for r in caplog.records]
    assert any(
        m.startswith(f"{path}:5: dram_pj_per_byte 1 is below sram_pj_per_byte") for m in said
    )
    assert any(m.startswith(f"{path}:8: bits: 64 bits is wider than any") for m in said)


# -- against measured data --------------------------------------------------------------------


def _spearman(x, y) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y)[0])


def test_eyeriss_profile_ranks_nb201_like_hw_nas_bench():
    """Every 8th of the 15,625 NB201 cells: measured 0.996 (MACs alone: 0.586)."""
    import csv

    path = shared_file("help-latency/nasbench201_latency_ms.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))[::8]
    space = load_space("nasbench201")
    eyeriss, u55 = _npu("eyeriss"), _npu("ethos-u55")
    macs, pred_eyeriss, pred_u55 = [], [], []
    for row in rows:
        layers = space.layers(space.parse(row["arch_str"]))
        macs.append(sum(layer.macs for layer in layers))
        pred_eyeriss.append(eyeriss.estimate(layers).latency_ms)
        pred_u55.append(u55.estimate(layers).latency_ms)
    target = [float(row["eyeriss"]) for row in rows]
    assert len(rows) == 1954
    assert _spearman(macs, target) < 0.6  # what FLOPs alone get
    assert _spearman(pred_eyeriss, target) > 0.99
    assert _spearman(pred_u55, [float(row["fpga"]) for row in rows]) > 0.97  # measured 0.980


def test_eyeriss_profile_ranks_fbnet_like_hw_nas_bench():
    """Every 5th of HELP's 5,000 FBNet architectures: 0.954 (MACs: 0.960); 0.789 before a
    block's inner tensors counted as memory traffic."""
    import csv

    with shared_file("help-latency/fbnet_archs.csv").open() as f:
        archs = list(csv.DictReader(f))[::5]
    with shared_file("help-latency/fbnet_latency_ms.csv").open() as f:
        rows = list(csv.DictReader(f))[::5]
    space = load_space("fbnet")
    eyeriss = _npu("eyeriss")
    pred = [eyeriss.estimate(space.layers(space.parse(a["arch_str"]))).latency_ms for a in archs]
    assert len(rows) == 1000 and [a["index"] for a in archs] == [r["index"] for r in rows]
    assert _spearman(pred, [float(r["eyeriss"]) for r in rows]) > 0.94
    assert _spearman(pred, [float(r["raspi4"]) for r in rows]) > 0.92  # measured 0.933


def test_edge_tpu_profile_ranks_measured_coral_latency():
    """The 77 HW-NAS-Bench cells (indices 0..102) with a measured Edge TPU latency: 0.893."""
    import csv

    path = shared_file("hw-nas-bench-nb201-sample/nas201_cifar10_rows0-102.csv")
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if float(r["edgetpu_latency_ms"]) >= 0]
    space = load_space("nasbench201")
    tpu = _npu("edge-tpu")
    pred = [tpu.estimate(space.layers(space.parse(r["arch_str"]))).latency_ms for r in rows]
    assert len(rows) == 77
    assert _spearman(pred, [float(r["edgetpu_latency_ms"]) for r in rows]) > 0.87


def test_a_folder_profile_is_found_as_yml_and_says_when_it_replaces_a_built_in(tmp_path, caplog):
    import logging

    from nas.cost import builtin_table_dir, list_devices

    text = (builtin_table_dir() / "edge-tpu.yaml").read_text()
    (tmp_path / "my-npu.yml").write_text(text.replace("device: edge-tpu", "device: my-npu"))
    (tmp_path / "edge-tpu.yaml").write_text(text.replace("bits: 8", "bits: 16"))
    assert "my-npu" in list_devices((tmp_path,))
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        assert load_cost_model("my-npu", (tmp_path,)).name == "my-npu"
        assert not caplog.records
        assert load_cost_model("edge-tpu", (tmp_path,)).bits == 16
    (record,) = caplog.records
    assert (
        f"device 'edge-tpu' is {tmp_path / 'edge-tpu.yaml'}, which takes the place of the "
        "built-in 'edge-tpu'" in record.message
    )


def test_a_table_and_a_profile_of_one_name_in_one_folder_are_refused(tmp_path, capsys):
    """my-npu.json hid my-npu.yaml silently: an NPU's objective was costed by a CPU table."""
    import shutil

    from nas.cli import main
    from nas.cost import builtin_table_dir

    profile = tmp_path / "my-npu.yaml"
    profile.write_text(
        (builtin_table_dir() / "edge-tpu.yaml")
        .read_text()
        .replace("device: edge-tpu", "device: my-npu")
    )
    out = tmp_path / "my-npu.json"
    assert main(["profile", "--space", "mobilenet_small", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{profile} beside it names the device 'my-npu' too" in err and not out.exists()
    for suffix in (".json", ".csv"):  # a table copied in by hand
        shutil.copy(builtin_table_dir() / f"cpu-x86{suffix}", out.with_suffix(suffix))
    with pytest.raises(NasConfigError, match="is both my-npu.json and my-npu.yaml in"):
        load_cost_model("my-npu", (tmp_path,))


def test_profile_slips_name_the_fix(tmp_path):
    """A percentage for a fraction, a size in e-notation, a profile without 'kind'."""
    path = tmp_path / "z.yaml"
    base = (
        "device: z\nkind: analytic\nmemory_bandwidth_bytes_per_s: 2e9\nmac_pj_at_8bit: 1\n"
        "dram_pj_per_byte: 1\nsram_pj_per_byte: 1\nsram_bytes: 2e6\nbits: 8\n"
        "peak_macs_per_s: 1e12\n"
    )
    path.write_text(base)
    assert load_cost_model(str(path)).sram_bytes == 2_000_000  # type: ignore[attr-defined]
    path.write_text(base + "efficiency: 50\n")
    with pytest.raises(NasConfigError, match=r"efficiency: 50 is a percentage\? .*0\.5 for 50%"):
        load_cost_model(str(path))
    path.write_text(base.replace("kind: analytic\n", ""))
    with pytest.raises(NasConfigError, match=r"missing required key 'kind'.*add 'kind: analytic'"):
        load_cost_model(str(path))
