"""How close a search got to a tabular problem's true Pareto front.

Every objective is turned into minimization and normalized by the WHOLE space's range (the min
and max of its column over all architectures, not just the evaluated ones), so scores of
different methods and seeds share one scale; the hypervolume reference point is 1.1 in every
normalized objective. Three scores:

- hypervolume gap ``1 - HV(found) / HV(true front)``: 0 once the true front is found;
- IGD, the mean distance from each true-front point to its nearest found point (Coello &
  Reyes Sierra 2004), in normalized units;
- the fraction of the true Pareto-optimal rows that were evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas._errors import NasConfigError
from nas.bench._fbnet import CostProblem
from nas.bench._tabular import TabularProblem
from nas.search._pareto import (
    Normalization,
    hypervolume,
    hypervolume_history,
    normalization_for,
    pareto_mask,
    to_minimization,
)

__all__ = [
    "REFERENCE",
    "Scorer",
    "fraction_found",
    "hypervolume_normalized",
    "igd",
]

#: hypervolume reference point in every normalized objective (10 % past the worst value)
REFERENCE = 1.1


def _points(points: np.ndarray, what: str = "points") -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2:
        raise NasConfigError(f"{what} must be a 2-D (n, k) array, but got shape {arr.shape}")
    return arr


def _unit(k: int, reference: float) -> Normalization:
    """The identity map on already-normalized points, with ``reference`` everywhere."""
    return Normalization((0.0,) * k, (1.0,) * k, (reference,) * k)


def hypervolume_normalized(points: np.ndarray, reference: float = REFERENCE) -> float:
    """Exact hypervolume of normalized minimization ``points`` (n, k) up to ``reference``.

    A 2-D sweep for k = 2, WFG (Optuna's ``compute_hypervolume``) for k >= 3; dominated and
    duplicated points are allowed.

    Example:
        >>> hypervolume_normalized(np.array([[0.1, 0.5], [0.5, 0.1]]), reference=1.0)
        0.65
    """
    arr = _points(points)
    if arr.shape[0] == 0:
        return 0.0
    k = arr.shape[1]
    return hypervolume(arr, ["minimize"] * k, _unit(k, reference))


def igd(found: np.ndarray, true_front: np.ndarray) -> float:
    """Inverted generational distance: mean over ``true_front`` rows of the Euclidean distance
    to the nearest ``found`` row (both normalized, shape (n, k) and (m, k)).

    Returns:
        The mean distance; ``inf`` when nothing was found.

    Example:
        >>> round(igd(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])), 4)
        0.7071
    """
    f, t = _points(found, "found"), _points(true_front, "true_front")
    if t.shape[0] == 0:
        raise NasConfigError("true_front is empty; IGD needs at least one reference point")
    if f.shape[0] == 0:
        return float("inf")
    if f.shape[1] != t.shape[1]:
        raise NasConfigError(f"found has {f.shape[1]} objectives but true_front has {t.shape[1]}")
    dist = np.sqrt(((t[:, None, :] - f[None, :, :]) ** 2).sum(axis=2))  # (m, n)
    return float(dist.min(axis=1).mean())


def fraction_found(rows: Sequence[int] | np.ndarray, true_front_idx: np.ndarray) -> float:
    """Share of the true Pareto-optimal rows among the evaluated ``rows``.

    Example:
        >>> fraction_found([3, 7, 8], np.array([1, 3, 8, 9]))
        0.5
    """
    front = np.asarray(true_front_idx)
    if front.size == 0:
        raise NasConfigError("true_front_idx is empty")
    return float(np.isin(front, np.asarray(rows, dtype=np.int64)).mean())


@dataclass(frozen=True, eq=False)
class Scorer:
    """Scores of sets of evaluated rows (keys) of one :class:`TabularProblem` or
    :class:`CostProblem`.

    Attributes:
        problem: The problem scored against.
        normalization: Whole-space min..max per objective (minimization space), reference 1.1.
        front: The true front, normalized, shape (m, k).
        hv_true: Hypervolume of the true front (normalized units).
    """

    problem: TabularProblem | CostProblem
    normalization: Normalization
    front: np.ndarray
    hv_true: float

    @classmethod
    def for_problem(
        cls, problem: TabularProblem | CostProblem, reference: float = REFERENCE
    ) -> Scorer:
        """Normalize by the whole space's range and measure the true front once."""
        # min and max per objective over the whole space (the rows hold just those two)
        norm = normalization_for(problem.bounds, problem.directions, margin=reference)
        front = norm.apply(to_minimization(problem.true_front, problem.directions))
        hv_true = hypervolume_normalized(front, reference)
        if not hv_true > 0:
            raise NasConfigError(
                f"the true front of {problem.names} has zero hypervolume; every objective "
                "needs a range"
            )
        return cls(problem, norm, front, hv_true)

    def normalized(self, rows: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Normalized minimization-space values of ``rows`` (keys), shape (len(rows), k)."""
        values = self.problem.values_of(rows)  # type: ignore[arg-type]  # the problem's keys
        return self.normalization.apply(to_minimization(values, self.problem.directions))

    def hv_gap(self, points_normalized: np.ndarray) -> float:
        """``1 - HV(points) / HV(true front)`` of normalized points; 0 for the true front."""
        hv = hypervolume_normalized(points_normalized, self.normalization.reference[0])
        return 1.0 - hv / self.hv_true

    def hv_gap_history(self, rows: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Hypervolume gap after each of ``rows`` in evaluation order, shape (len(rows),).

        Incremental (each new front member adds its exclusive volume), so a 100-row history
        costs about as much as one hypervolume.
        """
        points = self.normalized(rows)
        k = points.shape[1]
        history = hypervolume_history(
            points, ["minimize"] * k, _unit(k, self.normalization.reference[0])
        )
        return 1.0 - history / self.hv_true

    def igd(self, rows: Sequence[Any] | np.ndarray) -> float:
        """IGD of the non-dominated evaluated rows to the true front (normalized units)."""
        points = self.normalized(rows)
        if points.shape[0] == 0:
            return float("inf")
        mask = pareto_mask(points, ["minimize"] * points.shape[1])
        return igd(points[mask], self.front)

    def fraction_found(self, rows: Sequence[Any] | np.ndarray) -> float:
        """Share of the true Pareto-optimal rows that were evaluated (for a CostProblem: of
        the true front's points attained by an evaluated architecture)."""
        return self.problem.fraction_found(rows)  # type: ignore[arg-type]  # the problem's keys
