"""nas calibrate: recovering per-op costs from end-to-end measurements."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import stats

from nas import NasConfigError
from nas.cli import main
from nas.cost import LookupTable, VectorizedCost, charged_layers, load_cost_model
from nas.cost._calibrate import calibrate
from nas.space import load_space
from tests.conftest import shared_file


def test_recovers_a_device_exactly_from_10_noise_free_measurements():
    space = load_space("nasbench201")
    prior = load_cost_model("cpu")
    truth = {
        "nor_conv_3x3": 3.0,
        "nor_conv_1x1": 1.5,
        "avg_pool_3x3": 0.2,
        "skip_connect": 1.0,
        "none": 0.5,
    }
    base = prior.estimate([]).latency_ms

    def device(arch):  # a device whose op costs differ from the prior by fixed factors
        total = 1.0
        for layer in space.layers(arch):
            factor = truth.get(layer.label, 2.0) if layer.name != "stem" else 2.0
            total += factor * (prior.estimate([layer]).latency_ms - base)
        return total

    rng = np.random.default_rng(0)
    train = [space.random(rng) for _ in range(10)]
    cal = calibrate(space, [(a, device(a)) for a in train], prior, device="synthetic")
    # every cell has 6 edges, so one constant per edge trades with the intercept: the
    # multipliers are not unique, but the device's costs are recovered (below)
    assert cal.loo_mape_pct < 1e-6
    test = [space.random(rng) for _ in range(200)]
    fast = VectorizedCost(space, cal.table)
    predicted = fast.latency_ms(fast.encode(test))
    np.testing.assert_allclose(predicted, [device(a) for a in test], rtol=1e-3)
    assert all(e.kind == "calibrated" for e in cal.table.entries.values())


def test_the_table_saved_is_the_model_fitted_when_the_best_constant_is_negative():
    """Timings that fall faster than the prior's costs (a negative best intercept) once made a
    table whose constant was dropped after the fit: it predicted its own measurements 33% off
    while reporting a leave-one-out error of 5.6%. The fit is now made with the constant a
    table can hold (>= 0), and the error it reports is that table's."""
    space = load_space("mobilenet_small")
    prior = load_cost_model("cpu")
    fast_prior = VectorizedCost(space, prior)
    rng = np.random.default_rng(1)
    train = [space.random(rng) for _ in range(14)]
    p = fast_prior.latency_ms(fast_prior.encode(train))
    y = (1.3 * p - 0.6 * p.min()) * rng.normal(1.0, 0.03, len(train))
    cal = calibrate(space, list(zip(train, y, strict=True)), prior, device="faster")
    assert cal.constant_ms == cal.table.meta["model_overhead_ms"] >= 0
    fast = VectorizedCost(space, cal.table)
    in_sample = 100 * np.mean(np.abs(fast.latency_ms(fast.encode(train)) - y) / y)
    assert in_sample <= cal.loo_mape_pct < 10


def test_layers_the_prior_calls_free_get_a_fitted_cost_per_layer():
    """A prior that charges nothing for identity and zero edges (a compiled runtime's view)
    cannot scale them by a multiplier; the device's per-layer cost of them is fitted instead."""
    space = load_space("nasbench201")
    prior = dataclasses.replace(load_cost_model("cpu"), free_identity=True)
    base = prior.estimate([]).latency_ms
    per_layer = {"skip_connect": 0.02, "none": 0.005}

    def device(arch):  # eager PyTorch: skip and zero edges still cost a kernel launch
        total = 0.5
        for layer in space.layers(arch):
            cost = prior.estimate([layer]).latency_ms - base
            total += per_layer.get(layer.label, 0.0) if cost == 0 else 1.5 * cost
        return total

    rng = np.random.default_rng(1)
    train = [space.random(rng) for _ in range(10)]
    cal = calibrate(space, [(a, device(a)) for a in train], prior, device="synthetic")
    # every cell has 6 edges, so a cost common to all edges trades with the intercept: the
    # per-layer costs are recovered up to that shift, and the predictions exactly
    fitted = cal.table.meta["calibration"]["per_layer_ms"]
    assert fitted["skip_connect"] - fitted["none"] == pytest.approx(0.015, rel=1e-3)
    test = [space.random(rng) for _ in range(200)]
    fast = VectorizedCost(space, cal.table)
    np.testing.assert_allclose(
        fast.latency_ms(fast.encode(test)), [device(a) for a in test], rtol=1e-3
    )
    skips = [e for e in cal.table.entries.values() if e.op == "skip"]
    assert skips and all(e.latency_ms_p50 == fitted["skip_connect"] > 0.015 for e in skips)


