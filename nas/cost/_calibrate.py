"""Tables for devices you can only time end to end: ``nas calibrate``.

Given N whole-model measurements ``(arch, latency_ms)`` and a prior cost model (an analytic
profile or another device's table), fit one multiplier per op label of the space plus a constant:

    latency(arch) = c + sum_g m_g * P_g(arch),   P_g(arch) = sum of prior(layer) over the layers
                                                  of arch whose op label is g

Layers that every architecture has (stem, head, classifier, reductions) form one group, so a
10-measurement fit has only (labels + 2) unknowns. A label the prior charges nothing for (the
identity and zero edges of a profile with ``free_identity``) has no cost to multiply; it gets a
fitted cost per layer instead (``k_g x layers``, pulled towards the prior's zero). The fit
minimizes relative error (rows weighted by 1/latency) with a ridge pull of every m_g towards
the common scale s (the prior's scale on this device), its strength chosen by leave-one-out
error over a grid; with few measurements the prior's relative op costs survive, with many the
data decide. The result is an ordinary table (kind ``calibrated``): every layer's latency is
m_g x prior(layer) (or k_g), and c goes to ``model_overhead_ms``.

``unread="skipped"`` is for devices whose runtime drops layers whose output nothing reads (graph
runtimes such as TFLite, ONNX Runtime, TensorRT; eager PyTorch runs them): the fit and the
table's predictions then charge only the layers of ``space.graph_pruned(arch)``, and the table
says so (``unread_layers: skipped``). On NAS-Bench-201 this is what separates HW-NAS-Bench's
TFLite devices (pixel3, raspi4) from the others. Ten measurements do not reliably tell the two
apart (a choice by held-out error picked wrongly on 10 of 27 HELP devices), so it is the
user's to state.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas._errors import NasConfigError
from nas.cost._base import CostModel
from nas.cost._table import UNREAD_LAYERS, LookupTable, entry_from_layer
from nas.space import Architecture, Layer, SearchSpace

__all__ = ["Calibration", "calibrate"]

_FIXED = "(fixed layers)"
_LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: measured latencies this many times the prior's (or 1/this) are likely in another unit; real
#: devices stay within it (HELP's 27 devices against the shipped analytic priors: 0.64-127x)
_UNIT_RATIO = 300.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """The fitted table and how the fit went."""

    table: LookupTable
    multipliers: dict[str, float]
    constant_ms: float
    ridge: float
    loo_mape_pct: float
    #: each measurement's latency as predicted by the fit on the others (ms), in input order
    loo_predictions: tuple[float, ...] = ()


def _group(layer: Layer, labels: set[str]) -> str:
    return layer.label if layer.label in labels and layer.name != "stem" else _FIXED


def _design(
    space: SearchSpace,
    archs: Sequence[Architecture],
    prior: CostModel,
    groups: list[str],
    labels: set[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Per architecture and group: the prior's latency of its layers, and their number."""
    base = prior.estimate([]).latency_ms
    cost_sum = np.zeros((len(archs), len(groups)))
    count = np.zeros((len(archs), len(groups)))
    cache: dict[str, float] = {}
    for row, arch in enumerate(archs):
        for layer in space.layers(arch):
            cost = cache.get(layer.signature)
            if cost is None:
                cost = cache[layer.signature] = prior.estimate([layer]).latency_ms - base
            col = groups.index(_group(layer, labels))
            cost_sum[row, col] += cost
            count[row, col] += 1
    return cost_sum, count


def _fit(P: np.ndarray, N: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """(c, [m, k]) minimizing sum(((c + P m + N k - y) / y)^2) + the ridge terms
    lam * n * sum((m - s)^2 * scale_P^2) + lam * n * sum(k^2 * scale_N^2), with c >= 0.

    ``N`` counts the layers of the groups the prior calls free: they get a per-layer cost ``k``
    pulled towards the prior's zero instead of a multiplier of nothing. A negative constant
    (a model that runs in less than no time) is not one a table can hold: the fit is then
    made again with c = 0, so the table saved is the model fitted and scored.
    """
    c, sol = _solve(P, N, y, lam, constant=True)
    if c >= 0:
        return c, sol
    return 0.0, _solve(P, N, y, lam, constant=False)[1]


def _solve(
    P: np.ndarray, N: np.ndarray, y: np.ndarray, lam: float, *, constant: bool
) -> tuple[float, np.ndarray]:
    n, k = P.shape
    s = float(np.median(y / np.maximum(P.sum(1), 1e-12)))
    w = 1.0 / y
    A = np.c_[np.ones(n) * constant, P, N] * w[:, None]
    b = y * w
    if lam > 0:
        # penalties in the same (relative) units as the residuals
        scale = np.r_[P.mean(0), N.mean(0) * s * _typical(P)] / y.mean()
        R = np.c_[np.zeros((len(scale), 1)), np.diag(scale)] * math.sqrt(lam * n)
        A = np.r_[A, R]
        b = np.r_[b, math.sqrt(lam * n) * np.r_[scale[:k] * s, np.zeros(N.shape[1])]]
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)  # (a zero column: its coefficient is 0)
    return float(sol[0]), sol[1:]


def _warn_scale(scale: float, prior: CostModel, source: str) -> None:
    """Warn when the measurements look like another unit than ms against the prior."""
    if 1 / _UNIT_RATIO <= scale <= _UNIT_RATIO:
        return
    unit = "microseconds" if scale > 1 else "seconds"
    log.warning(
        "%s: the measured latencies are %.3gx the prior's (%s); if they are in %s, convert "
        "them to ms (column latency_ms); if the device is really that much %s, ignore this",
        source or "calibrate",
        scale,
        getattr(prior, "device", prior),
        unit,
        "slower" if scale > 1 else "faster",
    )


