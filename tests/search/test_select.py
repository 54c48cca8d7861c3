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


def _select(text: str, overrides: dict[str, str] | None = None) -> SelectConfig:
    from nas._config import Node

    node = Node(text, file="exp.yaml", lines={("ids",): 4, ("k",): 5, ("budgets", "params"): 6})
    for key, value in (overrides or {}).items():
        node.override([key], value, origin=f"--set select.{key}={value}")
    return SelectConfig.from_node(node)


def test_an_id_that_is_not_twelve_hex_digits_is_refused_at_load():
    with pytest.raises(
        NasConfigError,
        match=r"exp.yaml:4: ids\[0\]: '985b355b36Of' is not an "
        r"arch_id; expected 12 lowercase hex digits.*letter O",
    ):
        _select({"rule": "ids", "ids": ["985b355b36Of"]})
    assert _select({"rule": "ids", "ids": "985b355b360f"}).ids == ("985b355b360f",)


def test_errors_found_after_the_search_name_the_file_line_and_key():
    config = _select({"rule": "ids", "ids": ["985b355b360f"]})
    with pytest.raises(
        NasConfigError,
        match=r"^exp.yaml:4: select.ids: arch_id '985b355b360f' "
        "is not a completed trial",
    ):
        select_members(_frame(), OBJ, DIRS, config)
    config = _select({"rule": "budgets", "budgets": {"params": 100}})
    frame = _frame().assign(params=[7546, 8000, 9000, 9500, 9900, None])
    with pytest.raises(
        NasConfigError,
        match=r"^exp.yaml:6: select.budgets.params: no Pareto "
        r"member has params <= 100 \(the lowest is 7546\)",
    ):
        select_members(frame, OBJ, DIRS, config)


def test_a_rule_set_on_the_command_line_names_its_set_argument():
    with pytest.raises(
        NasConfigError,
        match=r"^--set select.rule=ids: rule: rule 'ids' needs the "
        "key 'ids'",
    ):
        _select({}, {"rule": "ids"})


def test_odd_choices_are_said(caplog):
    frame = _frame().assign(feasible=[True, True, True, True, True, False])
    config = SelectConfig("ids", ids=("e",))
    assert select_members(frame, OBJ, DIRS, config) == ["e"]
    assert "e is dominated: off the Pareto front" in caplog.text
    frame.loc[4, "feasible"] = False
    caplog.clear()
    select_members(frame, OBJ, DIRS, config)
    assert "e broke a constraint of the search" in caplog.text
    caplog.clear()
    assert len(select_members(_frame(), OBJ, DIRS, SelectConfig("knee", k=9))) == 4
    assert "select.k: 9 asked, but the Pareto front has 4 members: finishing 4" in caplog.text


def test_objectives_and_directions_that_do_not_fit_the_frame_are_named():
    """Three directions for two objectives gave numpy's 'operands could not be broadcast'; an
    objective missing from the frame gave pandas' KeyError."""
    frame = _frame()
    with pytest.raises(NasConfigError, match=r"^directions: 3 for 2 objectives"):
        select_members(frame, ["error", "params"], ["minimize"] * 3, SelectConfig(k=1))
    with pytest.raises(
        NasConfigError, match=r"^objectives: no column 'eror'.*did you mean 'error'"
    ):
        select_members(frame, ["eror"], ["minimize"], SelectConfig(k=1))
