"""How far a measured table is from whole models timed end to end: ``nas validate-table``.

Every model is timed between runs of the reference model that ``nas profile`` timed when it
built the table (:func:`nas.cost._profile.against_reference`), so the figures can be read both
as measured and corrected for the speed the machine has now; the timing is also scored against
itself (:attr:`ValidationReport.repeatability`), the ceiling of any table on that machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nas._errors import NasConfigError
from nas._timing import fixed_threads
from nas.cost._profile import (
    CALIBRATION_SEED,
    ProfileConfig,
    against_reference,
    prepare,
    steady_allocator,
)
from nas.cost._table import LookupTable
from nas.space import SearchSpace

__all__ = ["ValidationReport", "validate_table"]


def _accuracy(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    from scipy import stats

    err = (pred - meas) / meas
    return {
        "within_5pct": float(np.mean(np.abs(err) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "mape_pct": float(100 * np.mean(np.abs(err))),
        "rmspe_pct": float(100 * math.sqrt(np.mean(err**2))),
        "kendall_tau": float(stats.kendalltau(pred, meas).statistic),
        "spearman": float(stats.spearmanr(pred, meas).statistic),
    }


@dataclass(frozen=True)
class ValidationReport:
    """How far a table's predictions are from end-to-end measurements.

    ``raw`` compares with the latencies as measured. A shared or power-managed machine changes
    speed over minutes (measured here: the same models 20-30% slower for a minute, then back),
    so every model is timed between two runs of the reference model that ``nas profile`` timed
    when it built the table, in each of the interleaved rounds, and ``drift_corrected`` divides
    the model's latency in each round by the speed ratio of the reference runs beside it in
    that round (reference now / reference then) and takes the median over rounds: what remains
    is the table's own error. Both are reported; ``drift_ratios`` holds, per model, measured
    over drift-corrected latency.

    ``repeatability`` measures the measurement: each round's drift-corrected latency against
    the median of the same model's other rounds. Where a second measurement lands within 10%
    of the first for only 70% of models, no table reaches 99% within 10% on that machine.
    """

    device: str
    space: str
    n: int
    raw: dict[str, float]
    drift_corrected: dict[str, float]
    drift_ratios: tuple[float, ...]  # per model: reference now / reference in table
    rows: tuple[tuple[str, float, float, float], ...]  # (arch, predicted, measured, ratio)
    # drift-corrected, each round of a model against its other rounds (empty with one round)
    repeatability: dict[str, float] = field(default_factory=dict)

    @property
    def within_10pct(self) -> float:
        return self.raw["within_10pct"]

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready values (an undefined figure, such as Kendall's tau of
        identical predictions, is ``None``: JSON has no NaN)."""

        def finite(figures: Mapping[str, Any]) -> dict[str, Any]:
            return {
                k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in figures.items()
            }

        return {
            "device": self.device,
            "space": self.space,
            "n": self.n,
            **finite(self.raw),
            "drift_corrected": finite(self.drift_corrected),
            "drift_ratios": list(self.drift_ratios),
            "repeatability": self.repeatability,
        }


def timed_as_table(config: ProfileConfig, table: LookupTable) -> ProfileConfig:
    """``config`` with the table's dtype, batch and runtime: what its entries were measured
    with, so what models are timed with to check it (and whose fingerprint, an int8 table's
    ONNX Runtime version included, is compared with the table's)."""
    protocol = table.meta.get("protocol") or {}
    return replace(
        config,
        dtype=table.dtype,
        batch=table.batch,
        runtime=protocol.get("runtime", "torch"),  # tables before runtimes: all torch
    )


def validate_table(
    space: SearchSpace,
    table: LookupTable,
    config: ProfileConfig,
    *,
    n: int = 100,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> ValidationReport:
    """Measure ``n`` random architectures end to end and compare with the table's prediction.

    ``config`` gives the device, threads and timing; the models run at the table's own dtype,
    batch and runtime, the ones its entries were measured with.
    """
    config = timed_as_table(config, table)
    if seed == CALIBRATION_SEED:
        raise NasConfigError(f"--seed {seed} is the seed the table's overhead was fitted on")
    steady_allocator()
    table = table.bind(space)
    archs = space.random_distinct(min(n, space.size()), seed)  # fewer in a smaller space
    fix = (table.meta.get("in_model") or {}).get(space.name, {})
    if "reference_arch" not in fix:
        raise NasConfigError(
            f"table '{table.device}' has no reference model for space '{space.name}' (imported "
            "or calibrated tables cannot be timed here); validate a table measured by nas profile"
        )
    if fix.get("space_hash", space.hash) != space.hash:
        command = table.meta.get("profile_commands", {}).get(space.name) or "nas profile"
        raise NasConfigError(
            f"table '{table.device}': its in-model correction for space '{space.name}' was "
            f"fitted on another version of it (hash {fix['space_hash']}, not {space.hash}); "
            f"refit it with: {command}"
        )
    reference = space.parse(fix["reference_arch"])
    rows = []
    round_errors: list[float] = []
    with fixed_threads(config.threads):
        ref_run = prepare(space.build(reference, seed=0), space.input_shape, config)
        timed = against_reference(space, ref_run, archs, config, fix["reference_ms"])
        for part, found, errors in timed:
            for arch, (measured, ratio) in zip(part, found, strict=True):
                predicted = table.estimate(space.layers(arch)).latency_ms
                rows.append((space.format(arch), predicted, measured, ratio))
            round_errors += errors
            if progress:
                progress(len(rows), n, rows[-1][0])
    pred = np.array([r[1] for r in rows])
    meas = np.array([r[2] for r in rows])
    ratio_arr = np.array([r[3] for r in rows])
    return ValidationReport(
        device=table.device,
        space=space.name,
        n=n,
        raw=_accuracy(pred, meas),
        drift_corrected=_accuracy(pred, meas / ratio_arr),
        drift_ratios=tuple(float(r) for r in ratio_arr),
        rows=tuple(rows),
        repeatability=_repeatability(np.array(round_errors)),
    )


def _repeatability(errors: np.ndarray) -> dict[str, float]:
    """The measurement's own agreement with itself (:func:`_round_errors` of every model): no
    table can be expected to land within 10% of a measurement much more often than another
    measurement of the same model does."""
    if not len(errors):
        return {}
    return {
        "within_5pct": float(np.mean(np.abs(errors) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(errors) <= 0.10)),
        "mape_pct": float(100 * np.mean(np.abs(errors))),
    }
