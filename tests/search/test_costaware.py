"""The default cost-aware sampler: contract on a tiny space, and inside real searches."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from nas import NasConfigError
from nas.pipeline import run_experiment
from nas.search import CostAwareSampler, load_experiment, make_default_sampler
from nas.space import space_from_dict
from tests.conftest import TINY_SPACE


@pytest.fixture(scope="module")
def tiny():
    import yaml

    return space_from_dict(yaml.safe_load(TINY_SPACE))


def _problem(space):
    """A synthetic problem: cost = params (free), error falls with cost plus a per-arch bump."""
    archs = list(space.enumerate())
    cost = {a.arch_id: float(space.describe(a).params) for a in archs}
    rng = np.random.default_rng(0)
    bump = {a.arch_id: float(rng.uniform(0, 0.05)) for a in archs}
    top = max(cost.values())

    def error(a):
        return 1.0 - 0.8 * cost[a.arch_id] / top + bump[a.arch_id]

    def free_costs(batch):
        return np.array([[cost[a.arch_id]] for a in batch])

    return archs, cost, error, free_costs


def _run(space, seed, n):
    archs, cost, error, free_costs = _problem(space)
    sampler = CostAwareSampler(
        space, free_costs, directions=["minimize", "minimize"], expensive=[0], seed=seed
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    return _ask_tell(study, space, n, error, cost), cost


def _ask_tell(study, space, n, error, cost):
    """Run ``n`` trials of the synthetic problem; the arch_ids proposed, in order."""
    picked = []
    for _ in range(n):
        trial = study.ask()
        arch = space.sample(trial)
        picked.append(arch.arch_id)
        study.tell(trial, [error(arch), cost[arch.arch_id]])
    return picked


def test_never_proposes_an_architecture_twice_and_tries_the_cheapest_second(tiny):
    picked, cost = _run(tiny, seed=0, n=20)
    assert len(set(picked)) == 20
    assert cost[picked[1]] == min(cost.values())
    ranks = sorted(cost.values())  # the first pick is from the middle of the costs
    assert ranks[len(ranks) // 4] <= cost[picked[0]] <= ranks[3 * len(ranks) // 4]


def test_seeded_runs_are_identical(tiny):
    assert _run(tiny, seed=3, n=12)[0] == _run(tiny, seed=3, n=12)[0]


@pytest.mark.parametrize("pool_size", [20_000, 100])  # the whole space; a sample + mutations
@pytest.mark.parametrize("stop", [3, 10])  # among the start-up draws; after them
def test_a_study_continued_by_a_new_sampler_proposes_what_one_run_would(pool_size, stop):
    """A search stopped and continued in a new process (a new sampler on the stored study)
    proposes, trial by trial, what one uninterrupted run does."""
    import yaml

    spec = yaml.safe_load(TINY_SPACE)
    spec["cell"]["nodes"] = 4  # 729 cells
    space = space_from_dict(spec)
    _, cost, error, free_costs = _problem(space)
    directions = ["minimize", "minimize"]

    def sampler():
        return CostAwareSampler(
            space, free_costs, directions=directions, expensive=[0], seed=5, pool_size=pool_size
        )

    def run(study, n):
        return _ask_tell(study, space, n, error, cost)

    whole = run(optuna.create_study(directions=directions, sampler=sampler()), 16)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage, study_name="s", directions=directions, sampler=sampler()
    )
    first = run(study, stop)
    again = optuna.load_study(study_name="s", storage=storage, sampler=sampler())
    assert first + run(again, 16 - stop) == whole
    assert len(set(whole)) == 16


def test_falls_back_to_random_once_every_architecture_is_evaluated(tiny):
    picked, _ = _run(tiny, seed=0, n=tiny.size() + 3)
    assert len(set(picked)) == tiny.size()


def test_infeasible_candidates_are_never_proposed(tiny):
    archs, cost, error, free_costs = _problem(tiny)
    limit = sorted(cost.values())[len(cost) // 2]
    sampler = CostAwareSampler(
        tiny,
        free_costs,
        directions=["minimize", "minimize"],
        expensive=[0],
        seed=0,
        feasible=lambda batch: np.array([cost[a.arch_id] <= limit for a in batch]),
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(10):
        trial = study.ask()
        arch = tiny.sample(trial)
        assert cost[arch.arch_id] <= limit
        study.tell(trial, [error(arch), cost[arch.arch_id]])


def test_default_is_tpe_when_nothing_or_everything_is_free(tiny):
    def free(batch):
        return np.zeros((len(batch), 1))

    for expensive in ([], [0, 1]):
        sampler = make_default_sampler(
            tiny, free, directions=["minimize", "minimize"], expensive=expensive, seed=0
        )
        assert isinstance(sampler, optuna.samplers.TPESampler)
    sampler = make_default_sampler(
        tiny, free, directions=["minimize", "minimize"], expensive=[0], seed=0
    )
    assert isinstance(sampler, CostAwareSampler)


def test_real_search_uses_it_by_default_and_screens_free_constraints(tiny_experiment, tmp_path):
    path = tiny_experiment(
        'constraints: {params: "<= 3000"}', n_trials=8, objectives="[error, params]"
    )
    text = path.read_text().replace("sampler: tpe, ", "")
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.search.sampler == "auto"
    run_experiment(exp, tmp_path / "run")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(trials) == 8 and trials["arch_id"].is_unique
    # candidates breaking the free constraint are screened out before they are proposed
    assert (trials["status"] == "trained").all() and (trials["params"] <= 3000).all()


def test_cost_aware_needs_a_trained_and_a_free_objective(tiny_experiment, tmp_path):
    path = tiny_experiment(objectives="[params]")
    path.write_text(path.read_text().replace("sampler: tpe", "sampler: cost-aware"))
    # located at the file's line (it named neither file nor line)
    with pytest.raises(
        NasConfigError, match=rf"^{path}:\d+: search\.sampler: 'cost-aware' needs both"
    ):
        load_experiment(path)


def test_trains_one_architecture_per_effective_form():
    """Architectures computing the same function (``space.effective``) share a predicted error,
    so only the cheapest of each form is ever proposed; NAS-Bench-201 has 7,855 forms."""
    from nas.space import load_space

    space = load_space("nasbench201")
    weight = {"none": 0.0, "skip_connect": 0.1, "avg_pool_3x3": 0.2}
    weight |= {"nor_conv_1x1": 1.0, "nor_conv_3x3": 3.0}

    def free_costs(batch):
        return np.array([[sum(weight[v] for v in a.choices.values())] for a in batch])

    def error(arch):  # a function of the computation only, as a trained accuracy would be
        eff = space.effective(arch)
        convs = sum(weight[v] for v in eff.choices.values() if v.startswith("nor_conv"))
        return 1.0 / (1.0 + convs) + 0.01 * (int(eff.arch_id, 16) % 7)

    sampler = CostAwareSampler(
        space, free_costs, directions=["minimize", "minimize"], expensive=[0], seed=0
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    forms = []
    for _ in range(30):
        trial = study.ask()
        arch = space.sample(trial)
        forms.append(space.effective(arch).arch_id)
        study.tell(trial, [error(arch), free_costs([arch])[0, 0]])
    assert len(set(forms)) == len(forms)


def test_redundant_marks_rows_another_row_weakly_dominates():
    from nas.search._costaware import _redundant

    costs = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [2.0, 2.0], [0.5, 3.0]])
    assert _redundant(costs).tolist() == [False, False, True, True, False]
