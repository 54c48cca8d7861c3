"""Tabular benchmark problems: every architecture of a space with its objective values known.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained all 15,625 cells; HELP (Lee et al., NeurIPS 2021)
and HW-NAS-Bench-360 measured their latency (and energy) on real devices. A
:class:`TabularProblem` joins the tables by architecture so a search method can be scored
against the true Pareto front after every accuracy evaluation, in milliseconds instead of GPU
days.

Data files (read from ``<repo>/../shared/data`` unless ``data_dir`` is given):

- ``nas-bench-201-accuracy/nb201_test_accuracy.csv``: test accuracy (%) per dataset, rows in
  NB201 index order, with ``arch_str``.
- ``help-latency/nasbench201_latency_ms.csv``: latency (ms) per device column; ``raspi4``,
  ``pixel3``, ``eyeriss`` and ``fpga`` are HW-NAS-Bench's CIFAR-10 latencies.
- ``hw-nas-bench-360/dataset.csv.gz``: ``rep_arch_idx`` (one representative per isomorphism
  class) and, for ``pi5``, the Raspberry Pi 5 ONNX Runtime CIFAR-100 latency and energy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nas._errors import NasConfigError
from nas.bench._fbnet import CostProblem, load_fbnet
from nas.search._pareto import pareto_mask, to_minimization
from nas.space import Architecture, SearchSpace, load_space

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "TabularProblem",
    "default_data_dir",
    "list_devices",
    "load_problem",
    "lookup",
]

logger = logging.getLogger(__name__)

BENCHMARKS = ("nasbench201", "fbnet")
#: dataset name -> column prefix in the accuracy file
DATASETS: Mapping[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "ImageNet16-120": "imagenet16_120",
}
_ACCURACY_FILE = Path("nas-bench-201-accuracy/nb201_test_accuracy.csv")
_HELP_FILE = Path("help-latency/nasbench201_latency_ms.csv")
_HW360_FILE = Path("hw-nas-bench-360/dataset.csv.gz")
#: the HW-NAS-Bench-360 rows that stand for device ``pi5``: (device, framework, task)
_PI5 = ("pi5", "onnx", "cifar100")
_EXPENSIVE_METRICS = ("error", "accuracy")
_METRIC_FORMS = ("error", "accuracy", "latency_ms@<device>", "energy_mj@pi5")


def default_data_dir() -> Path:
    """``<repo>/../shared/data``: the benchmark data folder beside the checkout."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True, eq=False)
