"""Contracts of per-device fronts, parallel coordinates and predicted/measured axis labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from nas._errors import NasConfigError
from nas.report import (
    axis_label,
    device_metrics,
    metric_source,
    plot_parallel,
    plot_pareto_devices,
    plot_pareto_pairs,
    reference_metric,
    save_figure,
    scale_for_parallel,
)
from nas.search._pareto import pareto_mask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEVICES = ["latency_ms@cpu-x86", "latency_ms@edge-tpu", "energy_mj@pi5"]
OBJECTIVES = ["error", "params", *DEVICES]
DIRECTIONS = ["minimize"] * len(OBJECTIVES)


def _frame(objectives: list[str], directions: list[str], n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "number": np.arange(n),
            "arch_id": [f"a{i:03d}" for i in range(n)],
            "error": rng.uniform(0.05, 0.4, n),
            "accuracy": rng.uniform(0.6, 0.95, n),
            "params": 10 ** rng.uniform(4.0, 7.0, n),
            "latency_ms@cpu-x86": rng.uniform(1.0, 30.0, n),
            "latency_ms@edge-tpu": rng.uniform(0.2, 3.0, n),
            "energy_mj@pi5": rng.uniform(5.0, 80.0, n),
        }
    )
    frame.loc[5, objectives] = np.nan  # a failed trial
    frame["feasible"] = rng.random(n) > 0.2
    frame["pareto"] = pareto_mask(
        frame[objectives].to_numpy(), directions, frame["feasible"].to_numpy()
    )
    return frame


def _legend(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_metric_sources_and_labels():
    assert [metric_source(m) for m in OBJECTIVES] == [
        "measured",
        "exact",
        "predicted",
        "predicted",
        "predicted",
    ]
    assert axis_label("energy_mj@pi5", "minimize") == "energy_mj@pi5 (predicted) \u2193"
    assert axis_label("accuracy", "maximize") == "accuracy \u2191"
    assert "finished: measured" in axis_label("latency_ms@cpu", "minimize", overlay=True)
    assert device_metrics(OBJECTIVES) == DEVICES
    assert reference_metric(["params", *DEVICES, "accuracy"]) == "accuracy"
    assert reference_metric(["params", *DEVICES]) == "params"
    assert reference_metric(DEVICES) is None


def test_pareto_pairs_labels_predicted_and_measured_axes():
    objectives, directions = ["error", "latency_ms@cpu-x86"], ["minimize", "minimize"]
    frame = _frame(objectives, directions)
    fig = plot_pareto_pairs(frame, objectives, directions)
    assert fig.axes[0].get_xlabel() == "error \u2193"
    assert fig.axes[0].get_ylabel() == "latency_ms@cpu-x86 (predicted) \u2193"
    objectives = [*objectives, "energy_mj@pi5"]  # several panels with the overlay
    directions = [*directions, "minimize"]
    frame = _frame(objectives, directions)
    measured = pd.DataFrame(
        {
            "label": ["fp32 (torch-eager)", "int8 (onnxruntime)"],
            "error": [0.1, 0.12],
            "latency_ms@cpu-x86": [2.0, 1.0],
            "energy_mj@pi5": [np.nan, np.nan],  # not measured
        }
    )
    fig = plot_pareto_pairs(frame, objectives, directions, measured=measured)
    both = "latency_ms@cpu-x86 \u2193\n(search: predicted; finished: measured)"
    # a cost axis with no measured value keeps the plain "(predicted)"
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("error \u2193", both),
        ("error \u2193", "energy_mj@pi5 (predicted) \u2193"),
        (both, "energy_mj@pi5 (predicted) \u2193"),
    ]
    assert _legend(fig)[-2:] == ["measured: fp32 (torch-eager)", "measured: int8 (onnxruntime)"]


def test_pareto_devices_one_panel_per_device(tmp_path):
    frame = _frame(OBJECTIVES, DIRECTIONS)
    fig = plot_pareto_devices(frame, OBJECTIVES, DIRECTIONS, title="per device")
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in visible] == [f"{d} (predicted) \u2193" for d in DEVICES]
    assert visible[0].get_ylabel() == "error \u2193"
    for ax, device in zip(visible, DEVICES, strict=True):
        # the highlighted front is the 2-D front of (device, error) over feasible trials
        values = frame[[device, "error"]].to_numpy()
        front = pareto_mask(values, ["minimize", "minimize"], frame["feasible"].to_numpy())
        assert ax.get_title() == f"{device}: {int(front.sum())} on its front"
        (line,) = ax.get_lines()  # the staircase
        np.testing.assert_allclose(
            np.sort(np.asarray(line.get_xdata())), np.sort(values[front, 0])
        )
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0] == "front on this device"
    assert fig.get_suptitle() == "per device"
    assert save_figure(fig, tmp_path / "d.png").read_bytes()[:8] == PNG_MAGIC


def test_pareto_devices_reference_and_errors():
    objectives = ["params", *DEVICES[:2]]
    frame = _frame(objectives, ["minimize"] * 3)
    fig = plot_pareto_devices(frame, objectives, ["minimize"] * 3)
    assert fig.axes[0].get_ylabel() == "params \u2193"
    with pytest.raises(NasConfigError, match="hold no device metric"):
        plot_pareto_devices(frame, ["params"], ["minimize"])
    with pytest.raises(NasConfigError, match="are all device metrics; pass reference="):
        plot_pareto_devices(frame, DEVICES[:2], ["minimize"] * 2)
    with pytest.raises(NasConfigError, match="reference must be an objective"):
        plot_pareto_devices(frame, objectives, ["minimize"] * 3, reference=DEVICES[0])


def test_scale_for_parallel_lower_is_better_everywhere():
    values = np.array([[0.1, 0.9, 1e4], [0.3, 0.5, 1e7], [0.2, 0.7, 10**5.5]])
    scaled, logs = scale_for_parallel(values, ["minimize", "maximize", "minimize"])
    np.testing.assert_allclose(scaled, [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    assert logs == [False, False, True]  # 1e4..1e7 spans more than two decades: log10
    scaled, _ = scale_for_parallel(np.array([[2.0], [2.0], [np.nan]]), ["minimize"])
    assert scaled[:2, 0].tolist() == [0.5, 0.5] and np.isnan(scaled[2, 0])


def test_parallel_coordinates():
    objectives = ["error", "params", "latency_ms@cpu-x86", "accuracy"]
    directions = ["minimize", "minimize", "minimize", "maximize"]
    frame = _frame(objectives, directions)
    ax = plot_parallel(frame, objectives, directions, title="demo")
    assert isinstance(ax, Axes)
    assert "lower is better" in ax.get_ylabel()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("error \u2193") and ticks[3].startswith("accuracy \u2191")
    assert "(predicted)" in ticks[2] and "(predicted)" not in ticks[0]
    assert "(log scale)" in ticks[1]
    dominated, members = [c for c in ax.collections if isinstance(c, LineCollection)]
    shown = frame[objectives].notna().all(axis=1) & frame["feasible"]
    assert len(members.get_segments()) == int((frame["pareto"] & shown).sum())
    assert len(dominated.get_segments()) == int((~frame["pareto"] & shown).sum())
    ys = np.concatenate([s[:, 1] for s in members.get_segments()])
    assert ys.min() >= 0.0 and ys.max() <= 1.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == f"{int((~shown).sum())} violating or failed not shown"

    fig = Figure()
    given = fig.add_subplot()
    assert plot_parallel(frame, objectives, directions, ax=given) is given
    with pytest.raises(NasConfigError, match="at least 2 objectives"):
        plot_parallel(frame, ["error"], ["minimize"])
