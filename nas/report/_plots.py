"""Report figures: pairwise Pareto scatter plots and the hypervolume curve.

Figures are built as bare :class:`matplotlib.figure.Figure` objects, so nothing here imports
pyplot or selects a backend; saving to PNG goes through Agg regardless of the active backend.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from nas._errors import NasConfigError
from nas._io import atomic_path
from nas.report._labels import axis_label
from nas.search._pareto import check_directions

if TYPE_CHECKING:
    import pandas as pd

    from nas.search._pareto import Normalization

__all__ = ["plot_hypervolume", "plot_pareto_pairs", "save_figure"]

_PARETO_COLOR = "tab:blue"
_DOMINATED_COLOR = "0.7"
_VIOLATES_COLOR = "tab:red"
# An axis whose positive values span more than this ratio (2 decades) is drawn in log scale.
_LOG_RATIO = 100.0
_MEASURED_MARKERS = ("D", "s", "^", "v", "P", "*", "X", "p")
_SUBPLOT_SIZE_IN = (4.5, 4.0)  # (width, height) of one panel in inches
_MAX_COLUMNS = 3
_GOLDEN = 0.6180339887498949  # (sqrt(5) - 1) / 2
_DPI = 120


def _check_inputs(
    frame: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]
) -> None:
    if isinstance(objectives, str) or isinstance(directions, str):
        raise NasConfigError("objectives and directions must be sequences of strings, not str")
    if len(objectives) == 0:
        raise NasConfigError("objectives must name at least one column, but got none")
    if len(set(objectives)) != len(objectives):
        raise NasConfigError(f"objectives must be distinct, but got {list(objectives)}")
    check_directions(directions, len(objectives), what="objectives")
    for column in [*objectives, "feasible", "pareto"]:
        if column not in frame.columns:
            raise NasConfigError(
                f"frame has no column {column!r}",
                allowed=[str(c) for c in frame.columns],
                value=column,
            )


def _use_log(ax: Axes, axis: str, values: np.ndarray) -> None:
    """Switch ``axis`` ("x" or "y") to log scale when its positive values span > 2 decades."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    axis_obj = ax.xaxis if axis == "x" else ax.yaxis
    if np.abs(finite).max() >= 1e4:  # 150000 -> "150k": long tick labels would collide
        axis_obj.set_major_formatter(EngFormatter(sep=""))
    if np.any(finite <= 0):
        return
    if finite.max() / finite.min() > _LOG_RATIO:
        if axis == "x":
            ax.set_xscale("log")
        else:
            ax.set_yscale("log")


