"""Lookup tables: format, validation, profiling, prediction and its vectorized twin."""

from __future__ import annotations

import io
import json
import logging
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from nas import NasConfigError
from nas.cli import main
from nas.cost import (
    LookupTable,
    VectorizedCost,
    entry_from_layer,
    for_space,
    list_devices,
    load_cost_model,
)
from nas.cost._profile import ProfileConfig, profile_space
from nas.cost._validate import validate_table
from nas.space import SearchSpace, list_spaces, load_space
from tests.conftest import TINY_SPACE as TINY

FAST = ProfileConfig(threads=1, warmup=1, repeats=4, overhead_archs=2, spin_up_s=0.0)


@pytest.fixture
def tiny(tmp_path) -> SearchSpace:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return SearchSpace.from_yaml(path)


@pytest.fixture
def table(tiny, tmp_path) -> LookupTable:
    t = profile_space(tiny, FAST, device_name="tinydev")
    t.save(tmp_path / "tinydev.json")
    return LookupTable.load(tmp_path / "tinydev.json")


def test_profile_covers_every_layer_and_round_trips(tiny, table, tmp_path):
    assert {e[0] for e in table.entries} == {layer.signature for layer in tiny.possible_layers()}
    assert all(
        e.kind == "measured" and e.n == 4 and e.latency_ms_p50 > 0 for e in table.entries.values()
    )
    meta = json.loads((tmp_path / "tinydev.json").read_text())
    assert meta["schema_version"] == 1 and meta["units"] == {"latency": "ms", "energy": "mJ"}
    assert meta["protocol"]["statistic"] == "p50" and meta["protocol"]["repeats"] == 4
    assert meta["fingerprint"]["runtime"].startswith("torch")
    assert meta["spaces"] == {"tiny_cell": tiny.hash}
    fit = meta["in_model"]["tiny_cell"]
    assert set(fit) >= {"model_ms", "per_layer_ms", "per_mb_ms"}
    # a term is left out of the fit (held at 0) exactly when it is 0
    assert {t for t in ("model_ms", "per_layer_ms", "per_mb_ms") if fit[t] == 0} == set(
        fit["held_at_zero"]
    )
    assert "power x latency" in meta["energy"]["method"]
    header = (tmp_path / "tinydev.csv").read_text().splitlines()[0].split(",")
    assert "latency_ms_p50" in header and "energy_mj" in header
    arch = tiny.random(0)
    est = table.estimate(tiny.layers(arch))
    layers = tiny.layers(arch)
    fix = table.meta["in_model"]["tiny_cell"]
    mb = sum(x.activation_elems + x.params for x in layers) * 4 / 1e6
    overhead = fix["model_ms"] + fix["per_layer_ms"] * len(layers) + fix["per_mb_ms"] * mb
    expected = overhead + sum(table.entry(layer).latency_ms_p50 for layer in tiny.layers(arch))
    assert est.latency_ms == pytest.approx(expected) and est.kind == "measured"


def test_rerun_fills_only_missing_entries(tiny, table):
    calls = []
    dated = LookupTable(table.device, {**table.meta, "measured": "2000-01-01"}, table.entries)
    again = profile_space(
        tiny, FAST, device_name="tinydev", existing=dated, progress=lambda *a: calls.append(a)
    )
    assert calls == [] and dict(again.entries) == dict(table.entries)
    assert again.meta["measured"] == "2000-01-01"  # nothing new was measured
    # each space of a table keeps the command that fills it
    assert again.meta["profile_commands"] == {"tiny_cell": table.meta["profile_command"]}
    partial = LookupTable(table.device, table.meta, dict(list(table.entries.items())[:-2]))
    filled = profile_space(
        tiny, FAST, device_name="tinydev", existing=partial, progress=lambda *a: calls.append(a)
    )
    assert calls[-1][:2] == (2, 2) and set(filled.entries) == set(table.entries)


def test_a_table_holds_one_protocol(tiny, table, tmp_path):
    saved = []

    def checkpoint_then_stop(partial: LookupTable) -> None:  # Ctrl-C after the first chunk
        saved.append(partial)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_space(tiny, FAST, device_name="tinydev", checkpoint=checkpoint_then_stop)
    partial = saved[-1]
    assert partial.meta["protocol"]["threads"] == 1 and partial.meta["protocol"]["dtype"] == "fp32"
    assert "--threads 1 --batch 1 --dtype fp32" in partial.meta["profile_command"]
    for config, differs in (
        (replace(FAST, threads=2), r"measured with threads 1, not threads 2; .*--threads 1"),
        (replace(FAST, dtype="bf16"), r"measured with dtype fp32, not dtype bf16; .*--dtype fp32"),
        (replace(FAST, batch=4), r"measured with batch 1, not batch 4; .*another --out"),
        (
            replace(FAST, warmup=FAST.warmup + 1, repeats=FAST.repeats + 1),
            rf"measured with warmup {FAST.warmup}, repeats {FAST.repeats}, not warmup "
            rf"{FAST.warmup + 1}, repeats {FAST.repeats + 1}; one table holds one protocol: "
            rf"rerun with --warmup {FAST.warmup} --repeats {FAST.repeats} to fill it",
        ),
    ):
        with pytest.raises(NasConfigError, match=differs):
            profile_space(tiny, config, device_name="tinydev", existing=partial)
    with pytest.raises(NasConfigError, match="states no measurement protocol"):
        profile_space(tiny, FAST, device_name="tinydev", existing=LookupTable("d", {}, {}))
    # an imported or calibrated table takes no timings of this machine
    for kind in ("calibrated", "measured in source"):
        other = LookupTable("d", {**partial.meta, "value_kinds": {"latency": kind}}, {})
        with pytest.raises(NasConfigError, match=f"its latencies are {kind}, not measured here"):
            profile_space(tiny, FAST, device_name="tinydev", existing=other)


