"""The cost-only fbnet benchmark: the DP front is exact, and methods and the CLI run on it."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from nas import NasConfigError
from nas.bench import Scorer, get_method, load_problem, pareto_sum
from nas.cli import main
from nas.cost import VectorizedCost
from nas.cost._import import import_table
from nas.search import pareto_mask
from tests.conftest import SHARED_DATA, shared_file

LUT = "hw-nas-bench-fbnet-lut"
OBJECTIVES = ["latency_ms@raspi4", "macs"]


@pytest.fixture(scope="module")
def fbnet():
    shared_file(f"{LUT}/fbnet_block_lut.csv")
    return load_problem("fbnet", None, OBJECTIVES, SHARED_DATA)


def _brute_front(constant, layers):
    """Distinct Pareto points of every combination, sorted: the answer pareto_sum must give."""
    combos = list(itertools.product(*(range(len(t)) for t in layers)))
    values = np.array(
        [constant + sum(t[c] for t, c in zip(layers, combo, strict=True)) for combo in combos]
    )
    front = np.unique(values[pareto_mask(values, ["minimize"] * values.shape[1])], axis=0)
    return front, combos, values


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_pareto_sum_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    # small integers: many ties and duplicate sums, the hard case for pruning
    layers = [rng.integers(0, 6, size=(4, k)).astype(float) for _ in range(5)]
    constant = rng.integers(0, 3, size=k).astype(float)
    points, choices = pareto_sum(constant, layers)
    front, _, _ = _brute_front(constant, layers)
    assert np.array_equal(np.unique(points, axis=0), front)
    assert len(points) == len(front)  # duplicates pruned
    for point, row in zip(points, choices, strict=True):
        assert np.array_equal(
            constant + sum(t[c] for t, c in zip(layers, row, strict=True)), point
        )


def test_pareto_sum_on_the_first_four_fbnet_layers(fbnet):
    sign = np.array([1.0, -1.0])  # macs is maximized
    tables = [
        sign * np.column_stack([o.slots[s][1] for o in fbnet._objectives]) for s in range(1, 5)
    ]
    assert all(o.slots[s][0] is not None for o in fbnet._objectives for s in range(1, 5))
    points, _ = pareto_sum(np.zeros(2), tables)
    front, _, _ = _brute_front(np.zeros(2), tables)
    assert 1 < len(points) and np.allclose(np.unique(points, axis=0), front, rtol=1e-12, atol=0)


def test_front_points_are_their_architectures_priced_normally(fbnet):
    space = fbnet.space
    archs = [space.parse(a) for a in fbnet.true_front_archs]
    cost = VectorizedCost(space, import_table("hwnasbench-fbnet", shared_file(LUT), "raspi4"))
    assert np.array_equal(cost.latency_ms(cost.encode(archs)), fbnet.true_front[:, 0])  # exact
    rng = np.random.default_rng(0)
    for i in rng.choice(len(archs), 10, replace=False):
        layers = space.layers(archs[i])
        assert sum(x.macs for x in layers) == fbnet.true_front[i, 1]
        assert cost.model.estimate(layers).latency_ms == pytest.approx(
            fbnet.true_front[i, 0], rel=1e-12
        )
    assert np.array_equal(fbnet.evaluate(fbnet.true_front_archs), fbnet.true_front)


def test_front_and_bounds_hold_against_random_architectures(fbnet):
    assert len(fbnet.true_front) > 100 and fbnet.directions == ("minimize", "maximize")
    archs = [fbnet.space.random(i) for i in range(300)]
    values = fbnet.evaluate(archs)
    lo, hi = fbnet.bounds
    assert np.all(values >= lo) and np.all(values <= hi)
    # no random architecture dominates a front point
    lat, macs = values[:, 0], values[:, 1]
    for f_lat, f_macs in fbnet.true_front[::50]:
        assert not np.any((lat <= f_lat) & (macs >= f_macs) & ((lat < f_lat) | (macs > f_macs)))
    scorer = Scorer.for_problem(fbnet)
    assert scorer.hv_gap(scorer.front) == pytest.approx(0.0, abs=1e-12)
    assert scorer.fraction_found(list(fbnet.true_front_archs)) == 1.0
    assert scorer.igd(list(fbnet.true_front_archs)) == 0.0
    keys = [fbnet.key(a) for a in archs[:20]]
    assert 0 < scorer.hv_gap_history(keys)[-1] < 1


def test_latencies_alone_have_one_optimum_all_skip():
    shared_file(f"{LUT}/fbnet_block_lut.csv")
    p = load_problem("fbnet", None, ["latency_ms@raspi4", "energy_mj@eyeriss"], SHARED_DATA)
    assert p.true_front_archs == (" ".join(["skip"] * 22),)
    assert np.array_equal(p.true_front[0], p.bounds[0])


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "optuna-nsga2", "nas"])
def test_methods_evaluate_distinct_architectures(fbnet, name):
    method = get_method(name)
    keys = method(fbnet, 12, 3)
    assert len(set(keys)) == 12 and all(isinstance(k, str) for k in keys)
    assert method(fbnet, 12, 3) == keys
    if name == "random":
        assert method(fbnet, 5, 3) == keys[:5]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"dataset": "cifar10"}, "takes no dataset"),
        ({"objectives": ["energy_mj@raspi4"]}, "energy only for edgegpu"),
        ({"objectives": ["latency_ms@pixl3"]}, "did you mean 'pixel3'"),
        ({"objectives": ["error", "macs"]}, "cost-only"),
    ],
)
def test_bad_input(kwargs, pattern):
    with pytest.raises(NasConfigError, match=pattern):
        load_problem(**{"benchmark": "fbnet", "data_dir": SHARED_DATA, **kwargs})


def test_cli_fbnet(fbnet, tmp_path, capsys):
    out = tmp_path / "fb"
    argv = ["bench", "fbnet", "--data", str(SHARED_DATA), "--objectives", ",".join(OBJECTIVES)]
    argv += ["--budget", "26", "--seeds", "2", "--sampler", "random", "--baselines", "", "-q"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(fbnet.true_front)} points on the true front (exact" in printed
    assert "cost lookups" in printed
    evals = pd.read_csv(out / "evaluations.csv")
    assert list(evals.columns) == ["method", "seed", "eval", "arch", *OBJECTIVES, "hv_gap"]
    assert len(evals) == 52 and (out / "gap.png").is_file() and (out / "summary.csv").is_file()
    assert main([*argv, "--out", str(tmp_path / "x"), "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not apply to fbnet" in err
    assert not (tmp_path / "x").exists()