def plot_pareto_pairs(
    frame: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    *,
    title: str | None = None,
    measured: pd.DataFrame | None = None,
) -> Figure:
    """Scatter plots of every pair of objectives with the Pareto set highlighted.

    Args:
        frame: One row per trial with a float column per objective (NaN for failed trials),
            a bool column ``feasible`` (constraints satisfied) and a bool column ``pareto``
            (member of the k-dimensional Pareto set, computed by the caller).
        objectives: Column names of the k objectives.
        directions: ``"minimize"`` or ``"maximize"`` for each objective.
        title: Figure title, if any.
        measured: Measured models to overlay (fine-tuned and compressed variants): one row
            per model with a ``label`` column and the objective columns (NaN where a metric
            was not measured; that model is left out of those panels). Drawn with their own
            markers, so measured and predicted points are told apart; the label of a
            cost-model axis with measured values adds "(search: predicted; finished: measured)".

    Axis labels carry the better direction as an arrow, and cost-model metrics
    (``latency_ms@<device>``, ``energy_mj@<device>``) are marked "(predicted)".

    Returns:
        A new figure with one axes per unordered pair of objectives (k(k-1)/2 of them; one
        strip plot when k == 1). Each panel shows every trial with finite values for its two
        objectives (a candidate rejected by a cheap constraint before training still appears in
        the panels of its free metrics). Legend counts: Pareto = feasible and ``pareto``,
        dominated = feasible, finite in every objective and not ``pareto``, violates
        constraints = not ``feasible`` with at least one finite objective; trials with no
        finite objective (failed) are only counted in the legend title. For k == 2 the Pareto
        members are joined by the staircase of the 2-D front.

    Raises:
        NasConfigError: A column is missing or the directions do not match the objectives.
    """
    _check_inputs(frame, objectives, directions)
    k = len(objectives)
    values = frame[list(objectives)].to_numpy(dtype=float)  # (n, k)
    finite = np.all(np.isfinite(values), axis=1)
    some = np.any(np.isfinite(values), axis=1)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    pareto = frame["pareto"].to_numpy(dtype=bool)
    groups = {
        "pareto": finite & feasible & pareto,
        "dominated": finite & feasible & ~pareto,
        "violates": some & ~feasible,
    }
    counts = {name: int(np.count_nonzero(sel)) for name, sel in groups.items()}
    n_failed = int(np.count_nonzero(~some))

    overlay = [
        measured is not None
        and k > 1
        and name in measured.columns
        and bool(np.isfinite(measured[name].to_numpy(dtype=float)).any())
        for name in objectives
    ]

    def axis_text(i: int) -> str:
        return axis_label(objectives[i], directions[i], overlay=overlay[i])

    pairs = list(itertools.combinations(range(k), 2)) or [(0, 0)]
    n_cols = min(len(pairs), _MAX_COLUMNS)
    n_rows = math.ceil(len(pairs) / n_cols)
    fig = Figure(
        figsize=(_SUBPLOT_SIZE_IN[0] * n_cols, _SUBPLOT_SIZE_IN[1] * n_rows),
        layout="constrained",
    )
    axes = [fig.add_subplot(n_rows, n_cols, i + 1) for i in range(len(pairs))]

    for ax, (ix, iy) in zip(axes, pairs, strict=True):
        if k == 1:
            # Strip plot: the value on x; y only separates points. A golden-ratio sequence
            # spreads them evenly and deterministically, uncorrelated with trial values.
            x = values[:, 0]
            y = 2.0 * np.modf(np.arange(x.shape[0]) * _GOLDEN)[0] - 1.0
            ax.set_yticks([])
            ax.set_ylim(-2.0, 2.0)
            ax.set_ylabel("trials (jittered)")
        else:
            x, y = values[:, ix], values[:, iy]
            ax.set_ylabel(axis_text(iy))
            _use_log(ax, "y", y[finite])
        ax.set_xlabel(axis_text(ix))
        _use_log(ax, "x", x[finite])

        shown = np.isfinite(x) & np.isfinite(y)
        sel = groups["dominated"] & shown
        ax.scatter(
            x[sel],
            y[sel],
            s=14,
            color=_DOMINATED_COLOR,
            alpha=0.5,
            linewidths=0,
            label=f"dominated ({counts['dominated']})",
            zorder=1,
        )
        sel = groups["violates"] & shown
        ax.scatter(
            x[sel],
            y[sel],
            s=22,
            color=_VIOLATES_COLOR,
            marker="x",
            alpha=0.8,
            label=f"violates constraints ({counts['violates']})",
            zorder=2,
        )
        sel = groups["pareto"] & shown
        ax.scatter(
            x[sel],
            y[sel],
            s=36,
            color=_PARETO_COLOR,
            edgecolors="black",
            linewidths=0.5,
            label=f"Pareto ({counts['pareto']})",
            zorder=4,
        )
        if k == 2 and np.count_nonzero(sel) > 1:
            order = np.argsort(x[sel], kind="stable")
            # Minimized x: the front holds each y until the next member's x ("steps-post");
            # maximized x: it drops to the next member's y first ("steps-pre").
            style = "steps-post" if directions[ix] == "minimize" else "steps-pre"
            ax.plot(
                x[sel][order],
                y[sel][order],
                drawstyle=style,
                color=_PARETO_COLOR,
                linewidth=1.2,
                alpha=0.8,
                zorder=3,
            )
        if measured is not None and k > 1:
            for i, (label, rows) in enumerate(measured.groupby("label", sort=False)):
                mx = rows[objectives[ix]].to_numpy(dtype=float)
                my = rows[objectives[iy]].to_numpy(dtype=float)
                ax.scatter(
                    mx,
                    my,
                    s=60,
                    marker=_MEASURED_MARKERS[i % len(_MEASURED_MARKERS)],
                    color=f"C{(i + 1) % 10}",
                    edgecolors="black",
                    linewidths=0.6,
                    label=f"measured: {label}",
                    zorder=5,
                )
        ax.grid(True, which="major", alpha=0.3)

    handles, labels = axes[0].get_legend_handles_labels()
    legend_order = [2, 0, 1, *range(3, len(handles))]  # Pareto, dominated, violates, measured
    legend_title = f"{n_failed} failed trials not shown" if n_failed else None
    # Below the panels (constrained layout makes room), so it never hides a point.
    fig.legend(
        [handles[i] for i in legend_order],
        [labels[i] for i in legend_order],
        loc="outside lower center",
        ncols=min(len(legend_order), 4),
        fontsize="small",
        title=legend_title,
        title_fontsize="small",
    )
    if title is not None:
        fig.suptitle(title)
    return fig


