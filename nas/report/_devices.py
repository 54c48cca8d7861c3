"""Per-device Pareto fronts side by side: one panel per device metric of the objectives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from nas._errors import NasConfigError
from nas.report._labels import axis_label, device_metrics, reference_metric
from nas.report._plots import (
    _DOMINATED_COLOR,
    _PARETO_COLOR,
    _SUBPLOT_SIZE_IN,
    _VIOLATES_COLOR,
    _check_inputs,
    _use_log,
)
from nas.search._pareto import pareto_mask

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_pareto_devices"]

_MAX_COLUMNS = 4


def plot_pareto_devices(
    frame: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    *,
    reference: str | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per device metric: ``reference`` against that device's predicted cost.

    Each panel is the trade-off a deployment on that device faces: its 2-D Pareto front
    (feasible trials, one per distinct ``arch_id``, not dominated in ``reference`` and this
    device's metric) is highlighted and joined by its staircase. Members of the k-dimensional
    Pareto set (the ``pareto`` column) that are not on this device's front are drawn as hollow
    circles, other feasible trials faint, constraint violators as red ``x``. All panels share
    the y axis, so fronts on different devices compare at a glance.

    Args:
        frame: One row per trial, as for :func:`nas.report.plot_pareto_pairs` (objective
            columns, bool ``feasible`` and ``pareto``; ``arch_id`` when present is used to count
            repeated architectures once).
        objectives: Column names of the k objectives.
        directions: ``"minimize"`` or ``"maximize"`` for each objective.
        reference: The objective on the y axis; default :func:`nas.report.reference_metric`
            (``error``, else the first trained objective, else the first non-device one).
        title: Figure title, if any.

    Returns:
        A new figure with one axes per device metric (``latency_ms@<device>`` or
        ``energy_mj@<device>``) among ``objectives``, in objective order.

    Raises:
        NasConfigError: A column is missing, the directions do not match, no objective is a
            device metric, or there is no objective (or an unknown one) to plot against.
    """
    _check_inputs(frame, objectives, directions)
    devices = device_metrics(objectives)
    if not devices:
        raise NasConfigError(
            f"objectives {list(objectives)} hold no device metric (latency_ms@<device> or "
            "energy_mj@<device>); there is nothing to plot per device"
        )
    reference = reference if reference is not None else reference_metric(objectives)
    if reference is None:
        raise NasConfigError(
            f"objectives {list(objectives)} are all device metrics; pass reference= naming "
            "one to plot the others against"
        )
    if reference not in objectives or reference in devices:
        raise NasConfigError(
            f"reference must be an objective that is not a device metric, but got {reference!r}",
            allowed=[o for o in objectives if o not in devices],
            value=reference,
        )
    iy = list(objectives).index(reference)
    y = frame[reference].to_numpy(dtype=float)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    pareto = frame["pareto"].to_numpy(dtype=bool)
    if "arch_id" in frame.columns:
        first = (~frame["arch_id"].duplicated() | frame["arch_id"].isna()).to_numpy(bool)
    else:
        first = np.ones(len(frame), dtype=bool)

    n_cols = min(len(devices), _MAX_COLUMNS)
    n_rows = math.ceil(len(devices) / n_cols)
    fig = Figure(
        figsize=(_SUBPLOT_SIZE_IN[0] * n_cols, _SUBPLOT_SIZE_IN[1] * n_rows),
        layout="constrained",
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=True).ravel()
    for ax in axes[len(devices) :]:
        ax.set_visible(False)
    for ax, device in zip(axes, devices, strict=False):
        x = frame[device].to_numpy(dtype=float)
        dx = directions[list(objectives).index(device)]
        shown = np.isfinite(x) & np.isfinite(y)
        candidates = shown & feasible & first
        front = pareto_mask(np.column_stack([x, y]), [dx, directions[iy]], candidates)
        others = shown & feasible & pareto & ~front
        dominated = shown & feasible & ~front & ~others
        violates = shown & ~feasible

        layers: list[tuple[np.ndarray, dict[str, Any]]] = [
            (
                dominated,
                {
                    "s": 14,
                    "color": _DOMINATED_COLOR,
                    "alpha": 0.5,
                    "linewidths": 0,
                    "label": "dominated",
                    "zorder": 1,
                },
            ),
            (
                violates,
                {
                    "s": 22,
                    "color": _VIOLATES_COLOR,
                    "marker": "x",
                    "alpha": 0.8,
                    "label": "violates constraints",
                    "zorder": 2,
                },
            ),
            (
                others,
                {
                    "s": 36,
                    "facecolors": "none",
                    "edgecolors": _PARETO_COLOR,
                    "linewidths": 1.0,
                    "zorder": 3,
                    "label": "Pareto in all objectives, not on this device's front",
                },
            ),
            (
                front,
                {
                    "s": 40,
                    "color": _PARETO_COLOR,
                    "edgecolors": "black",
                    "linewidths": 0.5,
                    "label": "front on this device",
                    "zorder": 5,
                },
            ),
        ]
        for selected, style in layers:
            ax.scatter(x[selected], y[selected], **style)
        if np.count_nonzero(front) > 1:
            order = np.argsort(x[front], kind="stable")
            ax.plot(
                x[front][order],
                y[front][order],
                # as in plot_pareto_pairs: hold y until the next member ("post") for a
                # minimized x, drop to the next member's y first ("pre") for a maximized one
                drawstyle="steps-post" if dx == "minimize" else "steps-pre",
                color=_PARETO_COLOR,
                linewidth=1.2,
                alpha=0.8,
                zorder=4,
            )
        ax.set_title(f"{device}: {int(np.count_nonzero(front))} on its front", fontsize="medium")
        ax.set_xlabel(axis_label(device, dx))
        _use_log(ax, "x", x[shown])
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[::n_cols]:
        ax.set_ylabel(axis_label(reference, directions[iy]))
    _use_log(axes[0], "y", y[np.isfinite(y)])

    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles[::-1],  # front first
        labels[::-1],
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize="small",
    )
    if title is not None:
        fig.suptitle(title)
    return fig