class TabularProblem:
    """A multi-objective problem over a fully tabulated space.

    All arrays are read-only. Row ``i`` is architecture ``arch_strs[i]`` (NB201 index ``i``).

    Attributes:
        benchmark: ``"nasbench201"``.
        dataset: The dataset whose test accuracy ``error``/``accuracy`` read.
        space: The built-in search space the architectures belong to.
        arch_strs: Architecture strings, one per row, in the accuracy file's index order.
        names: Objective names as given (``error``, ``latency_ms@pixel3``, ...).
        directions: ``"minimize"`` per objective (``"maximize"`` for ``accuracy``).
        values: Float64 ``(n, k)`` objective values; ``error`` = 100 - test accuracy (%).
        expensive: Indices of the objectives that need training (``error``/``accuracy``);
            the others are free, known for every architecture from a cost table.
        iso_class: Int ``(n,)``: the row of a canonical representative of each row's
            isomorphism class (HW-NAS-Bench-360's ``rep_arch_idx``; 6,466 classes).
        true_front_idx: Rows on the Pareto front of all ``n`` rows, ascending.
        true_front: ``values[true_front_idx]``.
    """

    benchmark: str
    dataset: str
    space: SearchSpace
    arch_strs: tuple[str, ...]
    names: tuple[str, ...]
    directions: tuple[str, ...]
    values: np.ndarray
    expensive: tuple[int, ...]
    iso_class: np.ndarray
    true_front_idx: np.ndarray
    true_front: np.ndarray
    _rows: dict[str, int] = field(repr=False)

    @property
    def n_archs(self) -> int:
        """Number of rows (architectures)."""
        return len(self.arch_strs)

    @property
    def free(self) -> tuple[int, ...]:
        """Indices of the objectives that are not expensive, in objective order."""
        return tuple(i for i in range(len(self.names)) if i not in self.expensive)

    def row(self, arch: str | Architecture) -> int:
        """The row of one architecture, given as a string or an :class:`Architecture`.

        Raises:
            NasConfigError: Not an architecture of this problem's space.
        """
        if isinstance(arch, Architecture):
            text = self.space.format(arch)
        elif isinstance(arch, str):
            text = arch.strip()
        else:
            raise NasConfigError(
                f"expected an architecture string or Architecture, but got {type(arch).__name__}"
            )
        found = self._rows.get(text)
        if found is None:
            # Not in canonical form: parse (which validates and explains) and format again.
            found = self._rows.get(self.space.format(self.space.parse(text)))
            if found is None:
                raise NasConfigError(f"architecture {text!r} is not in the {self.benchmark} table")
        return found

    def rows(self, archs: Sequence[str | Architecture]) -> np.ndarray:
        """Int array of the rows of ``archs`` (see :meth:`row`)."""
        return np.fromiter((self.row(a) for a in archs), dtype=np.int64, count=len(archs))

    # -- the interface run_benchmark and the methods use (shared with CostProblem) ---------------
    def key(self, arch: str | Architecture) -> int:
        """What identifies one evaluation: the row (see :meth:`row`)."""
        return self.row(arch)

    def arch_str(self, key: int) -> str:
        """The architecture string of row ``key``."""
        return self.arch_strs[key]

    def values_of(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """Objective values ``(len(keys), k)`` of rows."""
        return self.values[np.asarray(keys, dtype=np.int64)]

    @property
    def bounds(self) -> np.ndarray:
        """Float ``(2, k)``: the min and max of each objective over all rows."""
        return np.vstack([self.values.min(axis=0), self.values.max(axis=0)])

    def fraction_found(self, keys: Sequence[int] | np.ndarray) -> float:
        """Share of the true Pareto-optimal rows among the evaluated rows ``keys``."""
        front = self.true_front_idx
        return float(np.isin(front, np.asarray(keys, dtype=np.int64)).mean())


def lookup(problem: TabularProblem, archs: Sequence[str | Architecture]) -> np.ndarray:
    """Objective values of architectures given as strings or :class:`Architecture` values.

    Returns:
        Float ``(len(archs), k)`` array, columns in ``problem.names`` order.

    Example:
        >>> p = load_problem(objectives=["error", "latency_ms@pixel3"])  # doctest: +SKIP
        >>> lookup(p, [p.arch_strs[0]])  # doctest: +SKIP
        array([[14.13666667,  3.60585   ]])
    """
    return problem.values[problem.rows(archs)]


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    if not path.is_file():
        raise NasConfigError(
            f"{path}: benchmark data not found; pass --data DIR (Python: data_dir=) naming the "
            f"folder that holds {_ACCURACY_FILE.parts[0]}/, {_HELP_FILE.parts[0]}/ and "
            f"{_HW360_FILE.parts[0]}/"
        )
    return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]


