"""The run's bookkeeping after the search: where each folder is built and kept, the settings a
finished model depends on, and whether an earlier finish can be kept (``finished.json``)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas._io import atomic_write_json
from nas.compress import (
    CompressConfig,
    Measurement,
)
from nas.space import Architecture
from nas.train import (
    FinetuneConfig,
    SplitData,
)
from nas.train._finetune import CHECKPOINT_NAME

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
FINISHED_NAME = "finished.json"
INPUTS_NAME = "inputs.json"  # beside a fine-tuning checkpoint: the settings it was written for
FINISHED_FORMAT = 2  # 2: measurements' params_nonzero, folder-relative measurements.json
# settings a finished architecture does not depend on (as for resuming a fine-tuning checkpoint)
FINETUNE_INSENSITIVE = ("threads", "checkpoint_every")
# where a finished model's run was, recorded on its card but not a setting it depends on
_ORIGIN_LOCATIONS = ("storage", "experiment")


@dataclass(frozen=True)
class FinalModel:
    """One finished architecture: its export folders and measured variants."""

    arch_id: str
    folder: Path
    measurements: tuple[Measurement, ...]


def state_dir(base: Path, name: str) -> Path:
    """Where the run keeps its bookkeeping for the folder ``final/<name>``."""
    return base / CHECKPOINTS / name


def staging(base: Path, name: str) -> Path:
    """An empty folder where ``final/<name>`` is built; it moves into ``final/`` only whole
    (:func:`publish`), so an interrupted finish leaves no half-written folder to ship."""
    stage = state_dir(base, name) / name
    if stage.exists():
        shutil.rmtree(stage)  # left by an interrupted finish
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, base: Path) -> Path:
    """Move a finished staging folder to ``final/<name>``, replacing an earlier one."""
    final = base / stage.name
    old = state_dir(base, stage.name) / f"{stage.name}.replaced"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    stage.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def fresh_checkpoint(state: Path, inputs: dict[str, Any], label: str) -> Path:
    """``state``, rid of a fine-tuning checkpoint written for other ``inputs`` (settings
    changed since: a rerun redoes the model rather than resuming another one), with ``inputs``
    recorded for the next run."""
    record = state / INPUTS_NAME
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):
        earlier = None  # none, or unreadable: the checkpoint's settings are unknown
    checkpoint = state / CHECKPOINT_NAME
    same = isinstance(earlier, dict) and teacher_comparable(earlier) == teacher_comparable(inputs)
    if not same and checkpoint.exists():
        log.info("%s: settings changed since its checkpoint; fine-tuning from the start", label)
        checkpoint.unlink()
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, inputs)
    return state


def forget_unstarted(state: Path) -> None:
    """After a fine-tune that stopped before its first checkpoint (it diverged at once): remove
    its ``state`` folder (``final/checkpoints/<name>``, which held only the settings), and
    ``checkpoints/`` and ``final/`` when that leaves them empty; nothing of it is left to
    resume. A state with a checkpoint is kept: the same command resumes from it."""
    if (state / CHECKPOINT_NAME).exists():
        return
    (state / INPUTS_NAME).unlink(missing_ok=True)
    for folder in (state, state.parent, state.parent.parent):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return


def finish_settings(
    arch: Architecture,
    finetune_config: FinetuneConfig,
    compress: CompressConfig | None,
    data: SplitData,
    origin: dict[str, Any],
) -> dict[str, Any]:
    """What a finished architecture's files depend on, as JSON would read it back."""
    tune = finetune_config.to_dict()
    settings = {
        "arch": arch.to_dict(),
        "finetune": {k: v for k, v in tune.items() if k not in FINETUNE_INSENSITIVE},
        "compress": None if compress is None else compress.to_dict(),
        "data": {"name": data.name, "sizes": list(data.sizes), "preprocess": data.preprocess},
        "origin": origin,
    }
    return json.loads(json.dumps(settings))


def comparable(settings: Any) -> Any:
    """``settings`` without where the run's files were (the study's storage, the experiment
    file's path, a teacher file's path: its arch_id and weights' digest say which it is): a
    run folder moved or copied whole, or an experiment or teacher file moved, finishes the same
    models (it redid every one, re-measuring its figures)."""
    if not isinstance(settings, dict) or not isinstance(settings.get("origin"), dict):
        return settings
    origin = {k: v for k, v in settings["origin"].items() if k not in _ORIGIN_LOCATIONS}
    return {**settings, "origin": teacher_comparable(origin)}


def teacher_comparable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (settings' origin, or a checkpoint's inputs) with its teacher named by what
    it is, not by where its file lies."""
    teacher = record.get("teacher")
    if isinstance(teacher, dict) and "weights_sha256" in teacher:
        return {**record, "teacher": {k: v for k, v in teacher.items() if k != "path"}}
    return record


def finished_earlier(
    record: Path, settings: dict[str, Any], base: Path
) -> tuple[Measurement, ...] | None:
    """The measurements of an earlier finish with the same settings whose files all still
    exist; None when the architecture must be (re)done."""
    try:
        earlier = json.loads(record.read_text())
        if earlier.get("format") != FINISHED_FORMAT or comparable(
            earlier.get("settings")
        ) != comparable(settings):
            return None
        kept = tuple(Measurement(**m) for m in earlier["measurements"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing or not ours: redo, and write a new record at the end
    if not all((base / m.file).is_file() for m in kept):
        return None
    return kept
