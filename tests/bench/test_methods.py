"""The method registry: every method evaluates `budget` distinct rows, reproducibly by seed."""

from __future__ import annotations

import pytest

from nas import NasConfigError
from nas.bench import get_method, list_methods, register_method, run_optuna

BUDGET = 15  # past TPE's 10 random startup trials
SLOW = {"optuna-gp": 11}  # 3-5 s per GP trial on 2 cores: one trial past the 10 random ones


@pytest.mark.parametrize("name", list_methods())
def test_budget_distinct_rows_and_seed_determinism(name, problem2):
    method = get_method(name)
    budget = SLOW.get(name, BUDGET)
    rows = method(problem2, budget, 3)
    assert len(rows) == budget == len(set(rows))
    assert all(isinstance(r, int) and 0 <= r < problem2.n_archs for r in rows)
    if name in SLOW:
        return  # determinism is Optuna's seeding, checked on the fast samplers
    assert method(problem2, budget, 3) == rows
    assert method(problem2, budget, 4) != rows


def test_registry_is_strict():
    assert {"random", "optuna-tpe", "optuna-nsga2", "nas"} <= set(list_methods())
    with pytest.raises(NasConfigError, match="did you mean 'random'"):
        get_method("randon")
    with pytest.raises(ValueError, match="already registered"):
        register_method("random")(lambda problem, budget, seed: [])


def test_bad_budget(problem2):
    with pytest.raises(NasConfigError, match="budget"):
        get_method("random")(problem2, 0, 0)
    with pytest.raises(NasConfigError, match="budget"):
        get_method("random")(problem2, problem2.n_archs + 1, 0)


def test_cache_hits_are_free_and_stalls_are_topped_up(problem2):
    import optuna

    # A sampler stuck on one architecture: one real evaluation, then only cache hits.
    arch = problem2.space.parse(problem2.arch_strs[42])
    fixed = optuna.samplers.PartialFixedSampler(
        problem2.space.to_params(arch), optuna.samplers.RandomSampler(seed=0)
    )
    rows = run_optuna(problem2, 3, 0, fixed, name="stuck")
    assert rows[0] == 42 and len(set(rows)) == 3


def test_nas_method_passes_free_costs_to_the_default_sampler(problem3, monkeypatch):
    import optuna

    import nas.search

    calls = {}

    def fake(space, free_costs, *, directions, expensive, seed):
        archs = [space.parse(problem3.arch_strs[i]) for i in (5, 9)]
        calls.update(directions=directions, expensive=expensive, seed=seed)
        calls["costs"] = free_costs(archs)
        return optuna.samplers.RandomSampler(seed=seed)

    monkeypatch.setattr(nas.search, "make_default_sampler", fake, raising=False)
    rows = get_method("nas")(problem3, 5, 7)
    assert len(set(rows)) == 5
    assert calls["directions"] == ["maximize", "minimize", "minimize"]
    assert calls["expensive"] == [0] and calls["seed"] == 7
    assert calls["costs"].shape == (2, 2)
    assert (calls["costs"] == problem3.values[[5, 9]][:, 1:]).all()


def test_random_runs_are_prefixes_of_each_other(problem2):
    method = get_method("random")
    assert method(problem2, 25, 0) == method(problem2, 100, 0)[:25]


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("tpe", r"an experiment's 'tpe' is 'optuna-tpe' here"),
        ("cost-aware", r"an experiment's 'cost-aware' is 'nas' here"),
        ("nsga4", r"did you mean 'optuna-nsga[23]'"),
        ("rnadom", r"did you mean 'random'"),
    ],
)
def test_an_experiments_sampler_name_points_at_its_method(name, pattern):
    with pytest.raises(NasConfigError, match=pattern):
        get_method(name)
