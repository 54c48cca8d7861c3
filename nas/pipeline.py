"""The whole flow of ``nas run``: validate, search, report, with a manifest of what was done.

Stages take values and return values; this module only strings them together. Everything that
can be wrong with the input is checked (space, data, devices) before the run directory is
created, so a bad experiment leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nas._errors import NasConfigError
from nas._io import atomic_write_json
from nas.search import (
    Experiment,
    Report,
    SearchOutcome,
    SelectConfig,
    check_study,
    cost_digests,
    load_study,
    prepare,
    run_search,
    write_report,
)
from nas.train import FinetuneConfig

__all__ = ["RunResult", "environment", "run_experiment"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    search: SearchOutcome
    report: Report
    final: tuple[Any, ...] = ()  # nas.final.FinalModel of each finished architecture


def environment() -> dict[str, Any]:
    """Package versions and a fingerprint of the machine, for the manifest."""
    import torch

    versions: dict[str, str | None] = {}
    # and the runtimes the stage after the search measures in (INT8 kernels change between
    # ONNX Runtime releases: a card's latency holds for the version it names)
    packages = ("hwnas", "torch", "optuna", "numpy", "pandas", "scikit-learn", "matplotlib")
    runtimes = ("onnxruntime", "onnx", "torchao", "torch-pruning", "safetensors")
    for pkg in packages + runtimes:
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
    finish: bool = True,
) -> RunResult:
    """Run an experiment end to end into ``run_dir`` (default: the experiment's ``out``).

    Running it again continues the same study until it holds ``search.n_trials`` trials. With
    ``finish=False`` (``nas search``) it stops after the search and its report, leaving the
    experiment's ``finetune`` stage for a later ``nas run``.
    """
    prepared = prepare(experiment)  # raises before anything is written
    run_dir = Path(run_dir or experiment.out)
    previous = _check_run_dir(run_dir, experiment)
    costs = cost_digests(prepared.space, prepared.evaluator.cost_models)
    check_study(experiment, prepared.space, run_dir, costs)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_dir_lock(run_dir):  # one process per run directory
        manifest = _new_manifest(experiment, prepared, run_dir, previous, argv)
        atomic_write_json(run_dir / "manifest.json", manifest)
        try:
            outcome, report, final = _stages(
                experiment, prepared, run_dir, manifest, progress, finish
            )
        except BaseException as exc:
            # finished work stays (trials, checkpoints); the manifest says the run did not end
            manifest["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            if not isinstance(exc, KeyboardInterrupt):
                manifest["error"] = f"{type(exc).__name__}: {exc}"
            atomic_write_json(run_dir / "manifest.json", manifest)
            raise
        manifest["status"] = "finished"
        manifest["finished"] = _now()
        atomic_write_json(run_dir / "manifest.json", manifest)
        return RunResult(run_dir, outcome, report, final)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _new_manifest(
    experiment: Experiment,
    prepared: Any,
    run_dir: Path,
    previous: dict[str, Any],
    argv: list[str] | None,
) -> dict[str, Any]:
    """What the run is about to do: its command, experiment, space, seeds, data and devices."""
    manifest: dict[str, Any] = {
        "nas_manifest_version": 1,
        "command": argv,
        "started": _now(),
        "experiment": {**experiment.to_dict(), "out": str(run_dir)},  # --out, where given
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
    if "final" in previous:  # the finished models on disk stay described until replaced
        manifest["final"] = previous["final"]
    return manifest


def _stages(
    experiment: Experiment,
    prepared: Any,
    run_dir: Path,
    manifest: dict[str, Any],
    progress: Callable[[str, dict[str, Any]], None] | None,
    finish: bool,
) -> tuple[SearchOutcome, Report, tuple[Any, ...]]:
    """Search, report, then (``finish``) fine-tune and compress the selected members;
    ``manifest`` is updated and rewritten after each stage."""
    outcome = run_search(prepared, run_dir, progress=progress)
    study = load_study(outcome.storage, outcome.study_name)
    report = write_report(study, run_dir)
    finishing = finish and experiment.finetune is not None
    manifest.update(
        {
            "status": "finishing" if finishing else "finished",
            "searched": _now(),
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
    if progress is not None:
        progress("searched", {"search": outcome, "report": report})
    if not finishing:
        return outcome, report, ()
    assert experiment.finetune is not None
    # load_experiment gives every experiment with 'finetune' a selection rule (knee)
    select = experiment.select or SelectConfig()
    final = _finish(
        experiment, select, experiment.finetune, prepared, study, run_dir, manifest, progress
    )
    return outcome, report, tuple(final)


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Refuse a second process in ``run_dir`` while one runs there: both would add trials to
    the study (past ``n_trials``, training the same architecture twice) and write the same
    reports. An advisory lock on ``run_dir/.lock``, released when the process ends however it
    ends; without ``fcntl`` (Windows) there is no check."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(run_dir / ".lock", "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise NasConfigError(
                f"--out {run_dir}: another nas process (pid {holder}) is running in this "
                "folder; wait for it to end, or pass another --out (for a parallel worker on "
                "the same study: another --out with the same search.storage)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # no stale pid for the next reader (the file stays: see flock)
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_run_dir(run_dir: Path, experiment: Experiment) -> dict[str, Any]:
    """The manifest of the run already in ``run_dir`` (empty if none).

    Refuses a run directory that is a file or holds another experiment's run (its study,
    tables and reports would be mixed with or overwritten by this one's)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NasConfigError(f"{run_dir}: is a file, not a run directory; pass another --out")
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        previous = json.loads(manifest.read_text())
        old = previous["experiment"]
        old_study = old["search"].get("study_name") or old["name"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # not our manifest's shape: nothing to compare against or keep
    if old_study != experiment.study_name:
        raise NasConfigError(
            f"{run_dir}: holds the run of study '{old_study}' ({manifest}), not "
            f"'{experiment.study_name}'; pass another --out, or remove the folder to start over"
        )
    return previous


def _finish(
    experiment: Experiment,
    select: SelectConfig,
    finetune: FinetuneConfig,
    prepared: Any,
    study: Any,
    run_dir: Path,
    manifest: dict[str, Any],
    progress: Callable[[str, dict[str, Any]], None] | None,
) -> list[Any]:
    """The stage after the search: select, fine-tune, compress, measure, export."""
    from nas.final import finish_members, plot_final
    from nas.report import write_html_report
    from nas.search import select_members, sqlite_file, trial_weights, trials_frame
    from nas.space import Architecture
    from nas.train import load_data

    frame = trials_frame(study)
    objectives = list(experiment.objectives)
    names = [m.name for m in objectives]
    directions = [m.direction for m in objectives]
    chosen = select_members(frame, names, directions, select)
    if progress is not None:
        progress("final_selected", {"arch_ids": chosen, "rule": select.rule})
    trials: dict[str, Any] = {}  # arch_id -> its first trial (later ones are cache hits)
    for t in study.get_trials(deepcopy=False):
        trials.setdefault(t.user_attrs.get("arch_id"), t)
    architectures = {
        a: Architecture.from_dict(trials[a].user_attrs["architecture"]) for a in chosen
    }
    accuracy = {a: float(trials[a].user_attrs.get("accuracy", float("nan"))) for a in chosen}
    storage = sqlite_file(manifest.get("storage") or "")
    # a member that reused another architecture's training (the same network), or that another
    # worker trained, has its proxy weights under another name or folder
    proxy = {
        a: trial_weights(trials[a], study.user_attrs, run_dir, storage.parent if storage else None)
        for a in chosen
    }
    data = prepared.evaluator.data or load_data(experiment.data)
    results = finish_members(
        run_dir,
        prepared.space,
        chosen,
        architectures,
        data,
        finetune_config=finetune,
        compress=experiment.compress,
        accuracy=accuracy,
        origin={
            "study": manifest.get("study_name"),
            "storage": manifest.get("storage"),
            "experiment": str(Path(experiment.source).resolve()) if experiment.source else None,
        },
        trials={a: trials[a].number for a in chosen},
        proxy_weights=proxy,
        environment=environment(),
        progress=progress,
        locate=experiment.locate,
    )
    plot_final(frame, names, directions, results, run_dir / "pareto_final.png")
    manifest["final"] = {
        "selected": chosen,
        "rule": select.to_dict(),
        "summary": "final/summary.csv",
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    # Again, now with pareto_final.png and the table of measured variants (final/summary.csv).
    pareto = manifest.get("pareto", {})
    write_html_report(
        run_dir,
        frame,
        names,
        directions,
        study_name=study.study_name,
        hypervolume=pareto.get("hypervolume") if pareto.get("hypervolume_reference") else None,
        reference=pareto.get("hypervolume_reference") or None,
    )
    return results
