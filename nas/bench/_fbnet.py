"""Cost-only benchmark on the FBNet space: the exact Pareto front of per-layer sums, by DP.

The ``fbnet`` space has 9^22 architectures, far too many to enumerate. But every objective here
is a sum over layers (HW-NAS-Bench's convention: a network's latency/energy is the sum of its
blocks' entries, plus the imported table's in-model overhead, 0 for HW-NAS-Bench), and each
searchable layer depends on one parameter only (every stage's width and stride are fixed). The
Pareto front of a sum over independent layer choices is found exactly by dynamic programming:
start from the single point of the constant terms; per layer, take the Minkowski sum with that
layer's candidate cost vectors (one per choice) and keep only the non-dominated points.
Dominance survives adding the same vector to both sides, so no front point is lost.

Objectives (all free: known from a cost table for any architecture):

- ``latency_ms@<device>`` for the HW-NAS-Bench FBNet LUT's devices (edgegpu, raspi4, pixel3,
  eyeriss, fpga);
- ``energy_mj@<device>`` where the LUT has energy (edgegpu, eyeriss, fpga);
- ``macs`` (maximized): multiply-accumulates at batch 1, a capacity proxy for accuracy.

Every device objective is cheapest with ``skip`` in every layer, so a front of latencies and
energies alone is the single all-skip architecture; ``macs`` makes the trade-off non-trivial.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas._errors import NasConfigError
from nas.cost import VectorizedCost
from nas.cost._import import HWNASBENCH_DEVICES, import_table
from nas.space import Architecture, LayerSlots, SearchSpace, SlotValues, load_space

__all__ = ["FBNET_DEVICES", "MAX_FRONT_POINTS", "CostProblem", "load_fbnet", "pareto_sum"]

logger = logging.getLogger(__name__)

FBNET_DEVICES = HWNASBENCH_DEVICES
#: devices whose HW-NAS-Bench FBNet LUT column has energy (HW-NAS-Bench, Sec. 3)
_ENERGY_DEVICES = ("edgegpu", "eyeriss", "fpga")
_LUT_DIR = Path("hw-nas-bench-fbnet-lut")
_METRIC_FORMS = ("latency_ms@<device>", "energy_mj@<device>", "macs")
#: the DP gives up (with an error) past this many non-dominated partial sums
MAX_FRONT_POINTS = 200_000


def _nondominated_min(points: np.ndarray) -> np.ndarray:
    """Indices of the distinct non-dominated rows of minimization ``points`` (n, k).

    Of equal rows one is kept. k = 2: a sort and a running minimum; k >= 3: a sweep in
    lexicographic order, comparing each block of candidates with the rows kept so far.
    """
    order = np.lexsort(points.T[::-1])  # sorted by column 0, ties by column 1, ...
    p = points[order]
    if p.shape[1] == 1:
        return order[:1]
    if p.shape[1] == 2:
        # In (x, y) order, a row is dominated or equal iff an earlier row has y <= its y.
        best = np.minimum.accumulate(p[:, 1])
        keep = np.ones(len(p), dtype=bool)
        keep[1:] = p[1:, 1] < best[:-1]
        return order[keep]
    kept: list[np.ndarray] = []
    kept_idx: list[np.ndarray] = []
    block = 512
    for start in range(0, len(p), block):
        cand = p[start : start + block]
        alive = np.ones(len(cand), dtype=bool)
        for prev in kept:  # an earlier block's kept rows: weakly dominate (or equal) -> drop
            alive &= ~np.any(np.all(prev[None, :, :] <= cand[:, None, :], axis=2), axis=1)
        # within the block, only an earlier row (lexicographically) can dominate a later one
        le = np.all(cand[None, :, :] <= cand[:, None, :], axis=2)  # le[i, j]: row j <= row i
        le &= np.tri(len(cand), k=-1, dtype=bool)
        alive &= ~np.any(le & alive[None, :], axis=1)
        # a dead row can still be the only one dominating a later row only if it is dominated
        # by a live one, which then dominates that later row too: using `alive` is exact.
        if alive.any():
            kept.append(cand[alive])
            kept_idx.append(start + np.flatnonzero(alive))
    return order[np.concatenate(kept_idx)]


def pareto_sum(
    constant: np.ndarray,
    layers: Sequence[np.ndarray],
    *,
    max_points: int = MAX_FRONT_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Pareto front (minimization) of ``constant + sum_j layers[j][c_j]`` over all choices.

    The sum is accumulated left to right (constant first, then layer 0, 1, ...), the order in
    which :class:`~nas.cost.VectorizedCost` adds, so each point is bit-identical to the cost of
    its architecture priced that way.

    Args:
        constant: ``(k,)`` term common to every architecture.
        layers: One ``(c_j, k)`` array per layer: the cost vector of each of its ``c_j`` choices.
        max_points: Give up when more non-dominated partial sums than this survive a layer.

    Returns:
        ``(points, choices)``: the distinct front points ``(m, k)``, sorted lexicographically,
        and for each one choice index per layer ``(m, len(layers))`` that attains it.

    Raises:
        NasConfigError: The front grew past ``max_points``.

    Example:
        >>> pts, ch = pareto_sum(np.zeros(2), [np.array([[0.0, 2.0], [1.0, 0.0], [2.0, 2.0]])] * 2)
        >>> pts.tolist(), ch.tolist()
        ([[0.0, 4.0], [1.0, 2.0], [2.0, 0.0]], [[0, 0], [0, 1], [1, 1]])
    """
    points = np.asarray(constant, dtype=np.float64)[None, :]  # (1, k)
    choices = np.zeros((1, 0), dtype=np.int64)
    for j, costs in enumerate(layers):
        costs = np.asarray(costs, dtype=np.float64)  # (c, k)
        c = costs.shape[0]
        cand = (points[:, None, :] + costs[None, :, :]).reshape(-1, points.shape[1])  # (m*c, k)
        keep = _nondominated_min(cand)
        points = cand[keep]
        choices = np.column_stack([choices[keep // c], keep % c])
        if len(points) > max_points:
            raise NasConfigError(
                f"the exact front grew past {max_points:,} points at layer {j + 1} of "
                f"{len(layers)}; use fewer objectives (2 are always tractable)"
            )
        logger.debug("layer %d: %d non-dominated partial sums", j, len(points))
    order = np.lexsort(points.T[::-1])
    return points[order], choices[order]


@dataclass(frozen=True)
class _Additive:
    """One objective as ``constant + sum over slots``; slot values indexed by one parameter."""

    constant: float
    slots: tuple[tuple[int | None, np.ndarray], ...]  # (parameter column or None, values)

    def total(self, codes: np.ndarray) -> np.ndarray:
        out = np.full(len(codes), self.constant)
        for column, values in self.slots:
            out += values if column is None else values[codes[:, column]]
        return out


def _additive(values: SlotValues, space: SearchSpace) -> _Additive:
    """``values`` with one parameter column (or none) per slot, as the DP needs."""
    slots: list[tuple[int | None, np.ndarray]] = []
    for columns, table in values.tables:
        if len(columns) > 1:
            raise NasConfigError(
                f"space '{space.name}' has a layer decided by {len(columns)} parameters; the "
                "fbnet benchmark needs one parameter per layer"
            )
        slots.append((columns[0] if columns else None, table))
    return _Additive(values.constant, tuple(slots))


@dataclass(frozen=True, eq=False)
class CostProblem:
    """A cost-only problem over a space too large to enumerate; its exact front comes from DP.

    An evaluation is a cost lookup: each distinct architecture counts once. Evaluations are
    identified by the canonical architecture string (``key``), not a table row.

    Attributes:
        benchmark: ``"fbnet"``.
        dataset: None (no accuracy is involved).
        space: The ``fbnet`` search space.
        names: Objective names as given.
        directions: ``"minimize"`` per objective (``"maximize"`` for ``macs``).
        expensive: ``()``: every objective is free.
        bounds: Float ``(2, k)``: the min and max of each objective over the whole space
            (exact: per-layer minima and maxima summed).
        true_front: Float ``(m, k)`` distinct points of the exact Pareto front.
        true_front_archs: One architecture string per front point that attains it.
    """

    benchmark: str
    dataset: None
    space: SearchSpace
    names: tuple[str, ...]
    directions: tuple[str, ...]
    expensive: tuple[int, ...]
    bounds: np.ndarray
    true_front: np.ndarray
    true_front_archs: tuple[str, ...]
    _objectives: tuple[_Additive, ...]

    @property
    def n_archs(self) -> int:
        """Number of architectures in the space (9^22 for fbnet)."""
        return self.space.size()

    @property
    def free(self) -> tuple[int, ...]:
        """Every objective index: all are free."""
        return tuple(range(len(self.names)))

    def key(self, arch: str | Architecture) -> str:
        """The canonical string of ``arch``: what identifies one evaluation."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        return self.space.format(arch)

    def arch_str(self, key: str) -> str:
        """The architecture string of an evaluation key (the key itself)."""
        return key

    def evaluate(self, archs: Sequence[str | Architecture]) -> np.ndarray:
        """Objective values ``(len(archs), k)`` from the cost tables, in ``names`` order."""
        if len(archs) == 0:
            return np.zeros((0, len(self.names)))
        codes = self.space.encode(
            [self.space.parse(a) if isinstance(a, str) else a for a in archs]
        )
        return np.column_stack([o.total(codes) for o in self._objectives])

    def values_of(self, keys: Sequence[str]) -> np.ndarray:
        """Objective values of evaluation keys (see :meth:`evaluate`)."""
        return self.evaluate(list(keys))

    def fraction_found(self, keys: Sequence[str]) -> float:
        """Share of the true front's distinct points attained by an evaluated architecture
        (ties count: any architecture with exactly that point's values)."""
        if len(keys) == 0:
            return 0.0
        found = self.values_of(keys)  # (n, k)
        same = np.isclose(found[None, :, :], self.true_front[:, None, :], rtol=1e-12, atol=0)
        return float(np.all(same, axis=2).any(axis=1).mean())


def _parse(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name.strip():
        raise NasConfigError(f"objective names must be non-empty strings, but got {name!r}")
    metric, _, device = name.strip().partition("@")
    if metric == "macs":
        if device:
            raise NasConfigError(f"objective '{name}': macs takes no device; write 'macs'")
        return metric, None
    if metric in ("error", "accuracy"):
        raise NasConfigError(
            f"objective '{name}': fbnet is cost-only (no accuracy table); use "
            "latency_ms@<device>, energy_mj@<device> or macs"
        )
    if metric not in ("latency_ms", "energy_mj"):
        raise NasConfigError(f"unknown objective '{name}'", allowed=_METRIC_FORMS, value=metric)
    if not device:
        raise NasConfigError(f"objective '{name}' needs a device: write '{metric}@<device>'")
    if device not in FBNET_DEVICES:
        raise NasConfigError(
            f"unknown device '{device}' in objective '{name}'", allowed=FBNET_DEVICES, value=device
        )
    if metric == "energy_mj" and device not in _ENERGY_DEVICES:
        raise NasConfigError(
            f"objective '{name}': the HW-NAS-Bench FBNet LUT has energy only for "
            f"{', '.join(_ENERGY_DEVICES)}"
        )
    return metric, device


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def load_fbnet(
    names: Sequence[str], root: Path, *, max_points: int = MAX_FRONT_POINTS
) -> CostProblem:
    """The fbnet cost-only problem for objective ``names`` with tables from ``root``.

    Raises:
        NasConfigError: Bad objectives, a missing LUT, or a front past ``max_points``.
    """
    parsed = [_parse(n) for n in names]
    lut = root / _LUT_DIR
    if not lut.is_dir():
        raise NasConfigError(
            f"{lut}: HW-NAS-Bench FBNet LUT not found; pass --data DIR (Python: data_dir=) naming "
            f"the folder that holds {_LUT_DIR}/"
        )
    space = load_space("fbnet")
    slots = LayerSlots(space)
    costs: dict[str, VectorizedCost] = {}
    objectives: list[_Additive] = []
    directions: list[str] = []
    for metric, device in parsed:
        if device is None:
            objectives.append(_additive(slots.tabulate(lambda layer: layer.macs), space))
            directions.append("maximize")
            continue
        if device not in costs:
            table = import_table("hwnasbench-fbnet", lut, device)
            costs[device] = VectorizedCost(space, table, slots)
        objectives.append(_additive(costs[device].values[metric], space))
        directions.append("minimize")
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    constant = sign * np.array([o.constant for o in objectives])
    per_layer: list[np.ndarray] = []
    n_slots = len(objectives[0].slots)
    for s in range(n_slots):
        columns = {o.slots[s][0] for o in objectives}
        values = [np.asarray(o.slots[s][1], dtype=np.float64) for o in objectives]
        if columns == {None}:  # a fixed layer: the same term for every architecture
            per_layer.append(sign[None, :] * np.array(values)[None, :])
        else:
            per_layer.append(sign[None, :] * np.column_stack(values))
    points, choices = pareto_sum(constant, per_layer, max_points=max_points)
    front = points * sign  # back to the objectives' own directions
    labels = list(space.parameters().items())
    variable = [s for s in range(n_slots) if objectives[0].slots[s][0] is not None]
    archs = []
    for row in choices:
        picked = {objectives[0].slots[s][0]: int(row[s]) for s in variable}
        arch = space.from_choices({p: c[picked[i]] for i, (p, c) in enumerate(labels)})
        archs.append(space.format(arch))
    # Whole-space range per objective: per-layer min (max) summed in the same order.
    lo = np.array([o.constant for o in objectives], dtype=np.float64)
    hi = lo.copy()
    for s in range(n_slots):
        for i, o in enumerate(objectives):
            lo[i] += np.min(o.slots[s][1])
            hi[i] += np.max(o.slots[s][1])
    logger.info("fbnet %s: %d points on the exact front", ",".join(names), len(front))
    return CostProblem(
        benchmark="fbnet",
        dataset=None,
        space=space,
        names=tuple(names),
        directions=tuple(directions),
        expensive=(),
        bounds=_readonly(np.vstack([lo, hi])),
        true_front=_readonly(front),
        true_front_archs=tuple(archs),
        _objectives=tuple(objectives),
    )