def _typical(P: np.ndarray) -> float:
    """The prior's typical cost of one layer's worth of a group (for scaling the k penalty)."""
    nonzero = P[P > 0]
    return float(np.median(nonzero)) if nonzero.size else 1.0


def calibrate(
    space: SearchSpace,
    measurements: Sequence[tuple[Architecture, float]],
    prior: CostModel,
    *,
    device: str,
    source: str = "",
    unread: str = "run",
) -> Calibration:
    """Fit a table for ``device`` from end-to-end latencies, starting from ``prior``.

    ``unread``: ``run`` (every layer runs) or ``skipped`` (the runtime drops unread layers).
    """
    if unread not in UNREAD_LAYERS:
        raise NasConfigError(
            f"unknown unread-layers mode '{unread}'", allowed=list(UNREAD_LAYERS), value=unread
        )
    if len(measurements) < 3:
        raise NasConfigError(f"calibration needs at least 3 measurements, got {len(measurements)}")
    archs = [a for a, _ in measurements]
    if unread == "skipped":
        archs = [space.graph_pruned(a) for a in archs]
    y = np.array([float(v) for _, v in measurements])
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise NasConfigError("measured latencies must be finite and > 0 ms")
    # the searchable op labels: the string choices of the space's parameters
    labels = {v for choices in space.parameters().values() for v in choices if isinstance(v, str)}
    groups = sorted(labels) + [_FIXED]
    base = prior.estimate([]).latency_ms
    possible = space.possible_layers()
    prior_cost = {layer.signature: prior.estimate([layer]).latency_ms - base for layer in possible}
    # groups the prior charges nothing for (identity and zero edges of a compiled runtime) get a
    # per-layer cost instead of a multiplier: the device may well charge them something
    free = np.array(
        [
            all(prior_cost[x.signature] <= 0 for x in possible if _group(x, labels) == g)
            for g in groups
        ]
    )
    P, N = _design(space, archs, prior, groups, labels)
    used = P.any(0)  # a label none of the measured architectures contains keeps the common scale
    counted = free & N.any(0)
    best: tuple[float, float, list[float]] | None = None
    for lam in _LAMBDAS if len(y) > 3 else (1.0,):
        predicted = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c, sol = _fit(P[keep][:, used], N[keep][:, counted], y[keep], lam)
            predicted.append(float(c + np.r_[P[i, used], N[i, counted]] @ sol))
        score = float(np.mean(np.abs(np.array(predicted) - y) / y))
        if best is None or score < best[0] - 1e-12:
            best = (score, lam, predicted)
    assert best is not None
    loo, lam, loo_predicted = best
    c, sol = _fit(P[:, used], N[:, counted], y, lam)
    s = float(np.median(y / np.maximum(P.sum(1), 1e-12)))
    _warn_scale(s, prior, source)
    fitted = np.where(free, counted, used)
    unmeasured = [g for g, f in zip(groups, fitted, strict=True) if not f]
    if unmeasured:
        log.warning(
            "%s: %s %s in none of the %d measured architectures: %s the prior's cost x %.3g "
            "(the common scale), not a fitted one; measure an architecture that uses %s",
            source or "calibrate",
            ", ".join(f"op '{g}'" for g in unmeasured),
            "is" if len(unmeasured) == 1 else "are",
            len(y),
            "its cost is" if len(unmeasured) == 1 else "their costs are",
            s,
            "it" if len(unmeasured) == 1 else "them",
        )
    m = np.full(len(groups), s)
    m[used] = sol[: used.sum()]
    per_layer = np.zeros(len(groups))
    per_layer[counted] = sol[used.sum() :]
    # a negative cost is never physical
    multipliers = dict(zip(groups, (float(v) for v in np.maximum(m, 0.0)), strict=True))
    per_layer_ms = {
        g: float(v) for g, v, f in zip(groups, np.maximum(per_layer, 0.0), free, strict=True) if f
    }
    entries = []
    for layer in possible:
        group = _group(layer, labels)
        if group in per_layer_ms:
            cost, source = per_layer_ms[group], f"{per_layer_ms[group]:.4g} ms per layer"
        else:
            cost = prior_cost[layer.signature] * multipliers[group]
            source = f"prior x {multipliers[group]:.4g}"
        entries.append(
            entry_from_layer(
                layer, latency_ms=cost, energy_mj=0.0, kind="calibrated", source=source
            )
        )
    meta = {
        "description": f"calibrated from {len(y)} end-to-end measurements",
        "spaces": {space.name: space.hash},
        "protocol": {"statistic": "p50", "batch": 1, "dtype": "fp32"},
        "value_kinds": {"latency": "calibrated", "energy": "absent (latency-only measurements)"},
        "calibration": {
            "prior": getattr(prior, "device", str(prior)),
            "measurements": len(y),
            "source": source,
            "multipliers": {g: v for g, v in multipliers.items() if g not in per_layer_ms},
            "unmeasured": unmeasured,
            "per_layer_ms": per_layer_ms,
            "constant_ms": c,
            "ridge": lam,
            "loo_mape_pct": 100 * loo,
            "fitted": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "model_overhead_ms": c,
        "unread_layers": unread,
    }
    table = LookupTable(device, meta, {e.key: e for e in entries})
    return Calibration(table, multipliers, c, lam, 100 * loo, tuple(loo_predicted))
