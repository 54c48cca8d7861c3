"""Finishing the chosen Pareto members: the teacher first, then the students, with
``final/summary.csv`` rewritten after each (:func:`finish_members`)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_write_text, file_sha256
from nas.compress import (
    CompressConfig,
)
from nas.export import (
    load_architecture,
    read_architecture_file,
)
from nas.final._finish import Locate, Progress, finish_architecture
from nas.final._state import CHECKPOINTS, FINETUNE_INSENSITIVE, FinalModel
from nas.space import Architecture, SearchSpace
from nas.train import (
    FinetuneConfig,
    SplitData,
)

log = logging.getLogger(__name__)


def finish_members(
    run_dir: Path,
    space: SearchSpace,
    arch_ids: list[str],
    architectures: dict[str, Architecture],
    data: SplitData,
    *,
    finetune_config: FinetuneConfig,
    compress: CompressConfig | None,
    accuracy: dict[str, float],
    origin: dict[str, Any],
    environment: dict[str, Any],
    progress: Progress | None = None,
    start: str | Path | None = None,
    trials: dict[str, int] | None = None,
    keep_others: bool = False,
    proxy_weights: dict[str, Path | None] | None = None,
    locate: Locate | None = None,
) -> list[FinalModel]:
    """Finish every chosen architecture; write ``final/summary.csv``, again after each one
    (an interrupted run lists the models it finished, and the earlier rows of those it had
    yet to redo).

    With distillation, the teacher is fine-tuned first: the most accurate of ``arch_ids``
    (by the search's ``accuracy``) for ``teacher: best``, else the ``arch.json`` named.
    ``start`` names an ``arch.json`` whose weights every model starts from (``nas train``);
    by default the search's proxy weights in ``run_dir``. ``origin`` is where every model came
    from (the study, the experiment); ``trials`` the search's trial number of each arch_id.
    ``keep_others`` keeps listing the earlier rows of models not among ``arch_ids`` (``nas
    train`` adds one model to a folder); by default they are dropped: no longer selected.
    ``proxy_weights``: the search's weights file of each arch_id (a trial that reused another
    architecture's training, or one another worker trained, names another file); by default
    ``run_dir/weights/<arch_id>.safetensors``. ``locate`` says where a setting came from (the
    experiment file, or a ``--set``: :meth:`nas.search.Experiment.locate`), for an error about
    it.
    """
    trials = trials or {}
    start_doc = read_architecture_file(start)[2] if start is not None else {}
    # a start pruned before: its record travels on (its folders are named after it)
    pruning = start_doc.get("pruning") if isinstance(start_doc.get("pruning"), dict) else None
    if pruning is None and start_doc.get("pruned"):
        pruning = {"note": "pruned widths; how they were made is not recorded in the start"}

    def _identity(arch_id: str) -> dict[str, Any]:
        """The best member as a teacher: what it is and what its training depends on."""
        tune = {k: v for k, v in no_kd.to_dict().items() if k not in FINETUNE_INSENSITIVE}
        return json.loads(
            json.dumps(
                {
                    "arch_id": arch_id,
                    "finetune": tune,
                    "started_from": _started_from(arch_id),
                    "pruning": pruning,
                }
            )
        )

    def _origin(arch_id: str, teacher: str) -> dict[str, Any]:
        own = {"trial": trials[arch_id]} if arch_id in trials else {}
        return {**origin, **own, "started_from": _started_from(arch_id), "teacher": teacher}

    def _proxy(arch_id: str) -> Path | None:
        default = run_dir / "weights" / f"{arch_id}.safetensors"
        weights = (proxy_weights or {}).get(arch_id, default)
        return weights if weights is not None and weights.is_file() else None

    def _started_from(arch_id: str) -> str:
        where = Path(start).resolve() if start is not None else None
        if start is None:
            weights = _proxy(arch_id)
            if weights is None:
                return "its seeded initialization (seed 0): the search kept no weights for it"
            here = weights.resolve().parent == (run_dir / "weights").resolve()
            shown = f"weights/{weights.name}" if here else str(weights.resolve())
            return f"the search's proxy-trained weights ({shown})"
        if start_doc.get("weights"):
            return f"the weights of the input, {start_doc['weights']} beside {where}"
        return f"its seeded initialization (seed 0): the input {where} names no weights"

    def _begin(arch: Architecture) -> nn.Module:
        if start is not None:  # without weights named: its seeded initialization, as asked
            return load_architecture(start, weights=bool(start_doc.get("weights")))
        return _start(space, arch, _proxy(arch.arch_id))

    def _finished(final: FinalModel) -> None:
        results.append(final)
        done = {r.arch_id for r in results}
        owned = {f for r in results for f in _folders(r.folder.name)}
        kept = [  # earlier rows this run has not replaced (yet, or at all with ``keep_others``)
            row
            for row in earlier
            if Path(row["file"]).parts[0] not in owned
            and (keep_others or (row["arch_id"] in arch_ids and row["arch_id"] not in done))
        ]
        rows = [{"arch_id": r.arch_id, **m.to_dict()} for r in results for m in r.measurements]
        table = pd.DataFrame(rows)
        if kept:
            table = pd.concat([table, pd.DataFrame(kept)], ignore_index=True)
        atomic_write_text(base / "summary.csv", table.to_csv(index=False))
        listed.clear()
        listed.update(Path(f).parts[0] for f in table["file"])

    base = run_dir / "final"
    earlier = _earlier_rows(base)
    listed: set[str] = set()
    order = list(arch_ids)
    teacher: nn.Module | None = None
    distill = finetune_config.distill
    no_kd = replace(finetune_config, distill=None)
    results: list[FinalModel] = []
    teacher_name = "none (no distillation)" if distill is None else distill.teacher
    identity: Any = None  # the students' teacher, as settings compare it
    if distill is not None and distill.teacher != "best":
        identity = _file_identity(Path(distill.teacher))
        teacher_space, _, _ = read_architecture_file(distill.teacher)
        if (
            tuple(teacher_space.input_shape) != tuple(data.input_shape)
            or teacher_space.num_classes != data.num_classes
        ):
            raise NasConfigError(
                f"finetune.distill.teacher: {distill.teacher} takes input "
                f"{tuple(teacher_space.input_shape)} with {teacher_space.num_classes} classes, "
                f"but the data is {tuple(data.input_shape)} with {data.num_classes} classes; "
                "name a teacher trained on the same data"
            )
        teacher = load_architecture(distill.teacher).eval()
    elif distill is not None:
        best = max(order, key=lambda a: accuracy.get(a, float("-inf")))
        order.remove(best)
        teacher_name = f"{best} (the most accurate chosen member, fine-tuned first)"
        final, teacher = finish_architecture(
            run_dir,
            space,
            architectures[best],
            _begin(architectures[best]),
            data,
            finetune_config=no_kd,
            compress=compress,
            origin=_origin(
                best,
                "none: the most accurate chosen member, it taught the others"
                if order
                else "none: 'best' is this model itself, the only one chosen",
            ),
            environment=environment,
            progress=progress,
            pruning=pruning,
            locate=locate,
        )
        identity = _identity(best)
        teacher.eval()
        _finished(final)
    for arch_id in order:
        arch = architectures[arch_id]
        final, _ = finish_architecture(
            run_dir,
            space,
            arch,
            _begin(arch),
            data,
            finetune_config=finetune_config if teacher is not None else no_kd,
            compress=compress,
            teacher=teacher,
            origin=_origin(arch_id, teacher_name),
            environment=environment,
            progress=progress,
            pruning=pruning,
            teacher_identity=identity if teacher is not None else None,
            locate=locate,
        )
        _finished(final)
    _warn_unlisted(base, listed)
    return results


def _folders(name: str) -> tuple[str, ...]:
    """The folders in ``final/`` that finishing the model ``name`` writes or replaces."""
    return name, f"{name}-pruned", f"{name}-sparse"


def _earlier_rows(base: Path) -> list[dict[str, Any]]:
    """The rows of an earlier ``final/summary.csv`` whose files still exist: the models a run
    has not finished again stay listed (a rerun interrupted before it reached them, or, for
    ``nas train``, the other models trained into the same folder)."""
    try:
        table = pd.read_csv(base / "summary.csv")
        rows = table.to_dict("records")
        return [
            row
            for row in rows
            if isinstance(row.get("file"), str)
            and isinstance(row.get("arch_id"), str)
            and (base / row["file"]).is_file()
        ]
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return []  # none, or not ours: this run's rows alone


def _file_identity(path: Path) -> dict[str, Any]:
    """A teacher named by file: its path, arch_id and the digest of its weights (a file
    retrained in place is another teacher)."""
    _, arch, doc = read_architecture_file(path)
    weights = path.parent / str(doc.get("weights", ""))
    digest = file_sha256(weights) if weights.is_file() else None
    return {"path": str(path.resolve()), "arch_id": arch.arch_id, "weights_sha256": digest}


def _warn_unlisted(base: Path, listed: set[str]) -> None:
    """Warn of folders in ``final/`` that summary.csv does not list (``listed``): models no
    longer selected, variants no longer asked for. They are kept."""
    unlisted = sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and p.name != CHECKPOINTS and p.name not in listed
    )
    if unlisted:
        log.warning(
            "%s: %s %s from an earlier run with other settings (no longer selected or made); "
            "kept, but not listed in summary.csv: remove %s if unwanted",
            base,
            ", ".join(unlisted),
            "is" if len(unlisted) == 1 else "are",
            "it" if len(unlisted) == 1 else "them",
        )


def _start(space: SearchSpace, arch: Architecture, weights: Path | None) -> nn.Module:
    """The search's proxy-trained model when it kept weights, else a fresh build."""
    model = space.build(arch, seed=0)
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    return model