def test_a_copied_table_reads_its_own_rows_or_says_why_not(table, tmp_path):
    """A JSON copied under a new name kept the original's ``table`` key and read the
    original's rows, ignoring the edited copy beside it."""
    original = table.save(tmp_path / "orig.json")
    meta = original.read_text()
    (tmp_path / "copy.json").write_text(meta)
    with pytest.raises(NasConfigError) as info:
        LookupTable.load(tmp_path / "copy.json")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'copy.json'}: table: names 'orig.csv'")
    assert 'set "table": "copy.csv"' in message and "\n" not in message
    (tmp_path / "copy.json").write_text(meta.replace('"orig.csv"', '"copy.csv"'))
    with pytest.raises(NasConfigError, match=r"copy\.csv: table rows file not found; a table is "):
        LookupTable.load(tmp_path / "copy.json")
    rows = (tmp_path / "orig.csv").read_text().splitlines()
    (tmp_path / "copy.csv").write_text("\n".join(rows[:-1]) + "\n")  # one row less
    n = len(table.entries)
    with pytest.raises(
        NasConfigError,
        match=rf"copy\.json: entries: says {n} rows, but copy\.csv "
        rf'holds {n - 1}; a cut-short copy: .*set "entries": {n - 1}',
    ):
        LookupTable.load(tmp_path / "copy.json")
    (tmp_path / "copy.json").write_text(
        meta.replace('"orig.csv"', '"copy.csv"').replace(f'"entries": {n}', f'"entries": {n - 1}')
    )
    assert len(LookupTable.load(tmp_path / "copy.json").entries) == n - 1
    # statistics of no timings
    zero = [
        rows[0],
        *(
            r if i else re.sub(r",\d+,([^,]*,[^,]*,[^,]*)$", r",0,\1", r)
            for i, r in enumerate(rows[1:-1])
        ),
    ]
    (tmp_path / "copy.csv").write_text("\n".join(zero) + "\n")
    with pytest.raises(
        NasConfigError,
        match=r"copy\.csv:2: table entry .*: n must be an integer "
        r">= 1 \(how many timings its statistics summarize\), got 0",
    ):
        LookupTable.load(tmp_path / "copy.json")


def test_an_interrupted_profile_is_refused_until_finished(tiny, tmp_path):
    from nas.cost import for_space

    saved = []

    def checkpoint_then_stop(partial: LookupTable) -> None:
        saved.append(partial)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_space(tiny, FAST, device_name="tinydev", checkpoint=checkpoint_then_stop)
    saved[-1].save(tmp_path / "tinydev.json")
    partial = LookupTable.load(tmp_path / "tinydev.json")
    # says how its values were obtained already (nas devices listed it as 'table (measured)')
    assert partial.meta["value_kinds"] == {
        "latency": "measured",
        "energy": "estimated (power x latency)",
    }
    with pytest.raises(
        NasConfigError,
        match=r"profile of space 'tiny_cell' was interrupted.*"
        r"finish it by running again: nas profile",
    ):
        for_space(partial, tiny)
    finished = profile_space(tiny, FAST, device_name="tinydev", existing=partial)
    assert for_space(finished, tiny).estimate(tiny.layers(tiny.random(0))).latency_ms > 0


def test_missing_entry_names_key_nearest_and_fix(tiny, table):
    arch = tiny.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|")
    layers = tiny.layers(arch)
    victim = next(layer for layer in layers if layer.op.type == "rcb")
    partial = LookupTable(
        table.device,
        table.meta,
        {k: v for k, v in table.entries.items() if k[0] != victim.signature},
    )
    with pytest.raises(
        NasConfigError,
        match=r"has no entry rcb_k3-in:8x8x8.*nearest present: .*"
        r"fill it with: nas profile --space SPACE --device cpu .*--batch 1 --dtype fp32",
    ):
        partial.estimate(layers)
    # bound to its space, the hint names the file of the space being costed, whichever file
    # the table's profile command read (a changed copy with the same name needs its entries)
    for profiled in (tiny.source, tiny.source.replace("tiny.yaml", "tiny2.yaml")):
        command = f"nas profile --space '{profiled}' --device cpu --out tinydev.json"
        bound = LookupTable(
            table.device, {**table.meta, "profile_command": command}, partial.entries
        ).bind(tiny)
        with pytest.raises(
            NasConfigError, match=rf"nas profile --space {re.escape(tiny.source)} "
        ):
            bound.estimate(layers)
    # found by the coverage check: a layer the space can hold, not one of a model being costed
    with pytest.raises(NasConfigError) as info:
        for_space(partial, tiny)
    assert f"has no entry {victim.signature} [fp32, batch 1] (space 'tiny_cell' can hold it" in (
        str(info.value)
    )
    assert "a table must cover every layer of a space" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda m, c: (m | {"schema_version": 7}, c), r"schema_version: table schema 7"),
        (lambda m, c: (m | {"units": {"latency": "s", "energy": "mJ"}}, c), r"units: expected"),
        (
            lambda m, c: ({k: v for k, v in m.items() if k != "schema_version"}, c),
            r"missing key 'schema_version' .*\"schema_version\": 1\); add it",
        ),
        (
            lambda m, c: (m, c.replace("latency_ms_p50", "latency_p50", 1)),
            r"missing columns latency_ms_p50 \(renamed\? 'latency_p50' -> 'latency_ms_p50'\)",
        ),
        (
            lambda m, c: (m, c.replace("latency_ms_p50", "latency", 1)),
            r"missing columns latency_ms_p50 \(columns need units.*'latency' -> 'latency_ms_p50'",
        ),
        (lambda m, c: (m, _set_first(c, "latency_ms_p50", "-1")), r"tinydev\.csv:2: .*>= 0"),
        (lambda m, c: (m, _set_first(c, "energy_mj", "nan")), r"tinydev\.csv:2: .*energy_mj"),
        (lambda m, c: (m, _set_first(c, "kind", "guessed")), r"unknown kind 'guessed'"),
        (
            lambda m, c: (m | {"model_overhead_ms": -0.1}, c),
            r"tinydev\.json: model_overhead_ms: expected a finite number >= 0, got -0\.1",
        ),
        (
            lambda m, c: (m | {"in_model": {"tiny": {"model_ms": "abc"}}}, c),
            r"in_model\.tiny\.model_ms: expected a finite number, got 'abc'; fix it in the",
        ),
        (lambda m, c: (m | {"in_model": {"tiny": 3}}, c), r"in_model\.tiny: expected model_ms"),
    ],
)
def test_bad_tables_are_refused(table, tmp_path, edit, pattern):
    meta = json.loads((tmp_path / "tinydev.json").read_text())
    text = (tmp_path / "tinydev.csv").read_text()
    meta, text = edit(meta, text)
    (tmp_path / "tinydev.json").write_text(json.dumps(meta))
    (tmp_path / "tinydev.csv").write_text(text)
    with pytest.raises(NasConfigError, match=pattern):
        LookupTable.load(tmp_path / "tinydev.json")


