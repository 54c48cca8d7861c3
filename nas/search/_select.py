"""Choosing which Pareto members go on to fine-tuning, compression and export.

Rules (``select:`` in an experiment file):

- ``knee``: the ``k`` members closest to the ideal point (best value of every objective) once
  each objective is scaled to [0, 1] over the front, the usual "balanced trade-off" pick
  (Branke et al., "Finding knees in multi-objective optimization", PPSN 2004).
- ``accuracy``: the ``k`` most accurate members.
- ``budgets``: for each budget ``metric: [bound, ...]``, the most accurate member within it
  (for example the best model under 0.2 ms and the best under 0.5 ms).
- ``ids``: the listed ``arch_id``s, which must be in the study.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nas._config import Node, check_field_types
from nas._errors import NasConfigError
from nas.search._experiment import parse_metric

__all__ = ["RULES", "SelectConfig", "select_members"]

RULES: tuple[str, ...] = ("knee", "accuracy", "budgets", "ids")
_ARCH_ID = re.compile(r"[0-9a-f]{12}")  # Architecture.arch_id: 12 lowercase hex digits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectConfig:
    """Which Pareto members to finish.

    Args:
        rule: ``knee``, ``accuracy``, ``budgets`` or ``ids``.
        k: How many members ``knee`` and ``accuracy`` pick, >= 1.
        budgets: ``((metric, bound), ...)`` for ``budgets``: the most accurate member with
            ``metric <= bound`` for each pair.
        ids: The ``arch_id``s for ``ids``.
        where: Where each key was set, for errors found after the search (``(key, file,
            line)``: ``ids``, ``k``, ``budgets.<metric>``); not part of the value.

    Example:
        >>> SelectConfig().rule, SelectConfig().k
        ('knee', 2)
    """

    rule: str = "knee"
    k: int = 2
    budgets: tuple[tuple[str, float], ...] = field(default=())
    ids: tuple[str, ...] = field(default=())
    where: tuple[tuple[str, str | None, int | None], ...] = field(
        default=(), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.rule not in RULES:
            raise NasConfigError(f"unknown rule {self.rule!r}", allowed=RULES, value=self.rule)
        if self.k < 1:
            raise NasConfigError(f"`k >= 1` must hold, but got k={self.k}")
        if self.rule == "budgets" and not self.budgets:
            raise NasConfigError("rule 'budgets' needs 'budgets', e.g. {latency_ms@cpu: [0.2]}")
        if self.rule == "ids" and not self.ids:
            raise NasConfigError("rule 'ids' needs 'ids', a list of arch_id values")

    @classmethod
    def from_node(cls, node: Node) -> SelectConfig:
        """Read a ``select:`` mapping (``rule``, ``k``, ``budgets``, ``ids``)."""
        rule_node = node.get("rule", "knee")
        rule = rule_node.as_choice(RULES)
        where: list[tuple[str, str | None, int | None]] = []

        def located(key: str, at: Node) -> None:  # an override names itself, a file its line
            if at.origin is not None:
                where.append((key, at.origin, None))
            else:
                where.append((key, None if at.file is None else str(at.file), at.line))

        budgets: list[tuple[str, float]] = []
        b_node = node.get("budgets", None)
        if b_node.value is not None:
            for key, value in b_node.items():
                metric = b_node.child(key, key).convert(parse_metric)
                bounds = value.list(allow_scalar=True)
                budgets += [(metric.name, b.as_float()) for b in bounds]
                located(f"budgets.{metric.name}", value)
        ids_node = node.get("ids", None)
        ids = () if ids_node.value is None else tuple(_ids(ids_node))
        for key, needed in (("budgets", budgets), ("ids", ids)):
            if rule == key and not needed:
                # at the --set that asked for the rule, else at the select mapping
                at = rule_node if rule_node.origin is not None else node
                raise at.error(
                    f"rule '{rule}' needs the key '{key}'; add select.{key}"
                    + (" (a list of arch_id values)" if key == "ids" else "")
                )
        k_node = node.get("k", 2)
        located("ids", ids_node)
        located("k", k_node)
        config = cls(
            rule=rule, k=k_node.as_int(min=1), budgets=tuple(budgets), ids=ids, where=tuple(where)
        )
        node.done()
        return config

    def error(self, key: str, message: str, **kwargs: Any) -> NasConfigError:
        """A :class:`NasConfigError` located where ``select.<key>`` was set (the experiment
        file's line, or the ``--set`` argument), for problems found after the search."""
        for name, file, line in self.where:
            if name == key:
                return NasConfigError(message, file=file, line=line, key=f"select.{key}", **kwargs)
        return NasConfigError(message, key=f"select.{key}", **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "k": self.k,
            "budgets": [list(b) for b in self.budgets],
            "ids": list(self.ids),
        }


def _ids(node: Node) -> list[str]:
    """``select.ids``: arch_id values, each 12 lowercase hex digits."""
    out = []
    for item in node.list(allow_scalar=True):
        value = item.as_str()
        if not _ARCH_ID.fullmatch(value):
            raise item.error(
                f"{value!r} is not an arch_id; expected 12 lowercase hex digits (0-9, a-f), as "
                "in the arch_id column of trials.csv"
                + (" (the letter O is not a hex digit: 0 is)" if "O" in value.upper() else "")
            )
        out.append(value)
    return out


def _accuracy(frame: pd.DataFrame) -> pd.Series:
    if "accuracy" in frame:
        return frame["accuracy"].astype(float)
    if "error" in frame:
        return 1.0 - frame["error"].astype(float)
    raise NasConfigError(
        "selecting by accuracy needs an 'error' or 'accuracy' objective; use rule 'knee' or "
        "'ids' for a cost-only search"
    )


def select_members(
    frame: pd.DataFrame,
    objectives: list[str],
    directions: list[str],
    config: SelectConfig,
) -> list[str]:
    """The ``arch_id``s ``config`` picks from a study's trial frame (``trials_frame``).

    Only feasible Pareto members are candidates, except for ``ids``, which may name any
    completed trial. The result has no duplicates and keeps the rule's order (best first).

    Raises:
        NasConfigError: No candidate, an unknown ``arch_id``, or a budget nothing meets.
    """
    if len(directions) != len(objectives):
        raise NasConfigError(
            f"directions: {len(directions)} for {len(objectives)} objectives; give one "
            "'minimize' or 'maximize' per objective"
        )
    unknown = [o for o in objectives if o not in frame.columns]
    if unknown:
        raise NasConfigError(
            f"objectives: no column {unknown[0]!r} in the trial frame",
            allowed=[c for c in frame.columns if c not in ("arch", "arch_id", "state")],
            value=unknown[0],
        )
    done = frame[frame["state"] == "COMPLETE"].drop_duplicates("arch_id")
    if config.rule == "ids":
        missing = [i for i in config.ids if i not in set(done["arch_id"])]
        if missing:
            raise config.error(
                "ids",
                f"arch_id {missing[0]!r} is not a completed trial of the study",
                allowed=sorted(done["arch_id"].dropna()),
                value=missing[0],
            )
        chosen = list(dict.fromkeys(config.ids))
        rows = done.set_index("arch_id")
        for arch_id in chosen:
            row = rows.loc[arch_id]
            if "feasible" in rows and not bool(row["feasible"]):
                log.warning(
                    "select.ids: %s broke a constraint of the search (see trials.csv); it is "
                    "finished as asked, but it does not meet the experiment's constraints",
                    arch_id,
                )
            elif "pareto" in rows and not bool(row["pareto"]):
                log.warning(
                    "select.ids: %s is dominated: off the Pareto front (another member is at "
                    "least as good in every objective); it is finished as asked",
                    arch_id,
                )
        return chosen
    front = done[done["pareto"]]
    if front.empty:
        raise NasConfigError("no feasible Pareto member to select; relax the constraints")
    if config.rule in ("knee", "accuracy") and config.k > len(front):
        log.warning(
            "select.k: %d asked, but the Pareto front has %d member%s: finishing %d",
            config.k,
            len(front),
            "s" * (len(front) != 1),
            len(front),
        )
    if config.rule == "accuracy":
        order = _accuracy(front).sort_values(ascending=False, kind="stable")
        return list(front.loc[order.index[: config.k], "arch_id"])
    if config.rule == "budgets":
        accuracy = _accuracy(front)
        picked: list[str] = []
        for metric, bound in config.budgets:
            if metric not in front:
                raise config.error(
                    f"budgets.{metric}",
                    f"'{metric}' is not a metric of the study",
                    allowed=[c for c in objectives if c in front],
                    value=metric,
                )
            within = front[front[metric].astype(float) <= bound]
            if within.empty:
                best = float(front[metric].astype(float).min())
                raise config.error(
                    f"budgets.{metric}",
                    f"no Pareto member has {metric} <= {bound:g} (the lowest is {best:.4g}); "
                    "raise the budget",
                )
            picked.append(str(within.loc[accuracy[within.index].idxmax(), "arch_id"]))
        return list(dict.fromkeys(picked))
    # knee: distance to the ideal point over objectives scaled to [0, 1] on the front
    values = front[objectives].to_numpy(dtype=float)  # (members, objectives)
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    values = values * signs  # every objective minimized
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    distance = np.linalg.norm(scaled, axis=1)
    order = np.argsort(distance, kind="stable")[: config.k]
    return [str(a) for a in front["arch_id"].to_numpy()[order]]
