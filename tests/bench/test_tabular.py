"""Loading tabular problems: shapes, the joins of the three tables, the true front, errors."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest

from nas import NasConfigError
from nas.bench import default_data_dir, list_devices, load_problem, lookup
from nas.search import pareto_mask
from tests.conftest import SHARED_DATA

# An arbitrary architecture, spot-checked against the raw CSV rows.
SPOT = 1234


def _csv_row(path, index):
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i == index:
                return row
    raise AssertionError(index)


def test_default_data_dir_is_beside_the_repo():
    assert default_data_dir() == SHARED_DATA


def test_shapes_and_fields(problem2):
    p = problem2
    assert p.n_archs == 15_625 == len(p.arch_strs) == p.space.size()
    assert p.values.shape == (15_625, 2) and p.values.dtype == np.float64
    assert p.names == ("error", "latency_ms@pixel3")
    assert p.directions == ("minimize", "minimize")
    assert p.expensive == (0,) and p.free == (1,)
    assert len(np.unique(p.iso_class)) == 6_466
    # a representative is its own class's representative
    assert np.array_equal(p.iso_class[p.iso_class], p.iso_class)
    with pytest.raises(ValueError, match="read-only"):
        p.values[0, 0] = 1.0


def test_values_match_the_csvs(problem2, problem3, data_dir):
    acc = _csv_row(data_dir / "nas-bench-201-accuracy/nb201_test_accuracy.csv", SPOT)
    lat = _csv_row(data_dir / "help-latency/nasbench201_latency_ms.csv", SPOT)
    assert problem2.arch_strs[SPOT] == acc["arch_str"] == lat["arch_str"]
    assert problem2.values[SPOT, 0] == pytest.approx(100 - float(acc["cifar10_test_acc"]))
    assert problem2.values[SPOT, 1] == pytest.approx(float(lat["pixel3"]))
    assert problem3.values[SPOT, 0] == pytest.approx(float(acc["cifar100_test_acc"]))
    assert problem3.values[SPOT, 1] == pytest.approx(float(lat["raspi4"]))
    with gzip.open(data_dir / "hw-nas-bench-360/dataset.csv.gz", "rt") as f:
        pi5 = next(
            r
            for r in csv.DictReader(f)
            if r["arch_idx"] == str(SPOT)
            and r["device"] == "pi5"
            and r["framework"] == "onnx"
            and r["task"] == "cifar100"
        )
    assert problem3.values[SPOT, 2] == pytest.approx(float(pi5["energy_mj"]))
    assert problem3.iso_class[SPOT] == int(pi5["rep_arch_idx"])
    assert problem3.directions == ("maximize", "minimize", "minimize")


def test_true_front_is_pareto_mask(problem3):
    # pareto_mask over all 15,625 rows is slow; check it on the front plus a random sample.
    p = problem3
    rng = np.random.default_rng(0)
    sample = np.union1d(p.true_front_idx, rng.choice(p.n_archs, 1500, replace=False))
    mask = pareto_mask(p.values[sample], p.directions)
    assert np.array_equal(sample[mask], p.true_front_idx)
    assert np.array_equal(p.true_front, p.values[p.true_front_idx])


def test_lookup_by_string_and_architecture(problem2):
    p = problem2
    arch = p.space.parse(p.arch_strs[SPOT])
    got = lookup(p, [arch, p.arch_strs[7], "  " + p.arch_strs[8] + " "])
    assert np.array_equal(got, p.values[[SPOT, 7, 8]])
    assert p.row(p.space.format(arch)) == SPOT
    with pytest.raises(NasConfigError, match="has 1 group; expected 3 groups joined by"):
        p.row("|none~0|")


def test_devices_include_help_columns_and_pi5(data_dir):
    devices = list_devices(data_dir)
    assert {"pixel3", "raspi4", "eyeriss", "fpga", "gold_6226", "titan_rtx_1", "pi5"} <= set(
        devices
    )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"objectives": ["error", "latency_ms@pixl3"]}, r"unknown device 'pixl3'.*'pixel3'"),
        ({"dataset": "cifar-10"}, r"unknown dataset 'cifar-10'.*did you mean 'cifar10'"),
        ({"benchmark": "nasbench101"}, r"unknown benchmark .*nasbench201"),
        ({"objectives": ["eror"]}, r"unknown objective 'eror'.*did you mean 'error'"),
        ({"objectives": ["energy_mj@pixel3"]}, r"only tabulated for pi5"),
        ({"objectives": ["latency_ms"]}, r"needs a device"),
        ({"objectives": ["error", "error"]}, r"listed twice"),
        ({"objectives": ["accuracy", "error"]}, r"the same objective; keep one"),
        ({"dataset": "CIFAR10"}, r"did you mean 'cifar10'"),
        ({"objectives": []}, r"at least one objective"),
    ],
)
def test_bad_input_names_what_exists(data_dir, kwargs, pattern):
    with pytest.raises(NasConfigError, match=pattern):
        load_problem(**{"data_dir": data_dir, **kwargs})


def test_missing_data_folder_says_how_to_fix(tmp_path):
    with pytest.raises(NasConfigError, match="--data"):
        load_problem(data_dir=tmp_path / "nothing")
    with pytest.raises(NasConfigError, match="benchmark data not found"):
        load_problem(data_dir=tmp_path)