def _set_first(csv_text: str, column: str, value: str) -> str:
    lines = csv_text.splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index(column)] = value
    return "\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n"


def test_table_for_another_space_is_refused(table, tmp_path):
    with pytest.raises(NasConfigError, match=r"covers the spaces tiny_cell, not 'nasbench201'"):
        table.check_space(load_space("nasbench201"))
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("name: tiny_cell", "name: other_cell"))
    with pytest.raises(NasConfigError, match=rf"nas profile --space {re.escape(str(other))} "):
        table.check_space(load_space(other))


def test_validate_table_reports_accuracy(tiny, table):
    report = validate_table(tiny, table, FAST, n=4, seed=1)
    assert report.n == 4 and len(report.rows) == 4
    for figures in (report.raw, report.drift_corrected):
        assert 0 <= figures["within_5pct"] <= figures["within_10pct"] <= 1
        assert figures["mape_pct"] >= 0 and math.isfinite(figures["rmspe_pct"])
    assert len(report.drift_ratios) == 4 and min(report.drift_ratios) > 0
    for _, _, measured, ratio in report.rows:  # each model is corrected by its own neighbours
        assert measured > 0 and ratio > 0
    again = report.repeatability  # the measurement against itself, round by round
    assert 0 <= again["within_5pct"] <= again["within_10pct"] <= 1 and again["mape_pct"] >= 0
    with pytest.raises(NasConfigError, match="overhead was fitted on"):
        validate_table(tiny, table, FAST, n=1, seed=20_240_601)


def test_repeatability_compares_each_round_with_the_others():
    from nas.cost._profile import _round_errors
    from nas.cost._validate import _repeatability

    errors = _round_errors([1.0, 1.0, 1.2])  # the third round against the first two, ...
    assert errors == pytest.approx([1 / 1.1 - 1, 1 / 1.1 - 1, 0.2])
    assert _round_errors([1.0]) == []  # one round: nothing to compare
    figures = _repeatability(np.array(errors))
    assert figures["within_10pct"] == pytest.approx(2 / 3) and figures["within_5pct"] == 0
    assert figures["mape_pct"] == pytest.approx(100 * (2 * (1 - 1 / 1.1) + 0.2) / 3)


def _profiled_tiny(tmp_path):
    """The tiny space's file, a table profiled from it (quickly), and the command's args."""
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY)
    out = tmp_path / "t.json"
    args = ["profile", "--space", str(space), "--out", str(out), "--threads", "1"]
    args += ["--warmup", "1", "--repeats", "3"]
    assert main(args) == 0
    _fit_well(out)
    return space, out, args


def _fit_well(out):
    """Mark the table's corrections as fitting well: a fit made poor by a busy machine (these
    timings are short) would be refit by a rerun, which is not what these tests look at."""
    doc = json.loads(out.read_text())
    for fix in doc["in_model"].values():
        fix["fit_rmse_ms"] = 0.0
        if "fit_rmspe" in fix:  # what poor_fit judges a table by since it was recorded
            fix["fit_rmspe"] = 0.0
    out.write_text(json.dumps(doc, indent=2) + "\n")


def _unlike_any_refit(out):
    """Give the table's corrections a model term no refit comes back with: a refit that
    changes nothing is not reported (nor kept), and on a busy machine two fits of these short
    timings can both hold every term at zero."""
    doc = json.loads(out.read_text())
    for fix in doc["in_model"].values():
        fix["model_ms"] = 1e3 * fix["reference_ms"]
    out.write_text(json.dumps(doc, indent=2) + "\n")


def test_reprofiling_another_version_of_a_space_keeps_the_previous_table(tmp_path, capsys):
    space, out, args = _profiled_tiny(tmp_path)
    assert main(args) == 0  # nothing missing, nothing refit: nothing to keep
    assert "already held" not in capsys.readouterr().err
    assert not (tmp_path / "t.prev.json").exists()
    first = out.read_bytes(), out.with_suffix(".csv").read_bytes()
    more_ops = TINY.replace("nor_conv_3x3: rcb_k3}", "nor_conv_3x3: rcb_k3, nor_conv_1x1: rcb_k1}")
    space.write_text(more_ops.replace("nor_conv_3x3]}", "nor_conv_3x3, nor_conv_1x1]}"))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "already held space 'tiny_cell'; with another version of space 'tiny_cell'" in err
    assert "kept as " + str(tmp_path / "t.prev.json") in err
    kept = tmp_path / "t.prev.json", tmp_path / "t.prev.csv"
    assert kept[1].read_bytes() == first[1]
    # the kept table loads its own rows, and still holds the space the earlier study costed
    previous = LookupTable.load(kept[0])
    assert previous.meta["spaces"] == json.loads(first[0])["spaces"]
    assert previous.meta["spaces"] != LookupTable.load(out).meta["spaces"]
    assert len(previous.entries) < len(LookupTable.load(out).entries)


def test_two_versions_of_a_space_profiled_in_turn_each_refit_and_keep_both_backups(
    tmp_path, capsys
):
    """A second version with the same layers measured nothing new, so the first version's
    correction stayed, now labelled as the second's (validate-table then failed to parse its
    reference model); profiling the first again replaced the only backup of its table."""
    space, out, args = _profiled_tiny(tmp_path)
    first = out.read_bytes()
    renamed = TINY.replace("nor_conv_3x3", "conv3")  # the same layers under another label
    space.write_text(renamed)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "with another version of space 'tiny_cell' its in-model correction was refit" in err
    fix = LookupTable.load(out).meta["in_model"]["tiny_cell"]
    assert fix["space_hash"] == load_space(str(space)).hash
    assert "conv3" in fix["reference_arch"] or "nor_conv_3x3" not in fix["reference_arch"]
    _fit_well(out)
    second = out.read_bytes()
    space.write_text(TINY)  # the first version again: refit, and the second's table kept too
    assert main(args) == 0
    assert "kept as " + str(tmp_path / "t.prev-2.json") in capsys.readouterr().err
    kept = [LookupTable.load(tmp_path / f) for f in ("t.prev.json", "t.prev-2.json")]
    assert [k.meta["spaces"] for k in kept] == [
        json.loads(first)["spaces"],
        json.loads(second)["spaces"],
    ]
    _fit_well(out)
    assert main(args) == 0  # the same version again: nothing refit, no third backup
    assert not (tmp_path / "t.prev-3.json").exists()
    doc = json.loads(out.read_text())  # a fit as poor as a busy machine's: a rerun refits it
    doc["in_model"]["tiny_cell"]["fit_rmse_ms"] = (
        100 * doc["in_model"]["tiny_cell"]["reference_ms"]
    )
    doc["in_model"]["tiny_cell"]["fit_rmspe"] = 100.0  # each model's own latency 100x over
    out.write_text(json.dumps(doc))
    _unlike_any_refit(out)
    capsys.readouterr()
    assert main(args) == 0
    assert (
        "with a poorly fitting correction before its in-model correction was refit"
        in capsys.readouterr().err
    )
    fix = LookupTable.load(out).meta["in_model"]["tiny_cell"]
    assert fix["fit_rmse_ms"] < 100 * fix["reference_ms"] and fix["fit_rmspe"] < 100
    assert main(["devices", "--table-dir", str(tmp_path)]) == 0
    assert "prev" not in capsys.readouterr().out


