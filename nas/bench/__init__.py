"""Benchmark mode: search methods scored on fully tabulated spaces against the true front.

``nasbench201`` joins accuracy and latency tables over all 15,625 cells; ``fbnet`` is
cost-only (latency/energy from the HW-NAS-Bench FBNet LUT, MACs) over 9^22 architectures, its
exact front computed by dynamic programming over the per-layer sums.

With the NAS-Bench-201 tables in ``../shared/data``::

    problem = load_problem("nasbench201", "cifar10", ["error", "latency_ms@pixel3"])
    result = run_benchmark(problem, ["random", "optuna-tpe"], budget=100, seeds=range(10))
    print(format_summary(result.summary))

Example:
    >>> from nas.bench import list_methods
    >>> list_methods()
    ['nas', 'optuna-gp', 'optuna-nsga2', 'optuna-nsga3', 'optuna-tpe', 'optuna-tpe-mv', 'random']
"""

from nas.bench._fbnet import FBNET_DEVICES, CostProblem, pareto_sum
from nas.bench._methods import (
    MAX_PROPOSALS_PER_EVAL,
    Method,
    get_method,
    list_methods,
    register_method,
    run_optuna,
)
from nas.bench._metrics import REFERENCE, Scorer, fraction_found, hypervolume_normalized, igd
from nas.bench._runner import (
    NORMALIZATION_NOTE,
    BenchResult,
    check_methods,
    evaluation_unit,
    format_summary,
    plot_gap,
    run_benchmark,
    write_results,
)
from nas.bench._tabular import (
    BENCHMARKS,
    DATASETS,
    TabularProblem,
    default_data_dir,
    list_devices,
    load_problem,
    lookup,
)

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "MAX_PROPOSALS_PER_EVAL",
    "NORMALIZATION_NOTE",
    "REFERENCE",
    "BenchResult",
    "CostProblem",
    "FBNET_DEVICES",
    "Method",
    "Scorer",
    "TabularProblem",
    "check_methods",
    "default_data_dir",
    "evaluation_unit",
    "format_summary",
    "fraction_found",
    "get_method",
    "hypervolume_normalized",
    "igd",
    "list_devices",
    "list_methods",
    "load_problem",
    "lookup",
    "pareto_sum",
    "plot_gap",
    "register_method",
    "run_benchmark",
    "run_optuna",
    "write_results",
]
