"""Run-directory outputs of a study: trials.csv, pareto.csv, pareto.png, hypervolume.png,
pareto_devices.png (>= 2 device metrics), parallel.png (> 3 objectives),
``architectures/<arch_id>.json`` for every Pareto member, and report.html holding them all.
Works from the storage alone, so ``nas pareto --storage URL --study NAME`` reproduces what
``nas search`` wrote."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from nas._errors import NasConfigError
from nas._io import atomic_write_text
from nas.export import write_architecture_file
from nas.search._pareto import hypervolume_history, normalization_for, pareto_mask
from nas.search._study import (
    EFFECTIVE_ATTR,
    EXPERIMENT_ATTR,
    OBJECTIVES_ATTR,
    PREPROCESS_ATTR,
    SPACE_ATTR,
    SPLIT_ATTR,
    opening_storage,
    sqlite_file,
    study_space,
)
from nas.search._workers import trial_weights
from nas.space import Architecture

__all__ = ["Report", "load_study", "trials_frame", "write_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """Paths written and the headline numbers of a report."""

    out_dir: Path
    n_trials: int
    n_pareto: int
    hypervolume: float
    reference: dict[str, Any]


def load_study(storage: str, study_name: str) -> optuna.Study:
    """Load an existing study written by ``nas``; a clear error if it is absent or foreign.

    Reading never creates anything: a SQLite URL must name an existing file.
    """
    _check_storage_url(storage)
    try:
        with opening_storage(storage):
            study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise NasConfigError(
            f"no study '{study_name}' in {storage}", allowed=names or ["(none)"], value=study_name
        ) from None
    if SPACE_ATTR not in study.user_attrs:
        raise NasConfigError(f"study '{study_name}' in {storage} was not written by nas")
    return study


def _check_storage_url(storage: str) -> None:
    if "://" not in storage:
        fix = f"sqlite:///{storage}" if Path(storage).is_file() else "sqlite:///runs/NAME/study.db"
        raise NasConfigError(
            f"--storage {storage}: expected a storage URL (sqlite:///..., postgresql://...); "
            f"try --storage {fix}"
        )
    path = sqlite_file(storage)
    if path is not None and not path.is_file():
        raise NasConfigError(f"--storage {storage}: no such file {path}")
    if path is not None:
        _check_optuna_file(storage, path)


def _check_optuna_file(storage: str, path: Path) -> None:
    """Refuse a SQLite file without Optuna's tables before Optuna opens it: opening creates
    its schema, which would write 25 tables into an empty file or another program's database."""
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise NasConfigError(
            f"--storage {storage}: {path} is not a SQLite database ({exc})"
        ) from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise NasConfigError(
            f"--storage {storage}: {path} holds no Optuna studies (no 'studies' table); name "
            "the study.db of a nas run (runs/NAME/study.db)"
        )


