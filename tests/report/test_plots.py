"""Contracts of nas.report: Pareto pair plots, the hypervolume curve and atomic PNG saving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nas._errors import NasConfigError
from nas.report import plot_hypervolume, plot_pareto_pairs, save_figure
from nas.search._pareto import hypervolume_history, normalization_for, pareto_mask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = ["error", "latency_ms", "params"]
DIRECTIONS = ["minimize", "minimize", "minimize"]


def _frame(objectives: list[str], directions: list[str], n: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = {
        "error": rng.uniform(0.05, 0.4, n),
        "latency_ms": rng.uniform(1.0, 30.0, n),
        "params": 10 ** rng.uniform(4.0, 7.5, n),  # spans > 2 decades -> log axis
        "accuracy": rng.uniform(0.6, 0.95, n),
    }
    frame = pd.DataFrame({name: data[name] for name in objectives})
    frame.loc[[3, 17], objectives] = np.nan  # failed trials: nothing measured
    frame["feasible"] = rng.random(n) > 0.2
    frame["pareto"] = pareto_mask(
        frame[objectives].to_numpy(), directions, frame["feasible"].to_numpy()
    )
    return frame


def _counts(frame: pd.DataFrame, objectives: list[str]) -> tuple[int, int, int]:
    finite = frame[objectives].notna().all(axis=1)
    some = frame[objectives].notna().any(axis=1)  # e.g. untrained: free metrics only
    feasible, pareto = frame["feasible"], frame["pareto"]
    return (
        int((finite & feasible & pareto).sum()),
        int((finite & feasible & ~pareto).sum()),
        int((some & ~feasible).sum()),
    )


def _legend_texts(fig: Figure) -> list[str]:
    assert len(fig.legends) == 1 and not fig.axes[0].get_legend()
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def test_pareto_pairs_three_objectives(tmp_path):
    frame = _frame(OBJECTIVES, DIRECTIONS)
    fig = plot_pareto_pairs(frame, OBJECTIVES, DIRECTIONS, title="demo search")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert labels == [
        ("error \u2193", "latency_ms \u2193"),
        ("error \u2193", "params \u2193"),
        ("latency_ms \u2193", "params \u2193"),
    ]
    # params spans 3.5 decades, the others less than 2.
    assert fig.axes[1].get_yscale() == "log"
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[0].get_yscale() == "linear"
    n_pareto, n_dominated, n_violates = _counts(frame, OBJECTIVES)
    assert n_pareto > 0 and n_dominated > 0 and n_violates > 0
    assert _legend_texts(fig) == [
        f"Pareto ({n_pareto})",
        f"dominated ({n_dominated})",
        f"violates constraints ({n_violates})",
    ]
    assert "2 failed trials" in fig.legends[0].get_title().get_text()
    assert fig.get_suptitle() == "demo search"
    # No 2-D staircase for k > 2: the Pareto set is k-dimensional.
    assert all(len(ax.get_lines()) == 0 for ax in fig.axes)

    path = save_figure(fig, tmp_path / "pareto.png")
    assert path == tmp_path / "pareto.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["pareto.png"]  # no temp file left


def test_pareto_pairs_two_objectives_with_maximize(tmp_path):
    objectives, directions = ["accuracy", "latency_ms"], ["maximize", "minimize"]
    frame = _frame(objectives, directions, seed=1)
    fig = plot_pareto_pairs(frame, objectives, directions)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("accuracy \u2191", "latency_ms \u2193")
    n_pareto, n_dominated, n_violates = _counts(frame, objectives)
    texts = _legend_texts(fig)
    assert f"Pareto ({n_pareto})" in texts
    assert f"dominated ({n_dominated})" in texts
    assert f"violates constraints ({n_violates})" in texts
    # The front's staircase joins the Pareto members sorted by x.
    (line,) = ax.get_lines()
    xs = np.asarray(line.get_xdata())
    assert len(xs) == n_pareto and np.all(np.diff(xs) >= 0)
    assert line.get_drawstyle() == "steps-pre"  # maximized x
    path = save_figure(fig, tmp_path / "sub" / "pareto2.png")
    assert path.is_file() and path.stat().st_size > 0


def test_pareto_pairs_one_objective():
    frame = _frame(["error"], ["minimize"])
    fig = plot_pareto_pairs(frame, ["error"], ["minimize"])
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlabel() == "error \u2193"
    assert _legend_texts(fig)[0] == f"Pareto ({int(frame['pareto'].sum())})"


def test_pareto_pairs_four_objectives_grid():
    objectives = ["error", "latency_ms", "params", "accuracy"]
    directions = ["minimize", "minimize", "minimize", "maximize"]
    fig = plot_pareto_pairs(_frame(objectives, directions), objectives, directions)
    assert len(fig.axes) == 6


def test_pareto_pairs_rejects_missing_column_and_bad_direction():
    frame = _frame(["error", "latency_ms"], ["minimize", "minimize"])
    with pytest.raises(NasConfigError, match="no column 'latency'.*did you mean 'latency_ms'"):
        plot_pareto_pairs(frame, ["error", "latency"], ["minimize", "minimize"])
    with pytest.raises(NasConfigError, match=r"directions\[1\]: unknown direction 'min'"):
        plot_pareto_pairs(frame, ["error", "latency_ms"], ["minimize", "min"])
    with pytest.raises(NasConfigError, match="1 directions for 2 objectives"):
        plot_pareto_pairs(frame, ["error", "latency_ms"], ["minimize"])


def test_plot_hypervolume(tmp_path):
    frame = _frame(OBJECTIVES, DIRECTIONS)
    values = frame[OBJECTIVES].to_numpy()
    feasible = frame["feasible"].to_numpy()
    norm = normalization_for(values, DIRECTIONS, feasible)
    history = hypervolume_history(values, DIRECTIONS, norm, feasible)
    ax = plot_hypervolume(history, norm, OBJECTIVES)
    assert isinstance(ax, Axes)
    assert ax.get_xlabel() == "trial number"
    assert "error" in ax.get_title() and "params" in ax.get_title()
    (line,) = ax.get_lines()
    # every trial's value, the last held one trial on: its step up drawn with a width (it
    # ended at the axis' edge and did not show)
    np.testing.assert_allclose(line.get_ydata(), [*history, history[-1]])
    assert ax.get_xlim() == (0, len(history)) and line.get_xdata()[-1] == len(history)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "normalized to [0,1]" in texts and "reference point 1.1 in each" in texts
    path = save_figure(ax, tmp_path / "hv.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_hypervolume_draws_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    norm = normalization_for(np.array([[0.0, 1.0], [1.0, 0.0]]), ["minimize", "minimize"])
    assert plot_hypervolume(np.array([0.0, 0.5, 0.5]), norm, ["a", "b"], ax=ax) is ax
    with pytest.raises(NasConfigError, match="one name per objective"):
        plot_hypervolume(np.zeros(3), norm, ["a"], ax=ax)


def test_save_figure_replaces_existing_file(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    save_figure(fig, target)
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
