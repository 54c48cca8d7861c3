"""Run search methods on a tabular problem over several seeds, score them, write the results.

``run_benchmark`` returns every evaluation with the hypervolume gap after it, one row per
(method, seed) run with its final scores, and a per-method summary; ``write_results`` writes
``evaluations.csv``, ``runs.csv``, ``summary.csv`` and ``gap.png`` atomically.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nas._errors import NasConfigError
from nas._io import atomic_write_bytes, atomic_write_text
from nas.bench._fbnet import CostProblem
from nas.bench._methods import get_method
from nas.bench._metrics import REFERENCE, Scorer
from nas.bench._tabular import TabularProblem

__all__ = [
    "NORMALIZATION_NOTE",
    "BenchResult",
    "check_methods",
    "evaluation_unit",
    "format_summary",
    "plot_gap",
    "run_benchmark",
    "write_results",
]

logger = logging.getLogger(__name__)

NORMALIZATION_NOTE = (
    f"objectives normalized by the whole space's range, reference point {REFERENCE:g} in every "
    "objective"
)
#: evaluation counts at which the summary also reports the mean hypervolume gap
CHECKPOINTS = (25, 50)
# Gaps are drawn on a log axis; an exact 0 (the whole true front found) is drawn at this floor.
_GAP_FLOOR = 1e-4

#: progress(method, seed, runs_done, runs_total, final_hv_gap, seconds)
Progress = Callable[[str, int, int, int, float, float], None]


@dataclass(frozen=True, eq=False)
class BenchResult:
    """Everything one benchmark produced.

    Attributes:
        names: Objective names, as the problem gives them.
        methods: Method names in run order (method under test first).
        budget: Accuracy evaluations per run.
        seeds: Seeds each method ran with.
        evaluations: One row per evaluation: ``method, seed, eval`` (1-based), ``arch``, one
            column per objective, ``hv_gap`` after that evaluation.
        runs: One row per (method, seed): ``hv_gap``, ``igd``, ``fraction_found`` at the final
            budget and ``seconds`` of wall time.
        summary: One row per method: means and standard deviations (ddof 1) over seeds.
        evaluation: What one evaluation is: ``"accuracy evaluations"`` (a tabular problem
            with an accuracy objective) or ``"cost lookups"`` (every objective free).
    """

    names: tuple[str, ...]
    methods: tuple[str, ...]
    budget: int
    seeds: tuple[int, ...]
    evaluations: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame
    evaluation: str = "accuracy evaluations"


def evaluation_unit(problem: TabularProblem | CostProblem) -> str:
    """``"accuracy evaluations"``, or ``"cost lookups"`` when every objective is free."""
    return "accuracy evaluations" if problem.expensive else "cost lookups"


def check_methods(names: Sequence[str]) -> tuple[str, ...]:
    """Validate method names (known ones); duplicates are dropped, order kept.

    Raises:
        NasConfigError: An unknown method (with the nearest name).
    """
    unique = tuple(dict.fromkeys(n.strip() for n in names))
    if not unique:
        raise NasConfigError("name at least one search method")
    for name in unique:
        get_method(name)
    return unique


def _check_run_args(
    problem: TabularProblem | CostProblem, budget: int, seeds: Sequence[int]
) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise NasConfigError(f"budget must be an integer, but got {budget!r}")
    if not 1 <= budget <= problem.n_archs:
        raise NasConfigError(
            f"`1 <= budget <= {problem.n_archs}` must hold (the table's size), but got {budget=}"
        )
    if len(seeds) == 0:
        raise NasConfigError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise NasConfigError(f"seeds must be distinct, but got {list(seeds)}")


def run_benchmark(
    problem: TabularProblem | CostProblem,
    methods: Sequence[str],
    *,
    budget: int,
    seeds: Sequence[int],
    progress: Progress | None = None,
) -> BenchResult:
    """Run each method once per seed for ``budget`` evaluations and score it.

    Args:
        problem: The tabular or cost-only problem.
        methods: Registered method names (see :func:`nas.bench.list_methods`).
        budget: Distinct architectures each run evaluates.
        seeds: One run per seed and method.
        progress: Called after each run.

    Returns:
        The evaluations, per-run scores and per-method summary.

    Raises:
        NasConfigError: Unknown or unavailable methods, a bad budget or bad seeds.
    """
    names = check_methods(methods)
    seeds = tuple(int(s) for s in seeds)
    _check_run_args(problem, budget, seeds)
    scorer = Scorer.for_problem(problem)
    frames: list[pd.DataFrame] = []
    runs: list[dict[str, object]] = []
    total = len(names) * len(seeds)
    for name in names:
        method = get_method(name)
        for seed in seeds:
            start = time.perf_counter()
            rows = method(problem, budget, seed)
            seconds = time.perf_counter() - start
            if len(rows) != budget or len(set(rows)) != budget:
                raise RuntimeError(
                    f"method '{name}' returned {len(rows)} rows ({len(set(rows))} distinct) "
                    f"for a budget of {budget}"
                )
            gap = scorer.hv_gap_history(rows)
            frame = pd.DataFrame(
                {
                    "method": name,
                    "seed": seed,
                    "eval": np.arange(1, budget + 1),
                    "arch": [problem.arch_str(r) for r in rows],  # type: ignore[arg-type]
                }
            )
            values = problem.values_of(rows)  # type: ignore[arg-type]  # the problem's keys
            for j, objective in enumerate(problem.names):
                frame[objective] = values[:, j]
            frame["hv_gap"] = gap
            frames.append(frame)
            runs.append(
                {
                    "method": name,
                    "seed": seed,
                    "hv_gap": float(gap[-1]),
                    "igd": scorer.igd(rows),
                    "fraction_found": scorer.fraction_found(rows),
                    "seconds": seconds,
                }
            )
            logger.info("%s seed %d: hv_gap %.4f in %.2f s", name, seed, gap[-1], seconds)
            if progress is not None:
                progress(name, seed, len(runs), total, float(gap[-1]), seconds)
    evaluations = pd.concat(frames, ignore_index=True)
    runs_frame = pd.DataFrame(runs)
    return BenchResult(
        names=problem.names,
        methods=names,
        budget=budget,
        seeds=seeds,
        evaluations=evaluations,
        runs=runs_frame,
        summary=_summarize(evaluations, runs_frame, names, budget),
        evaluation=evaluation_unit(problem),
    )


def _summarize(
    evaluations: pd.DataFrame, runs: pd.DataFrame, methods: Sequence[str], budget: int
) -> pd.DataFrame:
    rows = []
    for name in methods:
        r = runs[runs["method"] == name]
        e = evaluations[evaluations["method"] == name]
        row: dict[str, object] = {"method": name, "seeds": len(r), "budget": budget}
        for metric in ("hv_gap", "igd", "fraction_found"):
            row[f"{metric}_mean"] = float(r[metric].mean())
            row[f"{metric}_std"] = float(r[metric].std(ddof=1)) if len(r) > 1 else math.nan
        for n in CHECKPOINTS:
            at = e.loc[e["eval"] == n, "hv_gap"]
            row[f"hv_gap_at_{n}_mean"] = float(at.mean()) if len(at) else math.nan
        row["seconds_mean"] = float(r["seconds"].mean())
        rows.append(row)
    summary = pd.DataFrame(rows)
    # The project's search-efficiency goal is relative to random search: a quarter of its gap.
    if "random" in set(methods):
        random_gap = summary.loc[summary["method"] == "random", "hv_gap_mean"].iloc[0]
        summary["hv_gap_vs_random"] = (
            summary["hv_gap_mean"] / random_gap if random_gap > 0 else math.nan
        )
    return summary


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as an aligned text table (what ``nas bench`` prints)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            # (a gap of -1e-17 is rounding: no method beats the true front)
            return "-" if math.isnan(value) else f"{value + 0.0:.4f}".replace("-0.0000", "0.0000")
        return str(value)

    columns = [
        ("method", "method"),
        ("hv_gap_mean", "hv_gap"),
        ("hv_gap_std", "±std"),
        ("hv_gap_at_25_mean", "@25"),
        ("hv_gap_at_50_mean", "@50"),
        ("igd_mean", "igd"),
        ("igd_std", "±std"),
        ("fraction_found_mean", "found"),
        ("fraction_found_std", "±std"),
    ]
    if "hv_gap_vs_random" in summary.columns:
        columns.append(("hv_gap_vs_random", "vs_random"))
    columns.append(("seconds_mean", "s/run"))
    table = [[label for _, label in columns]]
    for _, record in summary.iterrows():
        table.append([cell(record[key]) for key, _ in columns])
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    return "\n".join(lines)


def plot_gap(
    evaluations: pd.DataFrame, ax: Axes | None = None, *, xlabel: str = "accuracy evaluations"
) -> Axes:
    """Hypervolume gap against evaluations: per method the median over seeds and the 25-75 %
    band, log y.

    Args:
        evaluations: ``BenchResult.evaluations`` (columns method, seed, eval, hv_gap).
        ax: Axes to draw on; a new figure's when None.
        xlabel: What one evaluation is (``BenchResult.evaluation``).

    Returns:
        The axes drawn on.
    """
    if ax is None:
        ax = Figure(figsize=(6.5, 4.2), layout="constrained").add_subplot()
    for name in dict.fromkeys(evaluations["method"]):
        grid = evaluations[evaluations["method"] == name].pivot(
            index="seed", columns="eval", values="hv_gap"
        )  # (seeds, evals)
        x = grid.columns.to_numpy()
        gaps = np.maximum(grid.to_numpy(dtype=float), _GAP_FLOOR)
        lo, mid, hi = np.percentile(gaps, [25, 50, 75], axis=0)
        (line,) = ax.plot(
            x, mid, label=f"{name} ({gaps.shape[0]} seeds)", linewidth=1.6, drawstyle="steps-post"
        )
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0, step="post")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("hypervolume gap 1 - HV/HV(true front)")
    ax.set_title(f"median and 25-75 % over seeds\n{NORMALIZATION_NOTE}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def write_results(result: BenchResult, out: str | Path) -> Path:
    """Write ``evaluations.csv``, ``runs.csv``, ``summary.csv`` and ``gap.png`` into ``out``.

    Each file is written atomically; ``out`` is created when missing.

    Raises:
        NasConfigError: ``out`` exists and is not a folder.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NasConfigError(f"{folder}: exists and is not a folder; choose another --out")
    for name, frame in (
        ("evaluations.csv", result.evaluations),
        ("runs.csv", result.runs),
        ("summary.csv", result.summary),
    ):
        atomic_write_text(folder / name, frame.to_csv(index=False))
    ax = plot_gap(result.evaluations, xlabel=result.evaluation)
    buffer = io.BytesIO()
    figure = ax.get_figure(root=True)
    assert isinstance(figure, Figure)  # plot_gap's axes belong to a top-level figure
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(folder / "gap.png", buffer.getvalue())
    return folder