def _objectives(study: optuna.Study) -> list[str]:
    return list(study.user_attrs.get(OBJECTIVES_ATTR) or study.metric_names or [])


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, status, architecture, every metric, feasibility, Pareto flag."""
    objectives = _objectives(study)
    directions = [
        "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        for d in study.directions
    ]
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        status = attrs.get("status", t.state.name.lower())
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "status": status,
            "arch_id": attrs.get("arch_id"),
            "arch": attrs.get("arch"),
        }
        for key, value in attrs.items():
            if key in ("arch_id", "arch", "architecture", "status", "host", "pid"):
                continue
            if isinstance(value, dict):  # one column per figure (train.epochs, ...), not a repr
                row.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                row[key] = value
        if status == "infeasible":  # never trained: its trained objectives were not measured
            for key in ("error", "accuracy"):
                if key in row:
                    row[key] = np.nan
        cons = t.constraints
        row["feasible"] = t.state == TrialState.COMPLETE and all(v <= 0 for v in cons.values())
        for key, value in cons.items():
            row[f"constraint[{key}]"] = value
        row["duration_s"] = t.duration.total_seconds() if t.duration else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for name in objectives:
        if name not in frame:
            frame[name] = np.nan
    values = frame[objectives].to_numpy(dtype=float)
    # one row per distinct architecture: a repeated arch_id, or another spelling of the same
    # model (same effective form) with the same objective values, is not a member of its own
    same_model = frame[EFFECTIVE_ATTR] if EFFECTIVE_ATTR in frame else frame["arch_id"]
    spelled = pd.concat([same_model.fillna(frame["arch_id"]), frame[objectives]], axis=1)
    first = ~(frame.duplicated("arch_id") | spelled.duplicated()) | frame["arch_id"].isna()
    feasible = frame["feasible"].to_numpy(bool) & first.to_numpy(bool)
    frame["pareto"] = pareto_mask(values, directions, feasible)
    lead = ["number", "state", "status", "arch_id", *objectives, "feasible", "pareto", "arch"]
    return frame[lead + [c for c in frame.columns if c not in lead]]


def write_report(study: optuna.Study, out_dir: str | Path) -> Report:
    """Write the run directory's report files for ``study`` into ``out_dir``.

    ``pareto_devices.png`` is written when the objectives hold two or more device metrics and
    one other objective to plot them against, ``parallel.png`` when there are more than three
    objectives; a stale copy of either from an earlier report is removed otherwise.
    ``report.html`` comes last and inlines every figure present in ``out_dir``.
    """
    from nas.report import (
        device_metrics,
        plot_hypervolume,
        plot_parallel,
        plot_pareto_devices,
        plot_pareto_pairs,
        reference_metric,
        save_figure,
        write_html_report,
    )

    space = study_space(study)  # before any file: a space that cannot be rebuilt writes none
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    objectives = _objectives(study)
    directions = [
        "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        for d in study.directions
    ]
    frame = trials_frame(study)
    atomic_write_text(out_dir / "trials.csv", frame.to_csv(index=False))
    if frame.empty:
        atomic_write_text(out_dir / "pareto.csv", "")
        write_html_report(out_dir, frame, objectives, directions, study_name=study.study_name)
        return Report(out_dir, 0, 0, 0.0, {})
    pareto = frame[frame["pareto"]].sort_values(objectives[0])
    atomic_write_text(out_dir / "pareto.csv", pareto.to_csv(index=False))

    values = frame[objectives].to_numpy(dtype=float)
    feasible = frame["feasible"].to_numpy(bool)
    hv_final = 0.0
    reference: dict[str, Any] = {}
    if feasible.any():
        norm = normalization_for(values, directions, feasible)
        history = hypervolume_history(values, directions, norm, feasible)
        hv_final = float(history[-1]) if len(history) else 0.0
        reference = {"objectives": objectives, **norm.to_dict()}
        save_figure(plot_hypervolume(history, norm, objectives), out_dir / "hypervolume.png")
    title = f"{study.study_name}: {len(frame)} trials, {len(pareto)} on the Pareto front"
    save_figure(
        plot_pareto_pairs(frame, objectives, directions, title=title), out_dir / "pareto.png"
    )
    if len(device_metrics(objectives)) >= 2 and reference_metric(objectives) is not None:
        fig = plot_pareto_devices(
            frame, objectives, directions, title=f"{study.study_name}: fronts per device"
        )
        save_figure(fig, out_dir / "pareto_devices.png")
    else:
        (out_dir / "pareto_devices.png").unlink(missing_ok=True)
    if len(objectives) > 3:
        ax = plot_parallel(frame, objectives, directions, title=title)
        save_figure(ax, out_dir / "parallel.png")
    else:
        (out_dir / "parallel.png").unlink(missing_ok=True)

    trials = study.get_trials(deepcopy=False)  # once, not once per Pareto member
    # how its inputs are made and which images its weights were trained on (nas train checks)
    preprocess = {
        key: study.user_attrs[attr]
        for key, attr in (("preprocess", PREPROCESS_ATTR), ("data_split", SPLIT_ATTR))
        if attr in study.user_attrs
    }
    for _, row in pareto.iterrows():
        trial = trials[int(row["number"])]
        arch = Architecture.from_dict(trial.user_attrs["architecture"])
        metrics = {
            k: trial.user_attrs[k]
            for k in trial.user_attrs
            if k in row.index
            and k not in ("arch", "arch_id", "status", "weights")
            and isinstance(trial.user_attrs[k], (int, float))
        }
        write_architecture_file(
            out_dir / "architectures" / f"{arch.arch_id}.json",
            space,
            arch,
            metrics={"trial": trial.number, **metrics},
            weights=trial_weights(trial, study.user_attrs, out_dir),
            extra=preprocess or None,
        )
    write_html_report(
        out_dir,
        frame,
        objectives,
        directions,
        study_name=study.study_name,
        hypervolume=hv_final if reference else None,
        reference=reference or None,
        constraints=(study.user_attrs.get(EXPERIMENT_ATTR) or {}).get("constraints") or {},
        devices=_devices_said(out_dir),
    )
    return Report(out_dir, len(frame), len(pareto), hv_final, reference)


def _devices_said(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per device of the run, its cost model as the run's ``manifest.json`` describes it (an
    analytic profile's constants, a table's provenance); empty without a manifest (a report
    written elsewhere)."""
    import json

    try:
        devices = json.loads((run_dir / "manifest.json").read_text()).get("devices") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: d for name, d in devices.items() if isinstance(d, dict)}
