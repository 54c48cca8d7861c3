"""Where a metric's value comes from, and axis labels that say so.

In a search, ``error``/``accuracy`` are measured (proxy training on the validation split),
``params``/``macs``/``peak_mem_bytes`` are exact counts of the architecture, and
``latency_ms@<device>``/``energy_mj@<device>`` are predicted by the device's cost model
(a lookup table or an analytic model), never timed on the device during the search.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.search._experiment import COST_PREFIXES, STATIC_METRICS, TRAINED_METRICS

__all__ = ["axis_label", "device_metrics", "metric_source", "reference_metric"]

ARROWS = {"minimize": "\u2193", "maximize": "\u2191"}  # ↓ lower is better, ↑ higher is better


def _is_device_metric(name: str) -> bool:
    quantity, at, device = name.partition("@")
    return quantity in COST_PREFIXES and bool(at) and bool(device)


def metric_source(name: str) -> str:
    """How a search obtains the value of metric ``name``.

    Args:
        name: A metric name as in an experiment's ``objectives``.

    Returns:
        ``"predicted"`` for cost-model metrics (``latency_ms@<device>``,
        ``energy_mj@<device>``), ``"measured"`` for trained metrics (``error``, ``accuracy``),
        ``"exact"`` for counts of the architecture (``params``, ``macs``, ``peak_mem_bytes``)
        and ``"unknown"`` for any other column.

    Example:
        >>> [metric_source(m) for m in ("latency_ms@pi5", "error", "params", "latency_ms")]
        ['predicted', 'measured', 'exact', 'unknown']
    """
    if _is_device_metric(name):
        return "predicted"
    if name in TRAINED_METRICS:
        return "measured"
    if name in STATIC_METRICS:
        return "exact"
    return "unknown"


def axis_label(name: str, direction: str, *, overlay: bool = False) -> str:
    """Axis label of an objective: its name, ``(predicted)`` for cost-model metrics, an arrow.

    Args:
        name: The metric name.
        direction: ``"minimize"`` or ``"maximize"``; the arrow points the better way.
        overlay: The axes also show measured values of this metric (finished models drawn on
            top of the search's points); the label then says which points are which.

    Returns:
        The label text.

    Example:
        >>> axis_label("latency_ms@cpu-x86", "minimize")
        'latency_ms@cpu-x86 (predicted) ↓'
        >>> axis_label("error", "minimize")
        'error ↓'
    """
    arrow = ARROWS[direction]
    if metric_source(name) == "predicted":
        if overlay:  # two lines: one would outgrow the axes it labels
            return f"{name} {arrow}\n(search: predicted; finished: measured)"
        return f"{name} (predicted) {arrow}"
    return f"{name} {arrow}"


def device_metrics(objectives: Sequence[str]) -> list[str]:
    """The objectives that are per-device cost-model metrics, in objective order.

    Example:
        >>> device_metrics(["error", "latency_ms@cpu-x86", "params", "energy_mj@pi5"])
        ['latency_ms@cpu-x86', 'energy_mj@pi5']
    """
    return [name for name in objectives if _is_device_metric(name)]


def reference_metric(objectives: Sequence[str]) -> str | None:
    """The objective that device metrics are plotted against, or None when there is none.

    ``error`` when it is an objective, else the first trained objective (``accuracy``), else
    the first objective that is not a device metric (``params`` in a cost-only search).

    Example:
        >>> reference_metric(["latency_ms@a", "accuracy", "params"])
        'accuracy'
        >>> reference_metric(["latency_ms@a", "energy_mj@b"]) is None
        True
    """
    if "error" in objectives:
        return "error"
    for name in objectives:
        if name in TRAINED_METRICS:
            return name
    for name in objectives:
        if not _is_device_metric(name):
            return name
    return None
