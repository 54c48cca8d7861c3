"""The whole flow of ``nas run``: validate, search, report, with a manifest of what was done.

Stages take values and return values; this module only strings them together. Everything that
can be wrong with the input is checked (space, data, devices) before the run directory is
created, so a bad experiment leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nas._io import atomic_write_json
from nas.search import (
    Experiment,
    Report,
    SearchOutcome,
    load_study,
    prepare,
    run_search,
    write_report,
)

__all__ = ["RunResult", "environment", "run_experiment"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    search: SearchOutcome
    report: Report


def environment() -> dict[str, Any]:
    """Package versions and a fingerprint of the machine, for the manifest."""
    import torch

    versions: dict[str, str | None] = {}
    for pkg in ("hwnas", "torch", "optuna", "numpy", "pandas", "scikit-learn", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "packages": versions,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _describe_device(model: Any) -> dict[str, Any]:
    """What the manifest records of a cost model: its constants, or a table's provenance."""
    if hasattr(model, "to_dict"):
        return {"kind": "analytic", **model.to_dict()}
    meta = dict(getattr(model, "meta", {}))
    keep = ("description", "fingerprint", "protocol", "value_kinds", "energy", "source")
    return {
        "kind": "table",
        "path": getattr(model, "path", None),
        **{k: meta[k] for k in keep if k in meta},
    }


def run_experiment(
    experiment: Experiment,
    run_dir: str | Path | None = None,
    *,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    argv: list[str] | None = None,
) -> RunResult:
    """Run an experiment end to end into ``run_dir`` (default: the experiment's ``out``).

    Running it again continues the same study until it holds ``search.n_trials`` trials.
    """
    prepared = prepare(experiment)  # raises before anything is written
    run_dir = Path(run_dir or experiment.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "nas_manifest_version": 1,
        "command": argv,
        "started": started,
        "experiment": experiment.to_dict(),
        "experiment_file": experiment.source,
        "space": {
            "name": prepared.space.name,
            "hash": prepared.space.hash,
            "size": prepared.space.size(),
            "input": list(prepared.space.input_shape),
            "num_classes": prepared.space.num_classes,
        },
        "seeds": {
            "search": experiment.search.seed,
            "train": experiment.train.seed,
            "data_split": experiment.data.seed,
        },
        "data": (
            None
            if prepared.evaluator.data is None
            else {
                "name": prepared.evaluator.data.name,
                "train_val": list(prepared.evaluator.data.sizes),
            }
        ),
        "devices": {d: _describe_device(m) for d, m in prepared.evaluator.cost_models.items()},
        "environment": environment(),
        "status": "running",
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    outcome = run_search(prepared, run_dir, progress=progress)
    study = load_study(outcome.storage, outcome.study_name)
    report = write_report(study, run_dir)
    manifest.update(
        {
            "status": "finished",
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "storage": outcome.storage,
            "study_name": outcome.study_name,
            "search": asdict(outcome),
            "pareto": {
                "n": report.n_pareto,
                "hypervolume": report.hypervolume,
                "hypervolume_reference": report.reference,
            },
        }
    )
    atomic_write_json(run_dir / "manifest.json", manifest)
    return RunResult(run_dir, outcome, report)
