"""Search methods run on tabular problems, by name.

A method is ``method(problem, budget, seed) -> list``: the keys of the architectures it
evaluated, in evaluation order, exactly ``budget`` distinct ones. A key is what
``problem.key(arch)`` returns: the row for a :class:`TabularProblem` (whose accuracy was
evaluated), the canonical architecture string for a cost-only :class:`CostProblem` (whose costs
were looked up). Proposing an architecture
that was already evaluated is a cache hit: its values are returned again at no cost and it
does not count against the budget. A method that keeps proposing known architectures is
stopped after ``MAX_PROPOSALS_PER_EVAL * budget`` proposals and the rest of its budget is
spent on uniformly random unevaluated architectures (with a warning), so every method returns
``budget`` keys.

Built-in methods:

- ``random``: uniform sampling without replacement (a prefix of a seeded permutation).
- ``optuna-tpe``: ``TPESampler(seed=seed)``, Optuna 5's defaults for several objectives
  (independent TPE, since ``multivariate=None`` means False with several objectives; 10
  random startup trials).
- ``optuna-tpe-mv``: ``TPESampler(seed=seed, multivariate=True)``, the framework's ``tpe``.
- ``optuna-nsga2``: ``NSGAIISampler(seed=seed)`` (population 50, Optuna's default).
- ``optuna-nsga3``: ``NSGAIIISampler(seed=seed)`` (population 50, reference points on the
  simplex), Optuna's advice for 3+ objectives.
- ``optuna-gp``: ``GPSampler(seed=seed)`` (logEHVI); works on NB201's categorical parameters
  but costs about a second per trial on 2 CPU cores.
- ``nas``: the framework's default sampler, ``nas.search.make_default_sampler``, told which
  objectives are expensive (``error``/``accuracy``) and given the free ones (latency,
  energy) for any architecture, as a cost table gives them in real use.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nas._errors import NasConfigError
from nas.bench._fbnet import CostProblem
from nas.bench._tabular import TabularProblem
from nas.space import Architecture

__all__ = [
    "MAX_PROPOSALS_PER_EVAL",
    "Method",
    "get_method",
    "list_methods",
    "register_method",
    "run_optuna",
]

logger = logging.getLogger(__name__)

Problem = TabularProblem | CostProblem
Method = Callable[[Problem, int, int], list[Any]]
MAX_PROPOSALS_PER_EVAL = 50
_METHODS: dict[str, Method] = {}


def register_method(name: str) -> Callable[[Method], Method]:
    """Decorator registering ``method(problem, budget, seed) -> rows`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorate(fn: Method) -> Method:
        if name in _METHODS:
            raise ValueError(f"search method '{name}' is already registered")
        _METHODS[name] = fn
        return fn

    return decorate


def list_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    """The method called ``name``.

    Raises:
        NasConfigError: No such method (listing the registered ones, with the nearest).
    """
    if name not in _METHODS:
        # an experiment's sampler names (tpe, cost-aware, ...) are spelled optuna-<name> here,
        # and the framework's own default sampler is 'nas'
        alias = {"auto": "nas", "cost-aware": "nas"}.get(name, f"optuna-{name}")
        hint = f" (an experiment's '{name}' is '{alias}' here)" if alias in _METHODS else ""
        closest = max(  # suggest from the name as given or as an Optuna sampler's
            (difflib.SequenceMatcher(None, v, m).ratio(), v)
            for v in (name, alias)
            for m in _METHODS
        )[1]
        raise NasConfigError(
            f"unknown search method '{name}'{hint}", allowed=list_methods(), value=closest
        )
    return _METHODS[name]


def _check_budget(problem: Problem, budget: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise NasConfigError(f"budget must be an integer, but got {budget!r}")
    if not 1 <= budget <= problem.n_archs:
        raise NasConfigError(
            f"`1 <= budget <= {problem.n_archs}` must hold (the table's size), but got {budget=}"
        )


def _draw_new(
    problem: CostProblem, keys: list[Any], budget: int, rng: np.random.Generator
) -> None:
    """Append uniformly random architectures not in ``keys`` until there are ``budget``."""
    seen = set(keys)
    while len(keys) < budget:
        key = problem.key(problem.space.random(rng))
        if key not in seen:
            seen.add(key)
            keys.append(key)


def _top_up(problem: Problem, rows: list[Any], budget: int, seed: int, name: str) -> None:
    """Fill ``rows`` up to ``budget`` with random unevaluated ones (a stalled method)."""
    logger.warning(
        "%s (seed %d) proposed %d architectures but only %d new ones; the last %d of its "
        "budget are random",
        name,
        seed,
        MAX_PROPOSALS_PER_EVAL * budget,
        len(rows),
        budget - len(rows),
    )
    rng = np.random.default_rng([seed, len(rows)])
    if isinstance(problem, CostProblem):
        _draw_new(problem, rows, budget, rng)
        return
    rest = np.setdiff1d(np.arange(problem.n_archs), rows)
    rows.extend(int(r) for r in rng.choice(rest, budget - len(rows), replace=False))


def run_optuna(
    problem: Problem, budget: int, seed: int, sampler: Any, *, name: str = "optuna"
) -> list[Any]:
    """Ask-and-tell ``sampler`` on ``problem`` until ``budget`` distinct keys were evaluated.

    Each trial suggests every parameter with ``problem.space.sample(trial)`` and is told the
    problem's values (a cache hit is told them too, and the sampler learns from it).
    """
    import optuna

    _check_budget(problem, budget)
    study = optuna.create_study(
        directions=list(problem.directions),  # type: ignore[arg-type]  # checked strings
        sampler=sampler,
    )
    rows: list[Any] = []
    seen: set[Any] = set()
    with warnings.catch_warnings():
        # ExperimentalWarning of set_metric_names and of some samplers: known, not the user's.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(problem.names))
        for _ in range(MAX_PROPOSALS_PER_EVAL * budget):
            trial = study.ask()
            row: Any = problem.key(problem.space.sample(trial))
            study.tell(trial, problem.values_of([row])[0].tolist())
            if row not in seen:
                seen.add(row)
                rows.append(row)
                if len(rows) == budget:
                    return rows
    _top_up(problem, rows, budget, seed, name)
    return rows


@register_method("random")
def _random(problem: Problem, budget: int, seed: int) -> list[Any]:
    _check_budget(problem, budget)
    if isinstance(problem, CostProblem):
        # Architectures drawn one after another, repeats skipped: again a prefix property.
        keys: list[Any] = []
        _draw_new(problem, keys, budget, np.random.default_rng(seed))
        return keys
    # A prefix of one permutation, so a smaller budget's run is the start of a larger one's.
    order = np.random.default_rng(seed).permutation(problem.n_archs)
    return [int(r) for r in order[:budget]]


def _optuna_method(name: str, make: Callable[[int], Any]) -> None:
    """Register ``name``: a plain Optuna study driven by the sampler ``make(seed)`` returns."""

    def method(problem: Problem, budget: int, seed: int) -> list[Any]:
        return run_optuna(problem, budget, seed, make(seed), name=name)

    register_method(name)(method)


def _optuna_samplers() -> None:
    import optuna

    samplers = optuna.samplers
    _optuna_method("optuna-tpe", lambda seed: samplers.TPESampler(seed=seed))
    _optuna_method("optuna-tpe-mv", lambda seed: samplers.TPESampler(seed=seed, multivariate=True))
    _optuna_method("optuna-nsga2", lambda seed: samplers.NSGAIISampler(seed=seed))

    def nsga3(seed: int) -> Any:
        with warnings.catch_warnings():  # "experimental since 3.2": known, not the user's
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return samplers.NSGAIIISampler(seed=seed)

    _optuna_method("optuna-nsga3", nsga3)
    _optuna_method(
        "optuna-gp",
        lambda seed: samplers.GPSampler(seed=seed, warn_independent_sampling=False),
    )


_optuna_samplers()


@register_method("nas")
def _nas(problem: Problem, budget: int, seed: int) -> list[Any]:
    from nas.search import make_default_sampler

    free = np.asarray(problem.free, dtype=np.int64)

    def free_costs(archs: Sequence[Architecture]) -> np.ndarray:
        """(len(archs), n_free) values of the free objectives, in objective order."""
        keys: list[Any] = [problem.key(a) for a in archs]
        return problem.values_of(keys)[:, free]

    sampler = make_default_sampler(
        problem.space,
        free_costs,
        directions=list(problem.directions),
        expensive=list(problem.expensive),
        seed=seed,
    )
    return run_optuna(problem, budget, seed, sampler, name="nas")
