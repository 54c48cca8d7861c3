"""The finished variants beside the search's fronts (``pareto_final.png``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from nas.final._state import FinalModel

log = logging.getLogger(__name__)


def measured_frame(results: list[FinalModel], objectives: list[str]) -> pd.DataFrame:
    """The finished variants as rows over the search's objectives (NaN where not measured).

    ``error``/``accuracy`` are held-out figures, ``params`` counts nonzero weights, and every
    ``latency_ms@<device>`` objective gets the latency measured on this machine in the
    variant's own runtime; other metrics are not re-measured.
    """
    rows = []
    for r in results:
        for m in r.measurements:
            row: dict[str, Any] = {"label": f"{m.variant} ({m.runtime})", "arch_id": r.arch_id}
            for name in objectives:
                if name == "error":
                    row[name] = 1.0 - m.accuracy
                elif name == "accuracy":
                    row[name] = m.accuracy
                elif name == "params":
                    row[name] = m.params_nonzero
                elif name.startswith("latency_ms@"):
                    row[name] = m.latency_ms
                else:
                    row[name] = float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def plot_final(
    frame: pd.DataFrame,
    objectives: list[str],
    directions: list[str],
    results: list[FinalModel],
    path: Path,
) -> None:
    """``pareto_final.png``: the search's points with the measured finished variants on top."""
    from nas.report import plot_pareto_pairs, save_figure

    measured = measured_frame(results, objectives)
    title = "search (latency predicted by the cost model) and finished models (measured)"
    save_figure(
        plot_pareto_pairs(frame, objectives, directions, title=title, measured=measured), path
    )