def test_fit_archs_sets_how_many_models_fit_the_correction_and_a_rerun_keeps_it(tmp_path, capsys):
    space, out, args = _profiled_tiny(tmp_path)
    assert LookupTable.load(out).meta["in_model"]["tiny_cell"]["fit_archs"] == 20
    assert "--fit-archs" not in json.loads(out.read_text())["profile_command"]
    _unlike_any_refit(out)
    capsys.readouterr()
    assert main([*args, "--fit-archs", "3"]) == 0  # another count: refit on 3 models
    assert "with --fit-archs 3 (fitted on 20 models before) its in-model correction was refit" in (
        capsys.readouterr().err
    )
    meta = LookupTable.load(out).meta
    assert meta["in_model"]["tiny_cell"]["fit_archs"] == 3
    assert "least squares over 3 architectures" in meta["in_model"]["tiny_cell"]["fit"]
    assert "--fit-archs 3 --out" in meta["profile_command"]
    _fit_well(out)
    fitted = json.loads(out.read_text())["in_model"]
    assert main(args) == 0  # the recorded command, or none: the table's count, nothing refit
    assert json.loads(out.read_text())["in_model"] == fitted
    capsys.readouterr()
    assert main([*args, "--fit-archs", "1"]) == 2
    assert "--fit-archs" in capsys.readouterr().err


def test_leave_one_out_error_is_that_of_fits_without_each_model():
    """The correction keeps the terms that best predict models left out of the fit; the error
    comes from one fit (PRESS), and equals refitting without each model in turn."""
    from nas.cost._profile import _leave_one_out_sse

    rng = np.random.default_rng(0)
    A = np.column_stack([np.ones(12), rng.uniform(5, 20, 12), rng.uniform(0, 3, 12)])
    y = A @ [0.1, 0.02, -0.05] + rng.normal(0, 0.01, 12)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    refits = []
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        c, *_ = np.linalg.lstsq(A[rest], y[rest], rcond=None)
        refits.append((y[i] - A[i] @ c) ** 2)
    assert _leave_one_out_sse(A, coef, y) == pytest.approx(sum(refits))
    # as many models as terms: each fixes a term, nothing is left to predict
    assert _leave_one_out_sse(A[:3], np.linalg.solve(A[:3], y[:3]), y[:3]) == math.inf
    # a term that only fits noise always lowers the error on the models fitted, but mostly
    # raises it on the models left out (200 draws: more than 2 in 3)
    fitted = left_out = 0
    for _ in range(200):
        flat = 0.5 + rng.normal(0, 0.01, 12)
        with_noise = np.column_stack([np.ones(12), rng.normal(0, 1, 12)])
        terms = [with_noise[:, :1], with_noise]
        fits = [np.linalg.lstsq(a, flat, rcond=None)[0] for a in terms]
        sse = [np.sum((a @ c - flat) ** 2) for a, c in zip(terms, fits, strict=True)]
        loo = [_leave_one_out_sse(a, c, flat) for a, c in zip(terms, fits, strict=True)]
        fitted += sse[1] < sse[0]
        left_out += loo[1] > loo[0]
    assert fitted == 200 and left_out > 200 * 2 / 3


def test_validate_table_times_each_model_in_six_rounds_unless_told(tmp_path, monkeypatch):
    """The table's protocol (3 rounds) sets the calls, not the rounds: the median of 6 rounds,
    each drift-corrected, outlasts a busy stretch that spoils 2 of 3."""
    space, out, _ = _profiled_tiny(tmp_path)
    seen = []

    class Timed(Exception):
        pass

    def validate(space, table, config, **kwargs):
        seen.append((config.rounds, config.repeats))
        raise Timed

    monkeypatch.setattr("nas.cost._validate.validate_table", validate)
    validate_args = ["validate-table", "--space", str(space), "--table", str(out), "--n", "2"]
    for extra, rounds in (([], 6), (["--rounds", "2"], 2)):
        with pytest.raises(Timed):
            main([*validate_args, *extra])
        assert seen[-1] == (rounds, 3)  # 3: the table's timed calls
    assert LookupTable.load(out).meta["protocol"]["rounds"] == 3


