"""Pareto fronts and hypervolume of multi-objective trial values, in pure numpy.

All functions take a ``(n, k)`` array of objective values (one row per trial, in trial order)
and the ``k`` Optuna directions (``"minimize"`` or ``"maximize"``). Internally everything is
turned into minimization space (maximize columns negated), normalized per objective to
``[0, 1]`` by a :class:`Normalization`, and measured against the normalization's reference point.

Rows that are infeasible (``feasible[i]`` is False) or hold a non-finite value (a failed trial)
are never on the front and never add hypervolume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas._errors import NasConfigError

__all__ = [
    "Normalization",
    "hypervolume",
    "hypervolume_history",
    "normalization_for",
    "pareto_mask",
    "to_minimization",
]

_DIRECTIONS = ("minimize", "maximize")
# Pairwise dominance is checked in blocks so that the (block, n, k) boolean temporaries stay
# below this many elements (about 4 MB each).
_BLOCK_ELEMENTS = 4_000_000


def _as_values(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """``values`` as a float (n, k) array, checked against ``directions``."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise NasConfigError(
            f"values must be a 2-D (n_trials, n_objectives) array, but got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise NasConfigError("values must have at least one objective column, but got 0")
    check_directions(directions, arr.shape[1])
    return arr


def check_directions(directions: Sequence[str], k: int, what: str = "objective columns") -> None:
    """Raise unless ``directions`` has "minimize" or "maximize" for each of ``k`` ``what``."""
    if isinstance(directions, str):
        raise NasConfigError(
            f"directions must be a sequence of strings, one per objective, but got {directions!r}"
        )
    if len(directions) != k:
        raise NasConfigError(
            f"got {len(directions)} directions for {k} {what}; give one direction per objective"
        )
    for i, direction in enumerate(directions):
        if direction not in _DIRECTIONS:
            raise NasConfigError(
                f"unknown direction {direction!r}",
                key=f"directions[{i}]",
                allowed=_DIRECTIONS,
                value=direction,
            )


def _valid_rows(arr: np.ndarray, feasible: np.ndarray | None) -> np.ndarray:
    """Bool (n,) mask of rows that are feasible and have only finite values."""
    ok = np.all(np.isfinite(arr), axis=1)
    if feasible is None:
        return ok
    feas = np.asarray(feasible)
    if feas.shape != (arr.shape[0],):
        raise NasConfigError(
            f"feasible must have shape ({arr.shape[0]},), one flag per row, "
            f"but got shape {feas.shape}"
        )
    if feas.dtype != bool:
        raise NasConfigError(f"feasible must be a bool array, but got dtype {feas.dtype}")
    return ok & feas


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """A copy of ``values`` in which every objective is to be minimized.

    Args:
        values: Objective values, shape (n, k).
        directions: ``"minimize"`` or ``"maximize"`` for each of the k columns.

    Returns:
        A new float (n, k) array with the ``"maximize"`` columns negated.

    Raises:
        NasConfigError: ``values`` is not 2-D or a direction is unknown or missing.

    Example:
        >>> to_minimization(np.array([[1.0, 0.9]]), ["minimize", "maximize"]).tolist()
        [[1.0, -0.9]]
    """
    arr = _as_values(values, directions).copy()
    for i, direction in enumerate(directions):
        if direction == "maximize":
            arr[:, i] = -arr[:, i]
    return arr


def _nondominated(points: np.ndarray) -> np.ndarray:
    """Bool mask of the rows of finite minimization-space ``points`` that no other row dominates.

    Row j dominates row i when it is no worse in every objective and better in at least one,
    so identical rows do not dominate each other and all copies stay on the front.
    """
    n, k = points.shape
    mask = np.ones(n, dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * k))
    for start in range(0, n, block):
        rows = points[start : start + block, None, :]  # (b, 1, k)
        no_worse = np.all(points[None, :, :] <= rows, axis=2)  # (b, n): j no worse than i
        better = np.any(points[None, :, :] < rows, axis=2)  # (b, n): j better somewhere
        mask[start : start + block] = ~np.any(no_worse & better, axis=1)
    return mask


