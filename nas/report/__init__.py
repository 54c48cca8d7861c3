"""Report figures for a finished search: Pareto scatter plots and the hypervolume curve."""

from __future__ import annotations

from nas.report._plots import plot_hypervolume, plot_pareto_pairs, save_figure

__all__ = ["plot_hypervolume", "plot_pareto_pairs", "save_figure"]
