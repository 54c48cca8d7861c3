"""Report figures and pages for a finished search.

Pareto scatter plots of every objective pair, per-device fronts side by side, parallel
coordinates for many objectives, the hypervolume curve, and ``report.html`` holding them all.
"""

from __future__ import annotations

from nas.report._devices import plot_pareto_devices
from nas.report._html import FIGURES, write_html_report
from nas.report._labels import axis_label, device_metrics, metric_source, reference_metric
from nas.report._parallel import plot_parallel, scale_for_parallel
from nas.report._plots import plot_hypervolume, plot_pareto_pairs, save_figure

__all__ = [
    "FIGURES",
    "axis_label",
    "device_metrics",
    "metric_source",
    "plot_hypervolume",
    "plot_parallel",
    "plot_pareto_devices",
    "plot_pareto_pairs",
    "reference_metric",
    "save_figure",
    "scale_for_parallel",
    "write_html_report",
]