def test_cli_profile_validate_and_cost(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "t.json"
    args = ["--threads", "1", "--warmup", "1", "--repeats", "3"]
    assert main(["profile", "--space", str(tmp_path / "tiny.yaml"), "--out", str(out), *args]) == 0
    assert out.exists() and out.with_suffix(".csv").exists()
    # the recorded command reruns as it stands: the space's path, the table's, the timing
    command = json.loads(out.read_text())["profile_command"]
    assert command == (
        f"nas profile --space {tmp_path / 'tiny.yaml'} --device cpu --threads 1 --batch 1 "
        f"--dtype fp32 --runtime torch --warmup 1 --repeats 3 --out {out}"
    )
    _fit_well(out)  # (no poor-fit warning below because a busy machine timed it badly)
    capsys.readouterr()
    assert (
        main(
            [
                "validate-table",
                "--space",
                str(tmp_path / "tiny.yaml"),
                "--table",
                str(out),
                "--n",
                "3",
                *args,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    figures = json.loads(captured.out.strip().splitlines()[-1])
    assert {"within_5pct", "within_10pct", "mape_pct", "rmspe_pct", "kendall_tau"} <= set(figures)
    assert "within_10pct" in figures["repeatability"]
    assert "the measurement itself, drift-corrected" in captured.out
    assert "warning" not in captured.err
    validate = ["validate-table", "--space", str(tmp_path / "tiny.yaml"), "--table", str(out)]
    assert main([*validate, "--n", "2", "--threads", "2", "--warmup", "1", "--repeats", "3"]) == 0
    assert "measured with 1 thread, this run uses 2" in capsys.readouterr().err
    archs = tmp_path / "archs.txt"
    archs.write_text("|none~0|+|skip_connect~0|nor_conv_3x3~1|\n# comment\n\n")
    assert (
        main(
            [
                "cost",
                "--space",
                str(tmp_path / "tiny.yaml"),
                "--table",
                str(out),
                "--archs",
                str(archs),
                "--out",
                str(tmp_path / "c.csv"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "arch,latency_ms,energy_mj" and len(lines) == 2
    cost = ["cost", "--space", str(tmp_path / "tiny.yaml"), "--table", str(out), "--archs", "-"]
    monkeypatch.setattr("sys.stdin", io.StringIO(archs.read_text()))  # nas sample | nas cost
    assert main(cost) == 0
    assert capsys.readouterr().out.splitlines() == lines
    monkeypatch.setattr("sys.stdin", io.StringIO("|none~0|\n"))
    assert main(cost) == 2
    assert capsys.readouterr().err.startswith("nas: error: <stdin>:1: ")
    # a table in a folder of one's own, by its name: --table-dir, as an experiment's table_dirs
    by_name = [*cost[:4], "t", "--archs", str(archs)]
    assert main(by_name) == 2
    assert (
        "or found by naming its folder (an experiment's table_dirs, a command's --table-dir)"
        in (capsys.readouterr().err)
    )
    assert main([*by_name, "--table-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    # a table measured with another torch: validate-table says the figures compare the two
    meta = json.loads(out.read_text())
    meta["fingerprint"]["runtime"] = "torch 2.0.0"
    out.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main([*validate[:4], "t", "--table-dir", str(tmp_path), "--n", "2", *args]) == 0
    assert (
        f"nas: warning: t was measured with torch 2.0.0, this machine has torch "
        f"{torch.__version__}: the figures compare" in capsys.readouterr().err
    )
    assert main([*by_name, "--table-dir", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.endswith(
        "--table-dir " + str(tmp_path / "nope") + ": no such folder\n"
    )


def test_validation_times_and_fingerprints_models_as_the_table_was_measured():
    """nas validate-table compared an int8 table's fingerprint with an fp32 torch one's, which
    holds no ONNX Runtime version: the README's warning of another runtime never came."""
    from nas.cost import load_cost_model
    from nas.cost._profile import fingerprint
    from nas.cost._validate import timed_as_table

    int8 = load_cost_model("cpu-x86-int8")
    timed = timed_as_table(ProfileConfig(), int8)
    assert (timed.dtype, timed.engine) == ("int8", "onnxruntime")
    assert "onnxruntime" in fingerprint(timed) and "onnxruntime" in int8.meta["fingerprint"]
    assert timed_as_table(ProfileConfig(), load_cost_model("cpu-x86")).engine == "torch"


def test_runtime_follows_dtype_and_refuses_what_it_cannot_profile():
    assert ProfileConfig(dtype="int8").engine == "onnxruntime"
    assert ProfileConfig().engine == "torch"
    assert ProfileConfig(runtime="onnxruntime").dtype == "fp32"
    for kwargs, message in (
        (
            {"dtype": "int8", "runtime": "torch"},
            "--runtime torch does not profile int8 .*use --runtime onnxruntime",
        ),
        (
            {"dtype": "bf16", "runtime": "onnxruntime"},
            "does not profile bf16 .*use --runtime torch",
        ),
        ({"runtime": "onnx"}, "unknown runtime 'onnx'.*onnxruntime"),
        ({"dtype": "int4"}, "unknown dtype 'int4'"),
        ({"dtype": "int8", "device": "cuda"}, "ONNX Runtime tables are measured on the CPU"),
    ):
        with pytest.raises(NasConfigError, match=message):
            ProfileConfig(**kwargs)


def test_int8_table_is_measured_in_onnxruntime_and_validated_there(tiny):
    """Per-layer INT8 entries: each layer quantized as the compress stage quantizes models and
    timed in ONNX Runtime; validation times whole INT8 models in ONNX Runtime too."""
    int8 = replace(FAST, dtype="int8")
    table = profile_space(tiny, int8, device_name="tinydev-int8")
    assert {e[0] for e in table.entries} == {x.signature for x in tiny.possible_layers()}
    assert {(k[1], e.kind) for k, e in table.entries.items()} == {("int8", "measured")}
    assert table.dtype == "int8" and table.meta["protocol"]["runtime"] == "onnxruntime"
    assert "PT2E x86 quantizer" in table.meta["protocol"]["mode"]
    assert table.meta["fingerprint"]["onnxruntime"].startswith("onnxruntime ")
    assert "--dtype int8 --runtime onnxruntime" in table.meta["profile_command"]
    fix = table.meta["in_model"]["tiny_cell"]
    assert math.isfinite(fix["model_ms"]) and fix["reference_ms"] > 0
    # a graph runtime's correction also scales the sum of the layers (boundary work a layer
    # timed alone pays in proportion to its size); the search's vectorized cost agrees
    assert "layer_scale x sum of layers" in fix["fit"]
    arch = tiny.random(0)
    layers = tiny.layers(arch)
    layers_ms = sum(table.entry(x).latency_ms_p50 for x in layers)
    expected = (
        layers_ms * (1 + fix["layer_scale"])
        + fix["model_ms"]
        + fix["per_layer_ms"] * len(layers)
        + fix["per_mb_ms"] * table.moved_mb(layers)
    )
    assert table.estimate(layers).latency_ms == pytest.approx(expected)
    fast = VectorizedCost(tiny, table)
    assert fast.latency_ms(fast.encode([arch]))[0] == pytest.approx(expected)
    # one table holds one protocol: an fp32 torch run does not fill an int8 table
    with pytest.raises(
        NasConfigError,
        match=r"dtype int8, runtime onnxruntime, not dtype fp32, "
        r"runtime torch; .*--dtype int8 --runtime onnxruntime",
    ):
        profile_space(tiny, FAST, device_name="tinydev-int8", existing=table)
    # validation runs at the table's dtype and runtime, whatever the config says: whole models
    # in ONNX Runtime (a few us here), not in torch eager (many module calls, ~10x slower)
    report = validate_table(tiny, table, FAST, n=3, seed=1)
    fp32 = validate_table(tiny, profile_space(tiny, FAST, device_name="t"), FAST, n=3, seed=1)
    assert report.n == 3 and [r[0] for r in report.rows] == [r[0] for r in fp32.rows]
    assert max(r[2] for r in report.rows) < 0.5 * min(r[2] for r in fp32.rows)


@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_vectorized_cost_equals_per_architecture_cost(space_name, device):
    space = load_space(space_name)
    model = load_cost_model(device)
    fast = VectorizedCost(space, model)
    archs = [space.random(i) for i in range(40)]
    codes = fast.encode(archs)
    slow = [model.estimate(space.layers(a)) for a in archs]
    np.testing.assert_allclose(fast.latency_ms(codes), [s.latency_ms for s in slow], rtol=1e-9)
    np.testing.assert_allclose(fast.energy_mj(codes), [s.energy_mj for s in slow], rtol=1e-9)
    for which in ("latency_ms", "energy_mj"):  # the range every architecture lies in
        low, high = fast.bounds(which)
        values = [getattr(s, which) for s in slow]
        assert low <= min(values) * (1 + 1e-9) and max(values) <= high * (1 + 1e-9)


def test_vectorized_table(tiny, table):
    fast = VectorizedCost(tiny, table)
    archs = list(tiny.enumerate())
    slow = [table.estimate(tiny.layers(a)).latency_ms for a in archs]
    np.testing.assert_allclose(fast.latency_ms(fast.encode(archs)), slow, rtol=1e-9)


def test_vectorized_cost_binds_a_table_of_several_spaces_to_its_own():
    """VectorizedCost(space, load_cost_model("cpu-x86")) asked to bind a table it had been
    given the space for."""
    space = load_space("mobilenet_small")
    fast = VectorizedCost(space, load_cost_model("cpu-x86"))
    bound = load_cost_model("cpu-x86").bind(space)
    archs = [space.random(i) for i in range(5)]
    slow = [bound.estimate(space.layers(a)).latency_ms for a in archs]
    np.testing.assert_allclose(fast.latency_ms(fast.encode(archs)), slow, rtol=1e-9)


def test_entry_statistics():
    layer = load_space("nasbench201").layers(load_space("nasbench201").random(0))[0]
    e = entry_from_layer(layer, latency_ms=[1.0, 3.0, 2.0, 10.0], energy_mj=0.5, kind="measured")
    assert e.latency_ms_p50 == 2.5 and e.latency_ms_mean == 4.0 and e.n == 4


def test_devices_include_tables():
    assert "cpu" in list_devices()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("edge-tpu", "--table edge-tpu: an analytic profile, not a lookup table"),
        ("cpu-x68", "unknown device 'cpu-x68'.*did you mean 'cpu-x86'"),
        ("nope.json", r"nope\.json: no such table"),
    ],
)
def test_cli_validate_table_names_a_bad_table(tmp_path, capsys, table, message):
    """--table takes a device name like nas cost does; what is not a table is one line, exit 2."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    args = ["validate-table", "--space", str(tmp_path / "tiny.yaml"), "--table", table]
    assert main([*args, "--n", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_latency_only_table_reports_unknown_energy_not_zero(tiny, table, tmp_path, capsys):
    from nas.search import load_experiment, prepare

    kinds = {"latency": "calibrated", "energy": "absent (latency-only measurements)"}
    lat_only = table.with_entries([], value_kinds=kinds)
    lat_only.save(tmp_path / "latonly.json")
    loaded = LookupTable.load(tmp_path / "latonly.json")
    arch = tiny.random(0)
    assert not loaded.has_energy and table.has_energy
    est = loaded.estimate(tiny.layers(arch))
    assert math.isnan(est.energy_mj) and est.latency_ms > 0
    archs = tmp_path / "archs.txt"
    archs.write_text(tiny.format(arch) + "\n")
    argv = [
        "cost",
        "--space",
        str(tmp_path / "tiny.yaml"),
        "--table",
        str(tmp_path / "latonly.json"),
    ]
    assert main([*argv, "--archs", str(archs)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split(",")
    assert row[2] == ""  # an empty cell, not 0.0
    # an energy objective on such a table is refused before the search starts
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: e\nspace: tiny.yaml\nobjectives: [params, energy_mj@{tmp_path / 'latonly.json'}]\n"
    )
    with pytest.raises(NasConfigError, match=r"holds latency only .*use latency_ms@"):
        prepare(load_experiment(exp))
    # named by a table folder, the same error points at the line naming the metric
    (tmp_path / "tables").mkdir()
    lat_only.save(tmp_path / "tables" / f"{lat_only.device}.json")
    exp.write_text(
        "name: e\nspace: tiny.yaml\ntable_dirs: [tables]\n"
        f"objectives: [params, latency_ms@{lat_only.device}]\n"
        f"constraints:\n  energy_mj@{lat_only.device}: '<= 5'\n"
    )
    with pytest.raises(NasConfigError, match=r"exp.yaml:6: constraints.energy_mj@\w+: table"):
        load_experiment(exp)


def test_repeats_are_all_timed_when_rounds_do_not_divide_them():
    from nas._timing import split_repeats

    assert split_repeats(100, 3) == [34, 33, 33] and split_repeats(2, 3) == [1, 1, 1]
    assert all(sum(split_repeats(n, r)) == max(n, r) for n in range(1, 40) for r in range(1, 7))


def test_profile_charges_the_power_figure_it_is_given(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "p.json"
    base = ["profile", "--space", str(tmp_path / "tiny.yaml"), "--out", str(out)]
    timing = ["--threads", "1", "--warmup", "1", "--repeats", "3"]
    assert main([*base, *timing, "--power-w", "4.5", "--power-source", "board datasheet"]) == 0
    meta = json.loads(out.read_text())
    assert meta["energy"]["power_w"] == 4.5 and meta["energy"]["power_source"] == "board datasheet"
    assert "--power-w 4.5 --out" in meta["profile_command"]
    if meta["energy"]["method"].startswith("power x latency"):  # no readable RAPL counter
        for e in LookupTable.load(out).entries.values():
            assert e.energy_mj == pytest.approx(4.5 * e.latency_ms_p50, rel=1e-5)
    capsys.readouterr()
    assert main([*base, *timing]) == 2  # one table, one power figure
    assert (
        "measured with power-w 4.5, not power-w 10.0; one table holds one protocol: rerun with "
        "--power-w 4.5" in capsys.readouterr().err
    )
    assert main([*base, *timing, "--power-source", "guess"]) == 2
    assert "--power-source: describes a --power-w figure; give --power-w too" in (
        capsys.readouterr().err
    )
    assert main([*base, "--power-w", "0"]) == 2
    assert "expected a number > 0, got '0'" in capsys.readouterr().err


def test_cli_refuses_a_runtime_that_cannot_time_the_dtype(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY)
    base = ["profile", "--space", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "t")]
    assert main([*base, "--dtype", "int8", "--runtime", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --runtime onnxruntime" in err
    assert main([*base, "--runtime", "tensorrt"]) == 2
    assert "unknown runtime 'tensorrt'" in capsys.readouterr().err
    assert not list(tmp_path.glob("t.*"))


def test_validation_times_again_a_batch_caught_in_a_pause(tiny, table, monkeypatch, caplog):
    """One pause of the process made a drift ratio of 516 and a 363% 'repeatability'; a batch
    whose drift ratio is beyond 4x is timed again."""
    import nas.cost._profile as profile

    real, calls = profile.measure_interleaved, []
    reference_ms = table.meta["in_model"][tiny.name]["reference_ms"]

    def paused_once(runs, config):
        timings = real(runs, config)
        calls.append(len(runs))
        # the reference runs 1000x slower the first time: as if the process had stopped; then
        # at its speed in the table, so that a busy test machine cannot make a pause of its own
        ref = reference_ms * (1000 if len(calls) == 1 else 1)
        return [[ref] * len(t) if i % 2 == 0 else t for i, t in enumerate(timings)]

    monkeypatch.setattr(profile, "measure_interleaved", paused_once)
    report = validate_table(tiny, table, FAST, n=3, seed=1)
    assert len(calls) == 2 and "timing these 3 models again" in caplog.text
    assert max(report.drift_ratios) < 4


def test_a_table_for_another_version_of_the_space_is_used_with_a_warning(
    tiny, table, tmp_path, caplog
):
    from nas.cost import for_space

    # (the profile's own fit, of timings this short, is as good as the machine is quiet: these
    # checks set it)
    fix = {**table.meta["in_model"]["tiny_cell"], "fit_rmspe": 0.05}

    def fitted(**changes: float | None) -> LookupTable:
        change = {**fix, **changes}
        meta = {**table.meta, "in_model": {"tiny_cell": change}}
        return LookupTable(table.device, meta, table.entries, path=table.path)

    good = fitted()
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        for_space(good, tiny)
    assert not caplog.records
    # a profile whose layers did not add up to its models (a busy machine) is said at each use,
    # judged by each model's own latency
    busy = fitted(fit_rmspe=1.0)
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        for_space(busy, tiny)
    (record,) = caplog.records
    assert "fit the end-to-end timings poorly (RMSE" in record.message
    assert "100% of a model's own latency" in record.message
    caplog.clear()  # 27% off: validated at 34% MAPE, was used silently
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        for_space(fitted(fit_rmspe=0.27), tiny)
    assert len(caplog.records) == 1
    caplog.clear()
    # a table fitted before fit_rmspe was recorded: its RMSE against the reference model's
    for rmse, warned in ((fix["reference_ms"], 1), (fix["reference_ms"] / 4, 1), (0.0, 0)):
        with caplog.at_level(logging.WARNING, logger="nas.cost"):
            for_space(fitted(fit_rmspe=None, fit_rmse_ms=rmse), tiny)
        assert len(caplog.records) == warned, rmse
        caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        for_space(busy, tiny)
    (record,) = caplog.records
    assert f"nas validate-table --space {tiny.source} --table {table.path}" in record.message
    caplog.clear()
    edited = tmp_path / "edited" / "tiny.yaml"
    edited.parent.mkdir()
    edited.write_text(TINY.replace("num_classes: 10", "num_classes: 10\ndescription: edited"))
    other = SearchSpace.from_yaml(edited)
    assert other.name == tiny.name and other.hash != tiny.hash
    with caplog.at_level(logging.WARNING, logger="nas.cost"):
        bound = for_space(good, other)
    (record,) = caplog.records
    assert f"made for another version of space 'tiny_cell' (hash {tiny.hash}" in record.message
    assert f"nas profile --space {edited}" in record.message
    # still usable: every layer has an entry
    assert bound.estimate(other.layers(other.random(0))).latency_ms > 0


def test_a_correction_that_makes_a_model_cost_less_than_nothing_is_the_tables_fault(
    tiny, table, tmp_path, capsys
):
    meta = json.loads((tmp_path / "tinydev.json").read_text())
    meta["in_model"]["tiny_cell"]["per_mb_ms"] = -5000.0  # far below any fitted rebate
    (tmp_path / "tinydev.json").write_text(json.dumps(meta))
    archs = tmp_path / "archs.txt"
    archs.write_text(tiny.format(tiny.random(0)) + "\n")
    argv = [
        "cost",
        "--space",
        str(tmp_path / "tiny.yaml"),
        "--table",
        str(tmp_path / "tinydev.json"),
    ]
    assert main([*argv, "--archs", str(archs)]) == 2
    err = capsys.readouterr().err
    assert (
        f"table 'tinydev' ({tmp_path / 'tinydev.json'}): in_model.tiny_cell: its correction ("
        in err
    )
    assert "per_mb_ms -5000" in err
    assert "correct it in the table's JSON, or refit it by profiling" in err


def test_hand_edited_rows_are_named_where_they_went_wrong(tiny, table, tmp_path, capsys):
    from nas.cost import for_space

    rows_file = tmp_path / "tinydev.csv"
    rows = rows_file.read_text().splitlines()
    header = rows[0].split(",")
    first = dict(zip(header, rows[1].split(","), strict=True))

    def with_first(**changes: str) -> str:
        edited = {**first, **changes}
        return "\n".join([rows[0], ",".join(edited[c] for c in header), *rows[2:]]) + "\n"

    # a spreadsheet's byte-order mark is not part of the first column's name
    rows_file.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    assert len(LookupTable.load(tmp_path / "tinydev.json").entries) == len(table.entries)
    # a shape column that no longer matches the signature (the key looked up)
    rows_file.write_text(with_first(out_c=str(int(first["out_c"]) + 1)))
    with pytest.raises(
        NasConfigError,
        match=r"tinydev\.csv:2: table entry .*: its op, shape and "
        r"stride columns say .*; make the two agree",
    ):
        LookupTable.load(tmp_path / "tinydev.json")
    # a row whose dtype was changed: the missing entry says where it went
    rows_file.write_text(with_first(dtype="fp16"))
    edited = LookupTable.load(tmp_path / "tinydev.json")
    with pytest.raises(
        NasConfigError,
        match=rf"has {re.escape(first['signature'])} only at "
        r"\[fp16, batch 1\], not at \[fp32, batch 1\] .*edited by hand\?",
    ):
        for_space(edited, tiny)


def test_a_space_adapted_to_other_data_gets_its_own_table_entry_from_the_printed_command(
    tmp_path, capsys
):
    """A run adapts its space to the data's shape; the table's fill command profiled the space
    as its file declares it, which measured nothing new, so the run failed again."""
    import shlex

    space = tmp_path / "tiny12.yaml"  # declared at 12x12; digits are 8x8
    space.write_text(TINY.replace("height: 8, width: 8", "height: 12, width: 12"))
    table = tmp_path / "tables" / "mycpu.json"
    table.parent.mkdir()
    timing = ["--threads", "1", "--warmup", "1", "--repeats", "3"]
    assert main(["profile", "--space", str(space), "--out", str(table), *timing]) == 0
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: x\nspace: {space}\ndata: {{dataset: digits, limit: 200}}\n"
        "train: {epochs: 1}\nobjectives: [error, latency_ms@mycpu]\ntable_dirs: [tables]\n"
        "search: {n_trials: 2}\n"
    )
    capsys.readouterr()
    assert main(["search", str(exp), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "covers the spaces tiny_cell, not 'tiny_cell_1x8x8_c10'" in err
    command = err.split("add it to the table with: ")[1].strip()
    assert f"--space {space}@1x8x8:10 " in command and command.endswith(f"--out {table}")
    assert main(shlex.split(command)[1:]) == 0  # the command as printed, without "nas"
    assert set(LookupTable.load(table).meta["in_model"]) == {"tiny_cell", "tiny_cell_1x8x8_c10"}
    assert main(["search", str(exp), "--out", str(tmp_path / "run"), "-q"]) == 0
    # the declared version keeps its own correction
    bound = LookupTable.load(table).bind(load_space(str(space)))
    assert bound._in_model() == LookupTable.load(table).meta["in_model"]["tiny_cell"]


def test_space_at_another_input_shape_by_name():
    space = load_space("mobilenet_small@1x28x28:47")
    assert (space.name, space.input_shape, space.num_classes) == (
        "mobilenet_small_1x28x28_c47",
        (1, 28, 28),
        47,
    )
    assert space.source == "mobilenet_small@1x28x28:47"
    assert load_space(space.source).hash == space.hash
    assert load_space("mobilenet_small@1x8x8").name == "mobilenet_small"  # its own shape
    with pytest.raises(NasConfigError, match=r"expected SPACE@CxHxW or SPACE@CxHxW:CLASSES"):
        load_space("mobilenet_small@28x28")


def test_validate_table_times_models_with_the_tables_protocol_by_default(
    tmp_path, capsys, monkeypatch
):
    """It used torch's thread count (2) on a 1-thread table, warned, and reported 14% MAPE."""
    from nas.cost import _validate

    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "t.json"
    timing = ["--threads", "1", "--warmup", "1", "--repeats", "3"]
    assert (
        main(["profile", "--space", str(tmp_path / "tiny.yaml"), "--out", str(out), *timing]) == 0
    )
    _fit_well(out)  # (no poor-fit warning below because a busy machine timed it badly)
    seen = []

    def capture(space, table, config, **kwargs):
        seen.append(config)
        raise NasConfigError("stop here")

    monkeypatch.setattr(_validate, "validate_table", capture)
    capsys.readouterr()
    assert (
        main(["validate-table", "--space", str(tmp_path / "tiny.yaml"), "--table", str(out)]) == 2
    )
    assert (seen[0].threads, seen[0].warmup, seen[0].repeats) == (1, 1, 3)
    assert "warning" not in capsys.readouterr().err  # no thread-count mismatch to warn of
    args = ["--threads", "2", "--repeats", "5"]
    space = str(tmp_path / "tiny.yaml")
    assert main(["validate-table", "--space", space, "--table", str(out), *args]) == 2
    assert (seen[1].threads, seen[1].warmup, seen[1].repeats) == (2, 1, 5)


def test_vectorized_cost_takes_a_device_name_and_refuses_codes_it_would_misread():
    """A negative code was wrapped round by numpy into another architecture's cost; unencoded
    architectures, float codes and a wrong column count gave numpy's IndexError."""
    space = load_space("mobilenet_small")
    fast = VectorizedCost(space, "cpu-x86")  # a device name, as load_cost_model takes
    arch = space.random(0)
    codes = fast.encode([arch])
    assert fast.latency_ms(codes)[0] == pytest.approx(
        for_space(load_cost_model("cpu-x86"), space).estimate(space.layers(arch)).latency_ms
    )
    wrapped = codes.copy()
    wrapped[0, 0] = -1
    name = fast.names[0]
    for bad, message in (
        (wrapped, rf"^codes\[0, 0\]: -1 is not an index of parameter '{re.escape(name)}'"),
        ([arch], r"^codes: architectures, not codes; pass encode\(archs\)"),
        (codes.astype(float), r"^codes: expected an \(N, \d+\) integer array"),
        (codes[:, :-1], r"^codes: expected an \(N, \d+\) integer array"),
    ):
        with pytest.raises(NasConfigError, match=message):
            fast.latency_ms(bad)
    with pytest.raises(NasConfigError, match=r"unknown quantity 'latency'.*latency_ms"):
        fast.bounds("latency")
    with pytest.raises(NasConfigError, match=r"^model: expected a cost model"):
        VectorizedCost(space, None)


def test_for_space_and_load_cost_model_take_names_and_refuse_other_things():
    """load_cost_model(None) and for_space(model, "mobilenet_small") ended in AttributeErrors;
    for_space(None, space) returned None."""
    bound = for_space("cpu-x86", "mobilenet_small")
    assert isinstance(bound, LookupTable) and bound.space == "mobilenet_small"
    for call, message in (
        (lambda: load_cost_model(None), r"^device: expected a device name"),
        (lambda: for_space(None, "nasbench201"), r"^model: expected a cost model"),
        (lambda: for_space("cpu", 3), r"^space: expected a search space"),
    ):
        with pytest.raises(NasConfigError, match=message):
            call()