def _reference_text(normalization: Normalization) -> str:
    ref = normalization.reference
    if all(r == ref[0] for r in ref):
        where = f"{ref[0]:g} in each"
    else:
        where = "(" + ", ".join(f"{r:g}" for r in ref) + ")"
    return f"objectives normalized to [0,1] by the observed range;\nreference point {where}"


def plot_hypervolume(
    history: np.ndarray,
    normalization: Normalization,
    objectives: Sequence[str],
    *,
    ax: Axes | None = None,
) -> Axes:
    """Hypervolume of the feasible trials so far against the trial number.

    Args:
        history: Float (n,) hypervolume after each trial, as from
            ``nas.search._pareto.hypervolume_history``; entry i belongs to trial number i.
        normalization: The normalization the history was computed with; its reference point
            and scaling are stated in a text box.
        objectives: The k objective names, in the normalization's order.
        ax: Axes to draw into; None creates a new figure with one axes.

    Returns:
        The axes drawn into.

    Raises:
        NasConfigError: ``history`` is not 1-D or ``objectives`` does not match the
            normalization.
    """
    hv = np.asarray(history, dtype=float)
    if hv.ndim != 1:
        raise NasConfigError(f"history must be a 1-D array, but got shape {hv.shape}")
    if isinstance(objectives, str) or len(objectives) != normalization.n_objectives:
        raise NasConfigError(
            f"got objectives {objectives!r} for a normalization of "
            f"{normalization.n_objectives} objectives; give one name per objective"
        )
    if ax is None:
        ax = Figure(figsize=(6.0, 4.0), layout="constrained").add_subplot()
    # each trial's value held until the next trial: the last one's, up to one trial past it
    # (else its step, at the axis' edge, had no width and did not show)
    held = np.append(hv, hv[-1:])
    trials = np.arange(held.shape[0])
    ax.plot(trials, held, drawstyle="steps-post", color=_PARETO_COLOR, linewidth=1.5)
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume (normalized units)")
    ax.set_title("Hypervolume of " + ", ".join(objectives))
    ax.set_ylim(bottom=0.0)
    if hv.shape[0] > 0:
        ax.set_xlim(0, hv.shape[0])
    ax.text(
        0.98,
        0.04,
        _reference_text(normalization),
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize="small",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"},
    )
    ax.grid(True, alpha=0.3)
    return ax


def save_figure(fig: Figure | Axes, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (120 dpi, tight bounding box), atomically.

    The image goes to a temporary file in the target directory first and is then moved over
    ``path`` with :func:`os.replace`, so a reader never sees a half-written file.

    Args:
        fig: The figure, or an axes whose figure is saved.
        path: Destination file; missing parent directories are created.

    Returns:
        The destination path.
    """
    figure = fig.figure if isinstance(fig, Axes) else fig
    while not isinstance(figure, Figure):  # an Axes in a SubFigure: climb to the root Figure
        figure = figure.figure
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=_DPI, bbox_inches="tight")
    return target