def list_devices(data_dir: str | Path | None = None) -> list[str]:
    """Device names usable in ``latency_ms@<device>``: HELP's NB201 columns plus ``pi5``."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    header = _read_csv(root / _HELP_FILE, nrows=0)
    return sorted([c for c in header.columns if c not in ("index", "arch_str")] + [_PI5[0]])


def _parse_objective(name: str, devices: Sequence[str]) -> tuple[str, str | None]:
    """``"latency_ms@pixel3"`` -> ``("latency_ms", "pixel3")``, validated."""
    if not isinstance(name, str) or not name.strip():
        raise NasConfigError(f"objective names must be non-empty strings, but got {name!r}")
    metric, _, device = name.strip().partition("@")
    if metric in _EXPENSIVE_METRICS:
        if device:
            raise NasConfigError(
                f"objective '{name}': {metric} takes no device; write '{metric}' "
                "(its dataset is set by --dataset)"
            )
        return metric, None
    if metric not in ("latency_ms", "energy_mj"):
        raise NasConfigError(f"unknown objective '{name}'", allowed=_METRIC_FORMS, value=metric)
    if not device:
        raise NasConfigError(f"objective '{name}' needs a device: write '{metric}@<device>'")
    if device not in devices:
        raise NasConfigError(
            f"unknown device '{device}' in objective '{name}'", allowed=devices, value=device
        )
    if metric == "energy_mj" and device != _PI5[0]:
        raise NasConfigError(
            f"objective '{name}': energy is only tabulated for pi5; write 'energy_mj@pi5'"
        )
    return metric, device


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise NasConfigError(f"unknown {what} '{value}'", allowed=allowed, value=value)


def _front_idx(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Rows on the Pareto front, exactly as :func:`pareto_mask` says, but in O(n * front).

    ``pareto_mask`` compares all pairs (11 s for 15,625 rows); first drop every row that the
    lexicographically smallest remaining row dominates, repeatedly (the skyline sweep of
    Optuna's ``_is_pareto_front``). A dropped row is dominated by a kept one, so the front of
    the kept rows is the front of all rows; ``pareto_mask`` then decides it.
    """
    points = to_minimization(values, directions)
    order = np.lexsort(points.T[::-1])
    remaining = order
    kept: list[int] = []
    while remaining.size:
        head = points[remaining[0]]
        rest = points[remaining]
        dominated = np.all(head <= rest, axis=1) & np.any(head < rest, axis=1)
        same = np.all(rest == head, axis=1)
        kept.extend(remaining[same].tolist())
        remaining = remaining[~(dominated | same)]
    candidates = np.sort(np.asarray(kept, dtype=np.int64))
    return candidates[pareto_mask(values[candidates], directions)]


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def load_problem(
    benchmark: str = "nasbench201",
    dataset: str | None = None,
    objectives: Sequence[str] = ("error", "latency_ms@pixel3"),
    data_dir: str | Path | None = None,
) -> TabularProblem | CostProblem:
    """Load a benchmark problem and its true Pareto front.

    Args:
        benchmark: ``"nasbench201"`` (a :class:`TabularProblem`) or ``"fbnet"`` (a cost-only
            :class:`~nas.bench.CostProblem` whose exact front comes from dynamic programming).
        dataset: nasbench201: ``"cifar10"`` (default), ``"cifar100"`` or ``"ImageNet16-120"``;
            the test accuracy ``error`` and ``accuracy`` read (latencies do not depend on it).
            fbnet: must be None (no accuracy).
        objectives: nasbench201: ``error`` (100 - test accuracy in %), ``accuracy``
            (maximized), ``latency_ms@<device>`` for any of :func:`list_devices`,
            ``energy_mj@pi5``. fbnet: ``latency_ms@<device>``, ``energy_mj@<device>`` for the
            HW-NAS-Bench FBNet LUT's devices, ``macs`` (maximized).
        data_dir: Folder holding the benchmark data; default :func:`default_data_dir`.

    Returns:
        The problem, with every value in float64 and the true front over all architectures.

    Raises:
        NasConfigError: Unknown benchmark, dataset, objective or device (listing what exists,
            with the nearest match), a missing data file, or tables whose rows do not agree.
    """
    _check_choice("benchmark", benchmark, BENCHMARKS)
    if benchmark == "fbnet" and dataset is not None:
        raise NasConfigError(
            f"benchmark 'fbnet' is cost-only and takes no dataset, but got {dataset=}; "
            "drop --dataset"
        )
    if benchmark == "nasbench201" and dataset is None:
        dataset = "cifar10"
    if isinstance(objectives, str):
        objectives = objectives.split(",")
    names = tuple(o.strip() if isinstance(o, str) else o for o in objectives)
    if not names:
        raise NasConfigError("give at least one objective, e.g. error,latency_ms@pixel3")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise NasConfigError(f"objective '{dupes[0]}' is listed twice; list each objective once")
    if {"error", "accuracy"} <= set(names):
        raise NasConfigError("'error' and 'accuracy' are the same objective; keep one")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not root.is_dir():
        raise NasConfigError(f"{root}: data folder not found; pass --data DIR")
    if benchmark == "fbnet":
        return load_fbnet(names, root)
    assert dataset is not None  # set above for nasbench201
    _check_choice("dataset", dataset, list(DATASETS))
    devices = list_devices(root)
    parsed = [_parse_objective(n, devices) for n in names]

    accuracy = _read_csv(root / _ACCURACY_FILE)
    space = load_space(benchmark)
    n = len(accuracy)
    if n != space.size() or not np.array_equal(accuracy["index"].to_numpy(), np.arange(n)):
        raise NasConfigError(
            f"{root / _ACCURACY_FILE}: expected rows 0..{space.size() - 1} in index order, "
            f"got {n} rows"
        )
    arch_strs = tuple(accuracy["arch_str"].astype(str))
    first = space.format(space.parse(arch_strs[0]))
    if first != arch_strs[0]:
        raise NasConfigError(
            f"{root / _ACCURACY_FILE}: arch_str {arch_strs[0]!r} is not in the canonical "
            f"form of space '{space.name}' ({first!r})"
        )

    latency = _read_csv(root / _HELP_FILE)
    if not np.array_equal(latency["arch_str"].to_numpy(), accuracy["arch_str"].to_numpy()):
        raise NasConfigError(
            f"{root / _HELP_FILE}: arch_str column differs from {_ACCURACY_FILE}'s; the two "
            "tables must list the NB201 architectures in the same index order"
        )

    hw = _read_csv(
        root / _HW360_FILE,
        usecols=["arch_idx", "rep_arch_idx", "device", "framework", "task"]
        + ["lat_ms_median", "energy_mj", "accuracy"],
    )
    pi5 = hw[(hw["device"] == _PI5[0]) & (hw["framework"] == _PI5[1]) & (hw["task"] == _PI5[2])]
    pi5 = pi5.sort_values("arch_idx")
    if not np.array_equal(pi5["arch_idx"].to_numpy(), np.arange(n)):
        raise NasConfigError(
            f"{root / _HW360_FILE}: expected one {'/'.join(_PI5)} row per NB201 index 0..{n - 1}"
        )
    # HW-NAS-Bench-360 indexes by NB201 index, without arch strings: check the order by its
    # CIFAR-100 accuracy, which differs from NATS' ori-test mean by at most 2.84 points.
    drift = np.abs(pi5["accuracy"].to_numpy() - accuracy["cifar100_test_acc"].to_numpy())
    if not float(np.mean(drift)) < 1.0:
        raise NasConfigError(
            f"{root / _HW360_FILE}: CIFAR-100 accuracies differ from {_ACCURACY_FILE}'s by "
            f"{float(np.mean(drift)):.2f} points on average; the arch_idx order does not match"
        )
    iso_class = pi5["rep_arch_idx"].to_numpy(dtype=np.int64)

    prefix = DATASETS[dataset]
    columns: list[np.ndarray] = []
    directions: list[str] = []
    for metric, device in parsed:
        if metric in _EXPENSIVE_METRICS:
            acc = accuracy[f"{prefix}_test_acc"].to_numpy(dtype=np.float64)
            columns.append(100.0 - acc if metric == "error" else acc)
            directions.append("minimize" if metric == "error" else "maximize")
        elif device == _PI5[0]:
            column = "lat_ms_median" if metric == "latency_ms" else "energy_mj"
            columns.append(pi5[column].to_numpy(dtype=np.float64))
            directions.append("minimize")
        else:
            columns.append(latency[device].to_numpy(dtype=np.float64))
            directions.append("minimize")
    values = np.column_stack(columns)
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        raise NasConfigError(
            f"{int(bad.sum())} architectures lack a finite value for {names}; first row "
            f"{int(np.flatnonzero(bad)[0])}"
        )
    front_idx = _front_idx(values, directions)
    logger.info(
        "%s/%s %s: %d architectures, %d isomorphism classes, %d on the true front",
        benchmark,
        dataset,
        ",".join(names),
        n,
        len(np.unique(iso_class)),
        len(front_idx),
    )
    return TabularProblem(
        benchmark=benchmark,
        dataset=dataset,
        space=space,
        arch_strs=arch_strs,
        names=names,
        directions=tuple(directions),
        values=_readonly(values),
        expensive=tuple(i for i, (m, _) in enumerate(parsed) if m in _EXPENSIVE_METRICS),
        iso_class=_readonly(iso_class),
        true_front_idx=_readonly(front_idx),
        true_front=_readonly(values[front_idx]),
        _rows={s: i for i, s in enumerate(arch_strs)},
    )