def pareto_mask(
    values: np.ndarray, directions: Sequence[str], feasible: np.ndarray | None = None
) -> np.ndarray:
    """Which rows are on the Pareto front of the feasible, finite rows.

    Args:
        values: Objective values, shape (n, k), NaN for failed trials.
        directions: ``"minimize"`` or ``"maximize"`` for each column.
        feasible: Bool (n,) constraint flags; None means every row is feasible.

    Returns:
        Bool (n,) mask, True for the rows that no feasible finite row dominates. Infeasible rows
        and rows with a non-finite value are always False; duplicated points are all True.

    Raises:
        NasConfigError: Bad shapes, directions or a non-bool ``feasible``.

    Example:
        >>> v = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]])
        >>> pareto_mask(v, ["minimize", "minimize"]).tolist()
        [True, True, False]
    """
    arr = to_minimization(values, directions)
    valid = _valid_rows(arr, feasible)
    mask = np.zeros(arr.shape[0], dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size:
        mask[idx] = _nondominated(arr[idx])
    return mask


@dataclass(frozen=True)
class Normalization:
    """Affine map of minimization-space objectives to ``[0, 1]`` plus a hypervolume reference.

    Attributes:
        lower: Per-objective value mapped to 0, in minimization space (maximize columns negated).
        upper: Per-objective value mapped to 1, in minimization space; ``upper >= lower``.
            An objective with ``upper == lower`` is mapped with a range of 1 (shift only).
        reference: Hypervolume reference point in normalized units (1.1 = 10 % past the worst
            observed value).
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    reference: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "reference"):
            raw = getattr(self, name)
            if isinstance(raw, (str, bytes)) or not isinstance(raw, (Sequence, np.ndarray)):
                raise NasConfigError(
                    f"Normalization.{name} must be a sequence of floats, but got {raw!r}"
                )
            object.__setattr__(self, name, tuple(float(x) for x in raw))
        k = len(self.lower)
        if k == 0 or len(self.upper) != k or len(self.reference) != k:
            raise NasConfigError(
                "Normalization.lower, upper and reference must have the same non-zero length, "
                f"but got {len(self.lower)}, {len(self.upper)} and {len(self.reference)}"
            )
        for name in ("lower", "upper", "reference"):
            bad = [x for x in getattr(self, name) if not math.isfinite(x)]
            if bad:
                raise NasConfigError(f"Normalization.{name} must be finite, but got {bad[0]}")
        for i, (lo, hi) in enumerate(zip(self.lower, self.upper, strict=True)):
            if hi < lo:
                raise NasConfigError(
                    f"`lower <= upper` must hold for objective {i}, but got ({lo=}, {hi=})"
                )

    @property
    def n_objectives(self) -> int:
        """Number of objectives k."""
        return len(self.lower)

    def _span(self) -> np.ndarray:
        span = np.asarray(self.upper) - np.asarray(self.lower)
        return np.where(span > 0, span, 1.0)

    def _check_last_dim(self, arr: np.ndarray) -> None:
        if arr.ndim == 0 or arr.shape[-1] != self.n_objectives:
            raise NasConfigError(
                f"expected values with last dimension {self.n_objectives} (one per objective), "
                f"but got shape {arr.shape}"
            )

    def apply(self, values_min: np.ndarray) -> np.ndarray:
        """Map minimization-space values, shape (..., k), to normalized units.

        Example:
            >>> Normalization((0.0, 10.0), (2.0, 10.0), (1.1, 1.1)).apply(np.array([1.0, 12.0]))
            array([0.5, 2. ])
        """
        arr = np.asarray(values_min, dtype=float)
        self._check_last_dim(arr)
        return (arr - np.asarray(self.lower)) / self._span()

    def invert(self, normalized: np.ndarray) -> np.ndarray:
        """Map normalized values, shape (..., k), back to minimization space (undoes `apply`)."""
        arr = np.asarray(normalized, dtype=float)
        self._check_last_dim(arr)
        return arr * self._span() + np.asarray(self.lower)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready dict; `from_dict` reads it back."""
        return {
            "lower": list(self.lower),
            "upper": list(self.upper),
            "reference": list(self.reference),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        """Inverse of `to_dict`."""
        expected = {"lower", "upper", "reference"}
        if set(data) != expected:
            raise NasConfigError(
                f"Normalization dict must have exactly the keys {sorted(expected)}, "
                f"but got {sorted(data)}"
            )
        return cls(
            lower=tuple(data["lower"]),
            upper=tuple(data["upper"]),
            reference=tuple(data["reference"]),
        )


def normalization_for(
    values: np.ndarray,
    directions: Sequence[str],
    feasible: np.ndarray | None = None,
    margin: float = 1.1,
) -> Normalization:
    """Normalization by the observed range of the feasible, finite rows.

    Args:
        values: Objective values, shape (n, k).
        directions: ``"minimize"`` or ``"maximize"`` for each column.
        feasible: Bool (n,) constraint flags; None means every row is feasible.
        margin: Reference point in every normalized coordinate; must be positive.

    Returns:
        Per-objective min/max of the valid rows in minimization space, reference ``margin``.

    Raises:
        NasConfigError: Bad inputs, a non-positive margin, or no feasible finite row at all.
    """
    if not (math.isfinite(margin) and margin > 0):
        raise NasConfigError(f"margin must be a positive finite number, but got {margin=}")
    arr = to_minimization(values, directions)
    rows = arr[_valid_rows(arr, feasible)]
    if rows.shape[0] == 0:
        raise NasConfigError(
            f"no feasible trial with finite values among {arr.shape[0]} rows to take "
            "objective bounds from; pass an explicit Normalization instead"
        )
    k = arr.shape[1]
    return Normalization(
        lower=tuple(rows.min(axis=0).tolist()),
        upper=tuple(rows.max(axis=0).tolist()),
        reference=(float(margin),) * k,
    )


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimization ``points`` (m, k) that all lie strictly below ``ref``.

    Dominated and duplicated points are allowed; they add nothing.
    """
    m, k = points.shape
    if m == 0:
        return 0.0
    if k == 1:
        return float(ref[0] - points[:, 0].min())
    if k == 2:
        # Sweep along x: each point adds the strip from its x to the next x, as tall as the
        # best y seen so far (works for dominated and duplicated points too).
        order = np.argsort(points[:, 0], kind="stable")
        xs = points[order, 0]
        best_y = np.minimum.accumulate(points[order, 1])
        widths = np.diff(np.append(xs, ref[0]))
        return float(np.dot(widths, ref[1] - best_y))
    # WFG (While et al. 2012, "A Fast Way of Calculating Exact Hypervolumes"); O(m^2) for k = 3.
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, ref, assume_pareto=False))


def _normalized_inside(
    values: np.ndarray,
    directions: Sequence[str],
    normalization: Normalization,
    feasible: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized values, the reference, and the mask of valid rows strictly inside it."""
    arr = to_minimization(values, directions)
    if arr.shape[1] != normalization.n_objectives:
        raise NasConfigError(
            f"normalization has {normalization.n_objectives} objectives but values have "
            f"{arr.shape[1]} columns"
        )
    valid = _valid_rows(arr, feasible)
    ref = np.asarray(normalization.reference, dtype=float)
    with np.errstate(invalid="ignore"):
        norm = normalization.apply(arr)
        # A point on or beyond the reference in any coordinate has an empty box.
        inside = valid & np.all(norm < ref, axis=1)
    return norm, ref, inside


def hypervolume(
    values: np.ndarray,
    directions: Sequence[str],
    normalization: Normalization,
    feasible: np.ndarray | None = None,
) -> float:
    """Hypervolume dominated by the feasible rows, in normalized units.

    Args:
        values: Objective values, shape (n, k), NaN for failed trials.
        directions: ``"minimize"`` or ``"maximize"`` for each column.
        normalization: Maps values to normalized units and gives the reference point.
        feasible: Bool (n,) constraint flags; None means every row is feasible.

    Returns:
        Volume of the union of the boxes ``[normalize(v), reference]`` over the valid rows
        (exact for any k); rows not strictly better than the reference add nothing.

    Example:
        >>> norm = Normalization((0.0, 0.0), (1.0, 1.0), (1.0, 1.0))
        >>> hypervolume(np.array([[0.5, 0.5]]), ["minimize", "minimize"], norm)
        0.25
    """
    norm, ref, inside = _normalized_inside(values, directions, normalization, feasible)
    return _hv(norm[inside], ref)


def hypervolume_history(
    values: np.ndarray,
    directions: Sequence[str],
    normalization: Normalization,
    feasible: np.ndarray | None = None,
) -> np.ndarray:
    """Hypervolume after each prefix of rows, the rows being in trial order.

    The running front is kept incrementally: a row that the front weakly dominates changes
    nothing, and a new front member adds its exclusive contribution
    ``vol([p, ref]) - HV({max(p, q) : q in front})`` (While et al. 2012, Eq. 6).

    Args:
        values: Objective values, shape (n, k), NaN for failed trials.
        directions: ``"minimize"`` or ``"maximize"`` for each column.
        normalization: Maps values to normalized units and gives the reference point.
        feasible: Bool (n,) constraint flags; None means every row is feasible.

    Returns:
        Float (n,) array, entry i the hypervolume of rows ``0..i``; nondecreasing.
    """
    norm, ref, inside = _normalized_inside(values, directions, normalization, feasible)
    n, k = norm.shape
    history = np.zeros(n, dtype=float)
    front = np.empty((0, k), dtype=float)
    total = 0.0
    for i in range(n):
        if inside[i]:
            p = norm[i]
            if not np.any(np.all(front <= p, axis=1)):
                limited = np.maximum(front, p)  # (m, k), each inside [p, ref]
                limited = limited[np.all(limited < ref, axis=1)]
                gain = float(np.prod(ref - p)) - _hv(limited, ref)
                total += max(gain, 0.0)  # exact gain is > 0; guard against rounding
                front = np.vstack([front[~np.all(p <= front, axis=1)], p])
        history[i] = total
    return history
