from __future__ import annotations

import dataclasses

import pytest

from nas import NasConfigError
from nas.cost import AnalyticDevice, CostModel, for_space, list_devices, load_cost_model
from nas.space import load_space


@pytest.mark.parametrize("device", list_devices())
def test_builtin_devices_follow_the_contract(device):
    model = load_cost_model(device)
    assert isinstance(model, CostModel) and model.device == device
    covered = list(getattr(model, "meta", {}).get("spaces", {})) or ["mobilenet_small"]
    space = load_space(covered[0])
    model = for_space(model, space)
    a, b = space.random(0), space.random(1)
    est = model.estimate(space.layers(a))
    assert est.latency_ms > 0 and est.energy_mj > 0
    assert est.kind in ("analytic", "measured", "imported", "calibrated")
    assert model.estimate(space.layers(a)) == est  # pure
    # more work costs more: the architecture with more MACs is not cheaper in energy
    ta, tb = space.describe(a), space.describe(b)
    ea, eb = est.energy_mj, model.estimate(space.layers(b)).energy_mj
    if ta.macs > 2 * tb.macs:
        assert ea > eb


def test_multiplier_energy_grows_with_the_square_of_the_bit_width():
    cpu = load_cost_model("cpu")
    assert isinstance(cpu, AnalyticDevice)
    int8 = dataclasses.replace(cpu, bits=8)
    fp16 = dataclasses.replace(cpu, bits=16)
    assert fp16.mac_pj == pytest.approx(4 * int8.mac_pj)
    assert cpu.mac_pj == pytest.approx(16 * int8.mac_pj)


def test_roofline_latency_by_hand():
    from nas.space import Layer, OpSpec

    dev = AnalyticDevice(
        "d",
        peak_macs_per_s=1e9,
        efficiency=1.0,
        memory_bandwidth_bytes_per_s=1e9,
        layer_overhead_ms=0.5,
        bits=8,
        mac_pj_at_8bit=1.0,
        dram_pj_per_byte=10.0,
        sram_pj_per_byte=1.0,
        sram_bytes=100,
    )
    layer = Layer("l", "conv", OpSpec("conv"), (1, 10, 10), (1, 10, 10), 1, params=0, macs=10**6)
    est = dev.estimate([layer])
    assert est.latency_ms == pytest.approx(1.0 + 0.5)  # 1e6 MAC / 1e9 MAC/s = 1 ms
    # 200 bytes moved (spills the 100-byte SRAM): 1e6 pJ compute + 2000 pJ DRAM
    assert est.energy_mj == pytest.approx((1e6 + 2000) * 1e-9)


def test_unknown_device_and_bad_file(tmp_path):
    with pytest.raises(NasConfigError, match="did you mean 'gpu'"):
        load_cost_model("gpv")
    bad = tmp_path / "x.yaml"
    bad.write_text("device: x\nkind: analytic\npeak_macs_per_s: -1\n")
    with pytest.raises(NasConfigError, match=r"yaml:3: peak_macs_per_s: expected a number > 0,"):
        load_cost_model(str(bad))
