"""Contracts of nas.search._pareto: Pareto masks, normalization and exact hypervolume."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from nas._errors import NasConfigError
from nas.search._pareto import (
    Normalization,
    hypervolume,
    hypervolume_history,
    normalization_for,
    pareto_mask,
    to_minimization,
)

MIN2 = ["minimize", "minimize"]
MIN3 = ["minimize", "minimize", "minimize"]
UNIT2 = Normalization((0.0, 0.0), (1.0, 1.0), (1.0, 1.0))
UNIT3 = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


def _brute_front(values_min: np.ndarray) -> np.ndarray:
    """Reference dominance check by explicit double loop."""
    n = values_min.shape[0]
    out = np.ones(n, dtype=bool)
    for i, j in itertools.product(range(n), range(n)):
        a, b = values_min[j], values_min[i]
        if np.all(a <= b) and np.any(a < b):
            out[i] = False
    return out


def _grid_hv(points: np.ndarray, ref: np.ndarray, cells: int = 40) -> float:
    """Hypervolume by counting cell centres of a grid (exact for points on grid lines)."""
    k = points.shape[1]
    axes = [(np.arange(cells) + 0.5) / cells * ref[d] for d in range(k)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, k)
    covered = np.zeros(centres.shape[0], dtype=bool)
    for p in points:
        covered |= np.all(centres >= p, axis=1)
    return covered.mean() * float(np.prod(ref))


# --- to_minimization --------------------------------------------------------------------------


def test_to_minimization_negates_maximize_columns_and_copies():
    values = np.array([[1.0, 0.9, 3.0], [2.0, 0.8, -1.0]])
    out = to_minimization(values, ["minimize", "maximize", "maximize"])
    np.testing.assert_array_equal(out, [[1.0, -0.9, -3.0], [2.0, -0.8, 1.0]])
    out[0, 0] = 99.0
    assert values[0, 0] == 1.0


def test_to_minimization_rejects_unknown_direction_with_suggestion():
    with pytest.raises(NasConfigError, match=r"directions\[1\].*did you mean 'maximize'"):
        to_minimization(np.zeros((2, 2)), ["minimize", "maximise"])


def test_to_minimization_rejects_wrong_direction_count_and_shape():
    with pytest.raises(NasConfigError, match="2 directions for 3 objective columns"):
        to_minimization(np.zeros((2, 3)), MIN2)
    with pytest.raises(NasConfigError, match=r"2-D .* shape \(4,\)"):
        to_minimization(np.zeros(4), MIN2)


# --- pareto_mask ------------------------------------------------------------------------------


def test_pareto_mask_minimize_two_objectives():
    values = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0], [2.0, 5.0]])
    assert pareto_mask(values, MIN2).tolist() == [True, True, True, False, False]


def test_pareto_mask_respects_maximize():
    # (error, accuracy): row 1 has lower error but also lower accuracy -> both on the front.
    values = np.array([[0.2, 0.9], [0.1, 0.8], [0.3, 0.85], [0.1, 0.95]])
    mask = pareto_mask(values, ["minimize", "maximize"])
    assert mask.tolist() == [False, False, False, True]
    mask = pareto_mask(values[:3], ["minimize", "maximize"])
    assert mask.tolist() == [True, True, False]
    # Flipping the second direction makes low accuracy good.
    mask = pareto_mask(values[:3], ["minimize", "minimize"])
    assert mask.tolist() == [False, True, False]


def test_pareto_mask_infeasible_rows_are_off_front_and_do_not_dominate():
    values = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0], [3.0, 3.0]])
    feasible = np.array([False, True, True, True])
    assert pareto_mask(values, MIN2, feasible).tolist() == [False, True, True, False]


def test_pareto_mask_nan_rows_are_off_front_and_do_not_dominate():
    values = np.array([[np.nan, 0.0], [1.0, 2.0], [0.5, np.inf], [2.0, 1.0]])
    assert pareto_mask(values, MIN2).tolist() == [False, True, False, True]


def test_pareto_mask_keeps_all_duplicates():
    values = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [0.5, 3.0]])
    assert pareto_mask(values, MIN2).tolist() == [True, True, False, True]


def test_pareto_mask_edge_cases():
    assert pareto_mask(np.empty((0, 2)), MIN2).shape == (0,)
    assert pareto_mask(np.array([[np.nan, np.nan]]), MIN2).tolist() == [False]
    single = pareto_mask(np.array([[3.0], [1.0], [1.0], [2.0]]), ["minimize"])
    assert single.tolist() == [False, True, True, False]


def test_pareto_mask_rejects_bad_feasible():
    with pytest.raises(NasConfigError, match=r"feasible must have shape \(3,\)"):
        pareto_mask(np.zeros((3, 2)), MIN2, np.array([True, False]))
    with pytest.raises(NasConfigError, match="feasible must be a bool array"):
        pareto_mask(np.zeros((2, 2)), MIN2, np.array([1, 0]))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_pareto_mask_matches_brute_force_on_random_data(k):
    rng = np.random.default_rng(k)
    # Rounded so ties and duplicates occur.
    values = np.round(rng.random((60, k)), 1)
    directions = ["minimize", "maximize", "minimize", "maximize"][:k]
    feasible = rng.random(60) > 0.2
    expected = np.zeros(60, dtype=bool)
    idx = np.flatnonzero(feasible)
    expected[idx] = _brute_front(to_minimization(values, directions)[idx])
    np.testing.assert_array_equal(pareto_mask(values, directions, feasible), expected)


# --- Normalization ----------------------------------------------------------------------------


def test_normalization_apply_invert_round_trip():
    norm = Normalization((-1.0, 10.0, 5.0), (1.0, 30.0, 5.0), (1.1, 1.1, 1.1))
    values = np.array([[-1.0, 10.0, 5.0], [1.0, 30.0, 6.0], [0.0, 20.0, 4.0]])
    normalized = norm.apply(values)
    # Zero range (third objective) is treated as range 1: a shift only.
    np.testing.assert_allclose(normalized, [[0, 0, 0], [1, 1, 1], [0.5, 0.5, -1]])
    np.testing.assert_allclose(norm.invert(normalized), values)


def test_normalization_dict_round_trip_through_json():
    norm = Normalization((-0.95, 1.0e3), (-0.5, 2.5e6), (1.1, 1.2))
    again = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    assert hash(again) == hash(norm)
    assert norm.to_dict() == {
        "lower": [-0.95, 1.0e3],
        "upper": [-0.5, 2.5e6],
        "reference": [1.1, 1.2],
    }


def test_normalization_coerces_to_float_tuples():
    norm = Normalization([0, 1], np.array([2, 3]), (1, 1))
    assert norm.lower == (0.0, 1.0) and isinstance(norm.upper, tuple)
    assert all(isinstance(x, float) for x in norm.upper)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lower": (0.0,), "upper": (1.0, 2.0), "reference": (1.1,)}, "same non-zero length"),
        ({"lower": (), "upper": (), "reference": ()}, "same non-zero length"),
        ({"lower": (2.0,), "upper": (1.0,), "reference": (1.1,)}, "`lower <= upper` must hold"),
        ({"lower": (0.0,), "upper": (np.nan,), "reference": (1.1,)}, "upper must be finite"),
        ({"lower": "0", "upper": (1.0,), "reference": (1.1,)}, "must be a sequence of floats"),
    ],
)
def test_normalization_rejects_bad_values(kwargs, match):
    with pytest.raises(NasConfigError, match=match):
        Normalization(**kwargs)


def test_normalization_from_dict_rejects_wrong_keys():
    with pytest.raises(NasConfigError, match="exactly the keys"):
        Normalization.from_dict({"lower": [0.0], "upper": [1.0]})


def test_normalization_apply_rejects_wrong_width():
    with pytest.raises(NasConfigError, match="last dimension 2"):
        UNIT2.apply(np.zeros((4, 3)))


def test_normalization_for_uses_feasible_finite_rows_in_minimization_space():
    values = np.array([[0.1, 0.9], [0.3, 0.7], [np.nan, 0.1], [0.0, 0.99]])
    feasible = np.array([True, True, True, False])
    norm = normalization_for(values, ["minimize", "maximize"], feasible, margin=1.2)
    assert norm.lower == pytest.approx((0.1, -0.9))
    assert norm.upper == pytest.approx((0.3, -0.7))
    assert norm.reference == (1.2, 1.2)
    normalized = norm.apply(to_minimization(values[:2], ["minimize", "maximize"]))
    np.testing.assert_allclose(normalized, [[0.0, 0.0], [1.0, 1.0]], atol=1e-12)


def test_normalization_for_zero_range():
    norm = normalization_for(np.array([[2.0, 1.0], [2.0, 3.0]]), MIN2)
    assert norm.lower == (2.0, 1.0) and norm.upper == (2.0, 3.0)
    np.testing.assert_allclose(norm.apply(np.array([[2.0, 3.0]])), [[0.0, 1.0]])


def test_normalization_for_rejects_no_valid_rows_and_bad_margin():
    with pytest.raises(NasConfigError, match="no feasible trial with finite values among 2"):
        normalization_for(np.array([[np.nan, 1.0], [1.0, 1.0]]), MIN2, np.array([True, False]))
    with pytest.raises(NasConfigError, match="margin must be a positive"):
        normalization_for(np.ones((2, 2)), MIN2, margin=0.0)


# --- hypervolume ------------------------------------------------------------------------------


def test_hypervolume_single_point_2d():
    assert hypervolume(np.array([[0.5, 0.5]]), MIN2, UNIT2) == pytest.approx(0.25)


def test_hypervolume_union_2d():
    # Boxes [0.2,1]x[0.6,1] (0.32) and [0.6,1]x[0.2,1] (0.32) overlap in [0.6,1]^2 (0.16).
    points = np.array([[0.2, 0.6], [0.6, 0.2]])
    assert hypervolume(points, MIN2, UNIT2) == pytest.approx(0.48)
    # Adding a dominated point and a duplicate changes nothing.
    more = np.vstack([points, [[0.7, 0.7], [0.2, 0.6]]])
    assert hypervolume(more, MIN2, UNIT2) == pytest.approx(0.48)


def test_hypervolume_3d_known_values():
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), MIN3, UNIT3) == pytest.approx(0.125)
    # Three unit-axis staircase points: each box 0.5*1*1 ... by inclusion-exclusion:
    # |A|=|B|=|C|=0.5, pairwise 0.25, triple 0.125 -> 1.5 - 0.75 + 0.125 = 0.875.
    points = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    assert hypervolume(points, MIN3, UNIT3) == pytest.approx(0.875)


def test_hypervolume_uses_directions_normalization_and_reference():
    # error in [0.1, 0.3] (min), accuracy in [0.7, 0.9] (max); reference 1.1 in each.
    values = np.array([[0.1, 0.7], [0.3, 0.9], [0.2, 0.8]])
    directions = ["minimize", "maximize"]
    norm = normalization_for(values, directions)
    # Normalized: (0, 1), (1, 0), (0.5, 0.5); boxes to (1.1, 1.1).
    # Sweep in x: [0,0.5)*(1.1-1) + [0.5,1)*(1.1-0.5) + [1,1.1)*(1.1-0) = 0.05 + 0.3 + 0.11.
    assert hypervolume(values, directions, norm) == pytest.approx(0.46)


def test_hypervolume_ignores_infeasible_nan_and_points_beyond_reference():
    values = np.array([[0.5, 0.5], [0.0, 0.0], [np.nan, 0.1], [1.5, 0.0], [0.1, 1.0]])
    feasible = np.array([True, False, True, True, True])
    assert hypervolume(values, MIN2, UNIT2, feasible) == pytest.approx(0.25)
    assert hypervolume(np.empty((0, 2)), MIN2, UNIT2) == 0.0


def test_hypervolume_one_objective():
    norm = Normalization((0.0,), (1.0,), (1.1,))
    assert hypervolume(np.array([[0.4], [0.7]]), ["minimize"], norm) == pytest.approx(0.7)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_matches_grid_count_on_grid_points(k):
    rng = np.random.default_rng(10 + k)
    cells = 20 if k == 4 else 40
    # Coordinates on grid lines make the cell-centre count exact.
    points = rng.integers(0, cells, size=(12, k)) / cells
    norm = Normalization((0.0,) * k, (1.0,) * k, (1.0,) * k)
    expected = _grid_hv(points, np.ones(k), cells)
    assert hypervolume(points, ["minimize"] * k, norm) == pytest.approx(expected)


# --- hypervolume_history ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_history_equals_recomputation(k):
    rng = np.random.default_rng(100 + k)
    n = 80
    values = rng.random((n, k))
    values[rng.random(n) < 0.1, 0] = np.nan
    values[5] = values[3]  # a duplicate
    directions = ["minimize", "maximize", "minimize", "maximize"][:k]
    feasible = rng.random(n) > 0.2
    # A normalization from the first half only, so later points can fall beyond the reference.
    norm = normalization_for(values[: n // 2], directions, feasible[: n // 2])
    history = hypervolume_history(values, directions, norm, feasible)
    expected = [
        hypervolume(values[: i + 1], directions, norm, feasible[: i + 1]) for i in range(n)
    ]
    assert history.shape == (n,)
    np.testing.assert_allclose(history, expected, rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(history) >= 0)
    assert history[-1] > 0


def test_hypervolume_history_steps():
    values = np.array([[0.5, 0.5], [0.6, 0.6], [np.nan, 0.0], [0.5, 0.5], [0.0, 0.9], [0.2, 0.2]])
    history = hypervolume_history(values, MIN2, UNIT2)
    np.testing.assert_allclose(history, [0.25, 0.25, 0.25, 0.25, 0.3, 0.66])


def test_hypervolume_history_large_front_stays_exact():
    # 300 points on the sphere octant are all mutually non-dominated: the worst case.
    rng = np.random.default_rng(7)
    pts = rng.random((300, 3)) + 1e-3
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    norm = normalization_for(pts, MIN3)
    history = hypervolume_history(pts, MIN3, norm)
    assert history[-1] == pytest.approx(hypervolume(pts, MIN3, norm), rel=1e-9)
    assert np.all(np.diff(history) > 0)


def test_hypervolume_rejects_mismatched_normalization():
    with pytest.raises(NasConfigError, match="normalization has 3 objectives"):
        hypervolume(np.zeros((2, 2)), MIN2, UNIT3)


def test_two_spellings_of_one_model_are_one_front_member():
    import optuna

    from nas.search._report import trials_frame
    from nas.search._study import OBJECTIVES_ATTR

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(OBJECTIVES_ATTR, ["error", "params"])
    rows = [  # (arch_id, effective_id, error, params)
        ("a", "a", 0.1, 100),
        ("b", "a", 0.1, 100),  # 'a' spelled with extra identity skips: the same model
        ("c", "a", 0.1, 120),  # the same model charged more: dominated anyway
        ("d", "d", 0.1, 100),  # another model that ties: a member of its own
    ]
    for arch_id, effective_id, error, params in rows:
        attrs = {"arch_id": arch_id, "effective_id": effective_id, "status": "trained"}
        trial = optuna.trial.create_trial(
            values=[error, params], user_attrs={**attrs, "error": error, "params": params}
        )
        study.add_trial(trial)
    frame = trials_frame(study)
    assert frame.set_index("arch_id")["pareto"].to_dict() == {
        "a": True,
        "b": False,
        "c": False,
        "d": True,
    }
