"""Parallel coordinates of many objectives: one vertical axis per objective, one line per trial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from nas._errors import NasConfigError
from nas.report._labels import ARROWS, metric_source
from nas.report._plots import _DOMINATED_COLOR, _LOG_RATIO, _check_inputs
from nas.search._pareto import to_minimization

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_parallel", "scale_for_parallel"]

_AXIS_WIDTH_IN = 1.9  # horizontal room per objective axis, inches
_CMAP = "viridis"


def _number(value: float) -> str:
    """Short tick text: 150000 -> "150k", 0.0512 -> "0.0512"."""
    if abs(value) >= 1e4:
        return str(EngFormatter(places=1, sep="")(value))
    return f"{value:.4g}"


def scale_for_parallel(
    values: np.ndarray, directions: Sequence[str]
) -> tuple[np.ndarray, list[bool]]:
    """Map objective values to [0, 1] per column, 0 = best observed and 1 = worst observed.

    Maximized columns are negated first, so lower is better on every axis. A column whose
    values are all positive and span more than two decades is scaled on log10 (as the scatter
    plots switch to a log axis). A constant column maps to 0.5. Non-finite values stay NaN.

    Args:
        values: Float (n, k) objective values.
        directions: ``"minimize"`` or ``"maximize"`` for each column.

    Returns:
        The (n, k) scaled array and, per column, whether it was scaled on log10.

    Example:
        >>> scaled, log = scale_for_parallel(np.array([[1.0, 0.9], [3.0, 0.5]]),
        ...                                  ["minimize", "maximize"])
        >>> scaled.tolist(), log
        ([[0.0, 0.0], [1.0, 1.0]], [False, False])
    """
    arr = to_minimization(values, directions)
    arr[~np.isfinite(arr)] = np.nan
    scaled = np.full_like(arr, np.nan)
    logs: list[bool] = []
    for j in range(arr.shape[1]):
        col = arr[:, j]
        finite = col[np.isfinite(col)]
        use_log = bool(
            finite.size and finite.min() > 0 and finite.max() / finite.min() > _LOG_RATIO
        )
        logs.append(use_log)
        if finite.size == 0:
            continue
        if use_log:
            col = np.log10(col)
            finite = np.log10(finite)
        lo, hi = finite.min(), finite.max()
        scaled[:, j] = (col - lo) / (hi - lo) if hi > lo else np.where(np.isnan(col), np.nan, 0.5)
    return scaled, logs


def plot_parallel(
    frame: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Parallel coordinates of the feasible trials, Pareto members coloured.

    Every objective gets a vertical axis scaled to [0, 1] over the drawn trials by
    :func:`scale_for_parallel`: 0 (bottom) is the best observed value and 1 (top) the worst,
    whatever the direction, so a line that stays low is good everywhere; the y axis says so.
    Each axis is labelled with the objective, its direction arrow, "(predicted)" for cost-model
    metrics, the raw best and worst values, and "(log scale)" where it was scaled on log10.
    Pareto members are drawn in colour (ordered by the first objective), dominated feasible
    trials faint grey; constraint violators and failed trials are left out and counted in the
    legend.

    Args:
        frame: One row per trial, as for :func:`nas.report.plot_pareto_pairs`.
        objectives: Column names of the k >= 2 objectives.
        directions: ``"minimize"`` or ``"maximize"`` for each objective.
        title: Axes title, if any.
        ax: Axes to draw into; None creates a new figure with one axes.

    Returns:
        The axes drawn into.

    Raises:
        NasConfigError: Fewer than two objectives, a column is missing, or the directions do
            not match the objectives.
    """
    _check_inputs(frame, objectives, directions)
    k = len(objectives)
    if k < 2:
        raise NasConfigError(
            f"parallel coordinates need at least 2 objectives, but got {list(objectives)}"
        )
    values = frame[list(objectives)].to_numpy(dtype=float)  # (n, k)
    finite = np.all(np.isfinite(values), axis=1)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    pareto = frame["pareto"].to_numpy(dtype=bool) & finite & feasible
    shown = finite & feasible
    n_hidden = int(np.count_nonzero(~shown))
    scaled = np.full_like(values, np.nan)
    logs = [False] * k
    if shown.any():
        scaled[shown], logs = scale_for_parallel(values[shown], directions)

    if ax is None:
        ax = Figure(
            figsize=(max(6.0, _AXIS_WIDTH_IN * k), 4.8), layout="constrained"
        ).add_subplot()
    xs = np.arange(k, dtype=float)
    dominated = shown & ~pareto
    ax.add_collection(
        LineCollection(
            [np.column_stack([xs, row]) for row in scaled[dominated]],
            colors=_DOMINATED_COLOR,
            linewidths=0.8,
            alpha=0.35,
            zorder=1,
        )
    )
    members = np.flatnonzero(pareto)
    members = members[np.argsort(scaled[members, 0], kind="stable")]
    cmap = colormaps[_CMAP]
    colors = cmap(np.linspace(0.0, 0.9, max(len(members), 1)))[: len(members)]
    ax.add_collection(
        LineCollection(
            [np.column_stack([xs, scaled[i]]) for i in members],
            colors=colors,
            linewidths=1.8,
            alpha=0.95,
            zorder=3,
        )
    )
    if len(members):
        ax.scatter(
            np.tile(xs, len(members)),
            scaled[members].ravel(),
            s=14,
            c=np.repeat(colors, k, axis=0),
            zorder=4,
        )
    for x in xs:
        ax.axvline(x, color="0.3", linewidth=0.8, zorder=2)

    ticks = []
    for j, name in enumerate(objectives):
        col = values[shown, j]
        # "latency_ms@cpu (predicted) ↓" is too wide for one line under a narrow axis
        lines = [f"{name} {ARROWS[directions[j]]}"]
        if metric_source(name) == "predicted":
            lines.append("(predicted)")
        if col.size:
            best, worst = col.min(), col.max()
            if directions[j] == "maximize":
                best, worst = worst, best
            lines += [f"best {_number(best)}", f"worst {_number(worst)}"]
        if logs[j]:
            lines.append("(log scale)")
        ticks.append("\n".join(lines))
    ax.set_xticks(xs, ticks, fontsize="small")
    ax.set_xlim(-0.25, k - 0.75)
    ax.set_ylim(-0.04, 1.2)  # the band above 1 holds the legend, clear of the lines
    ax.set_yticks([0.0, 0.5, 1.0], ["0 best", "0.5", "1 worst"])
    ax.set_ylabel("normalized, lower is better on every axis")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color=cmap(0.45), linewidth=1.8),
        Line2D([], [], color=_DOMINATED_COLOR, linewidth=0.8),
    ]
    labels = [
        f"Pareto ({len(members)}), coloured by {objectives[0]} (dark = best)",
        f"dominated ({int(np.count_nonzero(dominated))})",
    ]
    if n_hidden:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(f"{n_hidden} violating or failed not shown")
    ax.legend(handles, labels, loc="upper center", ncols=len(handles), fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax
