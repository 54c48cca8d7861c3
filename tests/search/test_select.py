from __future__ import annotations

import pandas as pd
import pytest

from nas import NasConfigError
from nas.search import SelectConfig, select_members


def _frame() -> pd.DataFrame:
    # four Pareto members trading error against latency, one dominated, one failed
    return pd.DataFrame(
        {
            "state": ["COMPLETE"] * 5 + ["FAIL"],
            "arch_id": ["a", "b", "c", "d", "e", "f"],
            "error": [0.01, 0.02, 0.05, 0.20, 0.30, None],
            "latency_ms@cpu": [5.0, 2.0, 1.0, 0.5, 6.0, None],
            "pareto": [True, True, True, True, False, False],
        }
    )


OBJ, DIRS = ["error", "latency_ms@cpu"], ["minimize", "minimize"]


def test_knee_picks_the_balanced_members_first():
    assert select_members(_frame(), OBJ, DIRS, SelectConfig("knee", k=2)) == ["c", "b"]


def test_accuracy_picks_the_most_accurate_pareto_members():
    assert select_members(_frame(), OBJ, DIRS, SelectConfig("accuracy", k=3)) == ["a", "b", "c"]


def test_budgets_pick_the_most_accurate_member_under_each_bound():
    config = SelectConfig("budgets", budgets=(("latency_ms@cpu", 1.0), ("latency_ms@cpu", 3.0)))
    assert select_members(_frame(), OBJ, DIRS, config) == ["c", "b"]


def test_a_budget_nothing_meets_names_the_lowest_value():
    config = SelectConfig("budgets", budgets=(("latency_ms@cpu", 0.1),))
    with pytest.raises(NasConfigError, match=r"no Pareto member has latency_ms@cpu <= 0.1 .*0.5"):
        select_members(_frame(), OBJ, DIRS, config)


def test_ids_may_name_any_completed_trial_and_unknown_ids_are_refused():
    assert select_members(_frame(), OBJ, DIRS, SelectConfig("ids", ids=("e", "a"))) == ["e", "a"]
    with pytest.raises(NasConfigError, match=r"arch_id 'f' is not a completed trial"):
        select_members(_frame(), OBJ, DIRS, SelectConfig("ids", ids=("f",)))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"rule": "knees"}, r"unknown rule 'knees'.*did you mean 'knee'"),
        ({"k": 0}, r"`k >= 1` must hold"),
        ({"rule": "budgets"}, r"rule 'budgets' needs 'budgets'"),
        ({"rule": "ids"}, r"rule 'ids' needs 'ids'"),
    ],
)
def test_bad_select_configs(kwargs, pattern):
    with pytest.raises(NasConfigError, match=pattern):
        SelectConfig(**kwargs)


def test_round_trip():
    config = SelectConfig("budgets", k=1, budgets=(("params", 1e5),))
    assert config.to_dict() == {"rule": "budgets", "k": 1, "budgets": [["params", 1e5]], "ids": []}