@pytest.mark.parametrize(
    ("device", "bound", "unread"),
    [
        ("titan_rtx_1", 0.96, "run"),
        ("fpga", 0.99, "run"),
        ("silver_4114", 0.95, "run"),
        ("pixel3", 0.95, "skipped"),  # HW-NAS-Bench's TFLite timings; 0.888 with "run"
    ],
)
def test_help_devices_from_10_reference_architectures(device, bound, unread):
    """Regression guard on real measurements (HELP, NeurIPS 2021; 0.932 mean with 10)."""
    import pandas as pd

    lat = pd.read_csv(shared_file("help-latency/nasbench201_latency_ms.csv"))
    ref = json.loads(shared_file("help-latency/hardware_embedding_index.json").read_text())
    space = load_space("nasbench201")
    archs = [space.parse(s) for s in lat["arch_str"]]
    y = lat[device].to_numpy()
    cal = calibrate(
        space,
        [(archs[i], y[i]) for i in ref["nasbench201"]],
        load_cost_model("cpu"),
        device=device,
        unread=unread,
    )
    fast = VectorizedCost(space, cal.table)
    rho = stats.spearmanr(fast.latency_ms(fast.encode(archs)), y).statistic
    assert rho >= bound


def test_cli_calibrate_and_bad_measurement_files(tmp_path, capsys):
    space = load_space("nasbench201")
    good = tmp_path / "m.csv"
    lines = ["arch,latency_ms"] + [
        f"{space.format(space.random(i))},{1 + i * 0.1}" for i in range(6)
    ]
    good.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cal.json"
    assert (
        main(
            ["calibrate", "--space", "nasbench201", "--measurements", str(good), "--out", str(out)]
        )
        == 0
    )
    assert out.exists() and out.with_suffix(".csv").exists()
    spaced = tmp_path / "spaced.csv"  # 'arch, latency_ms', as a spreadsheet may write it
    spaced.write_text("\n".join(line.replace(",", ", ") for line in lines) + "\n")
    args = ["calibrate", "--space", "nasbench201", "--measurements", str(spaced)]
    assert main([*args, "--out", str(tmp_path / "cal2.json")]) == 0
    assert LookupTable.load(tmp_path / "cal2.json").entries == LookupTable.load(out).entries
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,latency\nx,1\n")
    assert (
        main(
            ["calibrate", "--space", "nasbench201", "--measurements", str(bad), "--out", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.csv:1: expected the columns arch,latency_ms" in err
    assert "found arch,latency\n" in err
    bad.write_text("\n".join([*lines[:3], "|nope~0|,2.0"]) + "\n")
    assert (
        main(
            ["calibrate", "--space", "nasbench201", "--measurements", str(bad), "--out", str(out)]
        )
        == 2
    )
    assert "bad.csv:4:" in capsys.readouterr().err
    bad.write_text("\n".join([*lines[:3], f"{space.format(space.random(9))},-1"]) + "\n")
    assert (
        main(
            ["calibrate", "--space", "nasbench201", "--measurements", str(bad), "--out", str(out)]
        )
        == 2
    )
    assert "latency_ms must be > 0" in capsys.readouterr().err
    for last, message in (
        (lines[2].replace(",1.1", ",99"), "bad.csv:4: arch: measured already on line 3"),
        (f"{space.format(space.random(9))},inf", "bad.csv:4: latency_ms must be > 0 and finite"),
        (f"{space.format(space.random(9))},1e308", "bad.csv:4: latency_ms: 1e+308 ms is over an"),
    ):
        bad.write_text("\n".join([*lines[:3], last]) + "\n")
        args = ["calibrate", "--space", "nasbench201", "--measurements", str(bad)]
        assert main([*args, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(NasConfigError, match="at least 3"):
        calibrate(space, [(space.random(0), 1.0)], load_cost_model("cpu"), device="x")
    bad.write_text("arch,latency_ms\n")
    args = ["calibrate", "--space", "nasbench201", "--measurements", str(bad)]
    assert main([*args, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: {bad}: 0 measurements; nas calibrate needs at least 3 (the documented "
        "figures use 10 or more)\n"
    )
    # latencies that no per-layer table explains: said, not only printed as a MAPE
    noise = tmp_path / "noise.csv"
    rows = [f"{space.format(space.random(20 + i))},{(1, 40)[i % 2]}" for i in range(10)]
    noise.write_text("\n".join(["arch,latency_ms", *rows]) + "\n")
    args = ["calibrate", "--space", "nasbench201", "--measurements", str(noise)]
    assert main([*args, "--out", str(tmp_path / "phone.json")]) == 0
    assert "(leave-one-out): its latencies are rough" in capsys.readouterr().err
    # columns it does not read, and a name that would stand in for a built-in device
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join(["arch,latency_ms,phone"] + [f"{x},pixel" for x in lines[1:]]))
    shadow = tmp_path / "cpu.json"
    args = ["calibrate", "--space", "nasbench201", "--measurements", str(extra)]
    assert main([*args, "--out", str(shadow)]) == 0
    err = capsys.readouterr().err
    assert "extra.csv:1: ignoring the columns phone (nas calibrate reads arch and" in err
    assert f"{shadow} is named like the built-in device 'cpu'; in a folder that an" in err
    assert main([*args, "--out", str(out)]) == 0
    assert "named like the built-in" not in capsys.readouterr().err
    # a table is <out>.json + <out>.csv: neither may overwrite the measurements or other files
    before = extra.read_text()
    assert main([*args, "--out", str(tmp_path / "extra.json")]) == 2
    assert f"the table's rows go to {extra}, which is the input {extra}; choose" in (
        capsys.readouterr().err
    )
    (tmp_path / "notes.csv").write_text("when,what\n")
    assert main([*args, "--out", str(tmp_path / "notes.json")]) == 2
    assert "notes.csv exists and is not a table's rows (it starts 'when,what')" in (
        capsys.readouterr().err
    )
    assert extra.read_text() == before and not (tmp_path / "notes.json").exists()


def test_graph_pruned_drops_only_layers_nothing_reads():
    space = load_space("nasbench201")
    # node 2 feeds nothing (2->3 is none): its input edges go; node 1 is zero-fed but read: stays
    arch = space.parse(
        "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|"
    )
    pruned = space.graph_pruned(arch)
    assert space.format(pruned) == (
        "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|"
    )
    every_edge_read = space.parse(
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|"
    )
    assert space.graph_pruned(every_edge_read) is every_edge_read
    x = torch.randn(2, *space.input_shape)
    model, fast = space.build(arch, seed=0).eval(), space.build(pruned, seed=0).eval()
    fast.load_state_dict(model.state_dict(), strict=False)  # the pruned model has fewer weights
    with torch.inference_mode():
        assert torch.allclose(model(x), fast(x), atol=1e-5)


def test_calibration_for_a_runtime_that_skips_unread_layers():
    """A graph runtime's device: only the skipped-unread fit recovers it, in every code path."""
    space = load_space("nasbench201")
    prior = load_cost_model("cpu")
    base = prior.estimate([]).latency_ms

    def device(arch):  # twice the prior's cost of the layers a graph runtime keeps
        return 1.0 + 2 * (prior.estimate(space.layers(space.graph_pruned(arch))).latency_ms - base)

    rng = np.random.default_rng(3)
    train = [space.random(rng) for _ in range(10)]
    test = [space.random(rng) for _ in range(300)]
    truth = np.array([device(a) for a in test])
    measured = [(a, device(a)) for a in train]
    skipped = calibrate(space, measured, prior, device="graph", unread="skipped")
    assert skipped.table.skips_unread and skipped.table.meta["unread_layers"] == "skipped"
    fast = VectorizedCost(space, skipped.table)
    np.testing.assert_allclose(fast.latency_ms(fast.encode(test)), truth, rtol=1e-3)
    scalar = [
        skipped.table.estimate(charged_layers(space, skipped.table, a)).latency_ms for a in test
    ]
    np.testing.assert_allclose(scalar, truth, rtol=1e-3)
    run = calibrate(space, measured, prior, device="eager")
    assert not run.table.skips_unread
    fast_run = VectorizedCost(space, run.table)
    error = np.abs(fast_run.latency_ms(fast_run.encode(test)) / truth - 1)
    assert error.max() > 0.05  # charging unread layers misses this device
    with pytest.raises(NasConfigError, match="unknown unread-layers mode 'skip'"):
        calibrate(space, measured, prior, device="x", unread="skip")


def test_table_with_an_unknown_unread_layers_value_is_refused(tmp_path):
    space = load_space("nasbench201")
    measured = [(space.random(i), 1.0 + i) for i in range(5)]
    table = calibrate(space, measured, load_cost_model("cpu"), device="cal").table
    path = table.save(tmp_path / "cal.json")
    meta = json.loads(path.read_text())
    meta["unread_layers"] = "skiped"
    path.write_text(json.dumps(meta))
    with pytest.raises(
        NasConfigError, match="unread_layers must be 'run' or 'skipped', got 'skiped'"
    ):
        LookupTable.load(path)


def test_cli_calibrate_for_a_graph_runtime(tmp_path, capsys):
    space = load_space("nasbench201")
    measurements = tmp_path / "m.csv"
    rows = [f"{space.format(space.random(i))},{1 + i * 0.1}" for i in range(6)]
    measurements.write_text("\n".join(["arch,latency_ms", *rows]) + "\n")
    out = tmp_path / "tflite.json"
    argv = ["calibrate", "--space", "nasbench201", "--measurements", str(measurements)]
    assert main([*argv, "--out", str(out), "--unread-layers", "skipped"]) == 0
    assert "unread layers skipped" in capsys.readouterr().out
    assert LookupTable.load(out).skips_unread


def test_cli_names_a_measurement_the_others_disagree_with(tmp_path, capsys):
    space = load_space("mobilenet_small")
    fast = VectorizedCost(space, load_cost_model("cpu"))
    rng = np.random.default_rng(2)
    archs = [space.random(rng) for _ in range(12)]
    y = 1.5 * fast.latency_ms(fast.encode(archs)) * rng.normal(1.0, 0.03, len(archs))
    rows = [f"{space.format(a)},{v:.6g}" for a, v in zip(archs, y, strict=True)]
    argv = ["calibrate", "--space", "mobilenet_small", "--out", str(tmp_path / "t.json")]
    m = tmp_path / "m.csv"
    m.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    assert main([*argv, "--measurements", str(m)]) == 0
    assert "what the other measurements predict" not in capsys.readouterr().err
    rows[4] = f"{space.format(archs[4])},{1000 * y[4]:.6g}"  # a slip: seconds typed as ms
    m.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    assert main([*argv, "--measurements", str(m), "--force"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "other measurements" in line]
    assert len(err) == 1 and err[0].startswith(f"nas: warning: {m}:6: latency_ms ")
    assert "x what the other measurements predict" in err[0]  # 1000x too slow
    rows[4] = f"{space.format(archs[4])},{y[4] / 1000:.6g}"  # ms typed as seconds: too fast
    m.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    assert main([*argv, "--measurements", str(m), "--force"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "other measurements" in line]
    # it said '22.1x what the others predict' of a row 1/22 of it
    assert len(err) == 1 and " is 1/" in err[0] and " of what the other measurements" in err[0]


def _help_measurements(space, n, keep=lambda arch: True):
    """``n`` HELP architectures (those ``keep`` accepts) with their titan_rtx latencies."""
    import pandas as pd

    lat = pd.read_csv(shared_file("help-latency/nasbench201_latency_ms.csv"))
    pairs = zip(lat["arch_str"], lat["titan_rtx_1"], strict=True)
    rows = ((space.parse(s), float(v)) for s, v in pairs)
    return [next(r for r in rows if keep(r[0])) for _ in range(n)]


def test_latencies_in_another_unit_are_warned_of(caplog):
    """Microseconds in the latency_ms column made a table 1000x too slow, silently."""
    space = load_space("nasbench201")
    measured = _help_measurements(space, 10)
    prior = load_cost_model("cpu")
    with caplog.at_level("WARNING", logger="nas.cost._calibrate"):
        calibrate(space, measured, prior, device="d", source="m.csv")
    assert not caplog.records  # milliseconds: no word
    with caplog.at_level("WARNING", logger="nas.cost._calibrate"):
        calibrate(space, [(a, v * 1000) for a, v in measured], prior, device="d", source="m.csv")
    (record,) = caplog.records
    assert record.getMessage().startswith("m.csv: the measured latencies are ")
    assert "if they are in microseconds, convert them to ms" in record.getMessage()


def test_an_op_no_measured_architecture_uses_is_named(caplog):
    """Its cost is the prior's times the common scale, not fitted: the user should know."""
    space = load_space("nasbench201")
    without_pool = lambda arch: "avg_pool_3x3" not in space.format(arch)  # noqa: E731
    measured = _help_measurements(space, 10, without_pool)
    with caplog.at_level("WARNING", logger="nas.cost._calibrate"):
        cal = calibrate(space, measured, load_cost_model("cpu"), device="d", source="m.csv")
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "m.csv: op 'avg_pool_3x3' is in none of the 10 measured architectures: its cost is "
        "the prior's cost x "
    )
    assert cal.table.meta["calibration"]["unmeasured"] == ["avg_pool_3x3"]
