"""Tables for devices you can only time end to end: ``nas calibrate``.

Given N whole-model measurements ``(arch, latency_ms)`` and a prior cost model (an analytic
profile or another device's table), fit one multiplier per op label of the space plus a constant:

    latency(arch) = c + sum_g m_g * P_g(arch),   P_g(arch) = sum of prior(layer) over the layers
                                                  of arch whose op label is g

Layers that every architecture has (stem, head, classifier, reductions) form one group, so a
10-measurement fit has only (labels + 2) unknowns. The fit minimizes relative error (rows weighted
by 1/latency) with a ridge pull of every m_g towards the common scale s (the prior's scale on
this device), its strength chosen by leave-one-out error over a grid; with few measurements the
prior's relative op costs survive, with many the data decide. The result is an ordinary table
(kind ``calibrated``): every layer's latency is m_g x prior(layer), and c goes to
``model_overhead_ms``.

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


@dataclass(frozen=True)
class Calibration:
    """The fitted table and how the fit went."""

    table: LookupTable
    multipliers: dict[str, float]
    constant_ms: float
    ridge: float
    loo_mape_pct: float


def _group(layer: Layer, labels: set[str]) -> str:
    return layer.label if layer.label in labels and layer.name != "stem" else _FIXED


def _design(
    space: SearchSpace,
    archs: Sequence[Architecture],
    prior: CostModel,
    groups: list[str],
    labels: set[str],
) -> np.ndarray:
    base = prior.estimate([]).latency_ms
    out = np.zeros((len(archs), len(groups)))
    cache: dict[str, float] = {}
    for row, arch in enumerate(archs):
        for layer in space.layers(arch):
            cost = cache.get(layer.signature)
            if cost is None:
                cost = cache[layer.signature] = prior.estimate([layer]).latency_ms - base
            out[row, groups.index(_group(layer, labels))] += cost
    return out


def _fit(P: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """(c, m) minimizing sum(((c + P m - y) / y)^2) + lam * n * sum((m - s)^2 * scale^2)."""
    n, k = P.shape
    s = float(np.median(y / np.maximum(P.sum(1), 1e-12)))
    w = 1.0 / y
    A = np.c_[np.ones(n), P] * w[:, None]
    b = y * w
    if lam > 0:
        scale = P.mean(0) / y.mean()  # penalty in the same (relative) units as the residuals
        R = np.c_[np.zeros((k, 1)), np.diag(scale)] * math.sqrt(lam * n)
        A = np.r_[A, R]
        b = np.r_[b, math.sqrt(lam * n) * scale * s]
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    return float(sol[0]), sol[1:]


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
    P = _design(space, archs, prior, groups, labels)
    used = P.any(0)  # a label none of the measured architectures contains keeps the common scale
    best: tuple[float, float] | None = None
    for lam in _LAMBDAS if len(y) > 3 else (1.0,):
        errors = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c, m = _fit(P[keep][:, used], y[keep], lam)
            errors.append(abs(c + P[i, used] @ m - y[i]) / y[i])
        score = float(np.mean(errors))
        if best is None or score < best[0] - 1e-12:
            best = (score, lam)
    assert best is not None
    loo, lam = best
    c, m_used = _fit(P[:, used], y, lam)
    s = float(np.median(y / np.maximum(P.sum(1), 1e-12)))
    m = np.full(len(groups), s)
    m[used] = m_used
    m = np.maximum(m, 0.0)  # a negative cost is never physical
    multipliers = dict(zip(groups, (float(v) for v in m), strict=True))
    base = prior.estimate([]).latency_ms
    entries = []
    for layer in space.possible_layers():
        cost = (prior.estimate([layer]).latency_ms - base) * multipliers[_group(layer, labels)]
        entries.append(
            entry_from_layer(
                layer,
                latency_ms=cost,
                energy_mj=0.0,
                kind="calibrated",
                source=f"prior x {multipliers[_group(layer, labels)]:.4g}",
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
            "multipliers": multipliers,
            "constant_ms": c,
            "ridge": lam,
            "loo_mape_pct": 100 * loo,
            "fitted": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "model_overhead_ms": max(c, 0.0) if c > -0.5 * float(y.min()) else 0.0,
        "unread_layers": unread,
    }
    table = LookupTable(device, meta, {e.key: e for e in entries})
    return Calibration(table, multipliers, c, lam, 100 * loo)
