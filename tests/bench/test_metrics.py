"""Scores against the true front: exact hypervolume, its gap, IGD and the fraction found."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from nas.bench import Scorer, fraction_found, hypervolume_normalized, igd


def _brute_force_hv(points: np.ndarray, ref: float) -> float:
    """Inclusion-exclusion over every subset: the volume of a union of boxes, exactly."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_is_exact(k, seed):
    rng = np.random.default_rng(seed)
    points = rng.random((8, k))
    points[3] = points[2]  # a duplicate adds nothing
    expected = _brute_force_hv(points, 1.1)
    assert hypervolume_normalized(points) == pytest.approx(expected, rel=1e-12)
    assert hypervolume_normalized(points) == pytest.approx(
        compute_hypervolume(points, np.full(k, 1.1), assume_pareto=False), rel=1e-12
    )


def test_igd_and_fraction_found_by_hand():
    front = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert igd(front, front) == 0.0
    assert igd(np.array([[0.0, 0.0]]), front) == pytest.approx(1.0)
    assert igd(np.empty((0, 2)), front) == float("inf")
    assert fraction_found([5, 1, 2], np.array([1, 2, 3, 4])) == 0.5


@pytest.mark.parametrize("which", ["problem2", "problem3"])
def test_true_front_scores_perfectly(which, request):
    p = request.getfixturevalue(which)
    scorer = Scorer.for_problem(p)
    assert scorer.normalization.reference == (1.1,) * len(p.names)
    normalized_all = scorer.normalized(np.arange(p.n_archs))
    assert normalized_all.min(axis=0) == pytest.approx(0.0)
    assert normalized_all.max(axis=0) == pytest.approx(1.0)  # the WHOLE space's range
    assert scorer.hv_gap(scorer.front) == pytest.approx(0.0, abs=1e-12)
    assert scorer.igd(p.true_front_idx) == 0.0
    assert scorer.fraction_found(p.true_front_idx) == 1.0
    # adding dominated rows changes nothing
    rows = np.concatenate([p.true_front_idx, np.arange(50)])
    assert scorer.hv_gap_history(rows)[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("which", ["problem2", "problem3"])
def test_gap_history_matches_prefix_hypervolumes(which, request):
    p = request.getfixturevalue(which)
    scorer = Scorer.for_problem(p)
    rows = np.random.default_rng(1).choice(p.n_archs, 60, replace=False)
    history = scorer.hv_gap_history(rows)
    assert history.shape == (60,)
    assert np.all(np.diff(history) <= 1e-12) and np.all(history > 0) and np.all(history <= 1)
    for n in (1, 7, 30, 60):
        assert history[n - 1] == pytest.approx(scorer.hv_gap(scorer.normalized(rows[:n])))
