"""Multi-objective search: experiments, objectives and constraints, the Optuna study, reports."""

from nas.search._costaware import CostAwareSampler, make_default_sampler
from nas.search._evaluate import Evaluator
from nas.search._experiment import (
    SAMPLERS,
    Constraint,
    Experiment,
    Metric,
    SearchConfig,
    load_experiment,
    parse_metric,
)
from nas.search._loop import SearchOutcome, run_search
from nas.search._pareto import (
    Normalization,
    hypervolume,
    hypervolume_history,
    normalization_for,
    pareto_mask,
)
from nas.search._report import Report, load_study, trials_frame, write_report
from nas.search._samplers import make_sampler
from nas.search._select import RULES, SelectConfig, select_members
from nas.search._study import (
    check_study,
    cost_digests,
    open_study,
    prepare,
    sqlite_file,
    storage_url,
)
from nas.search._workers import trial_weights, weight_folders

__all__ = [
    "RULES",
    "SAMPLERS",
    "SelectConfig",
    "select_members",
    "Constraint",
    "CostAwareSampler",
    "Evaluator",
    "Experiment",
    "Metric",
    "Normalization",
    "Report",
    "SearchConfig",
    "SearchOutcome",
    "hypervolume",
    "hypervolume_history",
    "load_experiment",
    "load_study",
    "make_default_sampler",
    "make_sampler",
    "normalization_for",
    "check_study",
    "cost_digests",
    "open_study",
    "parse_metric",
    "pareto_mask",
    "prepare",
    "run_search",
    "sqlite_file",
    "storage_url",
    "trial_weights",
    "trials_frame",
    "weight_folders",
    "write_report",
]
