"""Optuna samplers by name."""

from __future__ import annotations

import warnings

import optuna

from nas._errors import NasConfigError

__all__ = ["make_sampler"]


def make_sampler(
    name: str, *, seed: int, n_trials: int, population_size: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``: ``tpe`` (default), ``nsga2``, ``nsga3``, ``gp``, ``random``.

    Every space is a fixed set of categorical parameters, so multivariate TPE models all of them
    jointly. For the genetic samplers the population defaults to a fifth of the budget (8..50)
    so that a short search still runs several generations.
    """
    with warnings.catch_warnings():  # (experimental in Optuna's terms; stable in practice)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed, n_trials, population_size)


def _make(
    name: str, seed: int, n_trials: int, population_size: int | None
) -> optuna.samplers.BaseSampler:
    pop = population_size or max(8, min(50, n_trials // 5))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=pop)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise NasConfigError(
        f"unknown sampler '{name}'", allowed=["tpe", "nsga2", "nsga3", "gp", "random"], value=name
    )
