"""Exporting any stored trial with its proxy-trained weights (``nas export``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from nas._errors import NasConfigError
from nas._io import read_json_object
from nas.export import (
    export_float,
    write_model_card,
)
from nas.space import Architecture

log = logging.getLogger(__name__)


def export_trial(
    storage: str, study_name: str, number: int, out: str | Path | None = None
) -> Path:
    """The export folder of any trial of a stored study (its proxy-trained weights)."""
    from nas.pipeline import environment
    from nas.search import load_study
    from nas.search._evaluate import WORST
    from nas.search._study import PREPROCESS_ATTR, SPACE_ATTR, SPLIT_ATTR, study_space

    study = load_study(storage, study_name)
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise NasConfigError(
            f"--trial {number}: study '{study_name}' has trials 0..{len(trials) - 1}"
        )
    trial = trials[number]
    if "architecture" not in trial.user_attrs:
        if SPACE_ATTR not in study.user_attrs:
            raise NasConfigError(f"--trial {number}: study '{study_name}' is not a nas study")
        raise NasConfigError(
            f"--trial {number}: the trial is {trial.state.name} and holds no architecture "
            "yet; export a finished trial (nas pareto lists them)"
        )
    space = study_space(study)
    arch = Architecture.from_dict(trial.user_attrs["architecture"])
    folder = Path(out or f"export-{study_name}-{number}")
    where = storage
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        where = f"sqlite:///{Path(storage.removeprefix('sqlite:///')).resolve()}"  # not cwd's
    origin = {"study": study_name, "storage": where, "trial": number, "arch_id": arch.arch_id}
    _check_export_folder(folder, origin)
    model = space.build(arch, seed=0)
    weights = _trial_weights(where, study, trial, number)
    trained = weights is not None
    if weights is not None:
        from safetensors.torch import load_file

        try:
            model.load_state_dict(load_file(str(weights)))
        except Exception as exc:  # safetensors and torch raise their own types
            raise NasConfigError(
                f"{weights}: trial {number}'s weights do not load ({exc}); the run folder's "
                "copy is damaged: export from an intact copy of the run"
            ) from None
    status = trial.user_attrs.get("status")
    metrics = {
        k: v
        for k, v in trial.user_attrs.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and not (status == "infeasible" and k in WORST)  # placeholders, never measured
    }
    preprocess = study.user_attrs.get(PREPROCESS_ATTR)
    example = torch.randn(8, *space.input_shape, generator=torch.Generator().manual_seed(0))
    extra = {"origin": origin, "weights_trained": trained}
    if trained and SPLIT_ATTR in study.user_attrs:  # the images its weights were trained on
        extra["data_split"] = study.user_attrs[SPLIT_ATTR]
    # written beside it and moved in whole: an interrupted export leaves no partial folder
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    export_float(
        partial,
        space,
        arch,
        model,
        example=example,
        metrics=metrics,
        extra=extra if preprocess is None else {**extra, "preprocess": preprocess},
    )
    lines = [f"{k}: {v:.6g}" for k, v in metrics.items()]
    training = {
        "weights": (
            "proxy training of the search"
            if trained
            else "not trained: weights.safetensors holds the seeded initialization (seed 0) "
            "that model.onnx was exported from; train it with nas train"
        ),
        "search metrics (proxy accuracy on the validation split, predicted costs)": "; ".join(
            lines
        ),
    }
    if status == "infeasible":
        training["search"] = (
            "the architecture broke a constraint of the search (see trials.csv), so it was "
            "never trained and has no accuracy"
        )
    write_model_card(
        partial,
        title=f"trial {number} of study {study_name}: {space.name} architecture {arch.arch_id}",
        arch_string=space.format(arch),
        space_name=space.name,
        measurements=[],
        training=training,
        origin=origin,
        environment=environment(),
        preprocess=preprocess
        or {
            "input_shape": list(space.input_shape),
            "mean": "not recorded in the study",
            "std": "not recorded in the study",
        },
    )
    if folder.is_dir():  # an earlier export of this trial (_check_export_folder): replaced
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def _trial_weights(storage: str, study: Any, trial: Any, number: int) -> Path | None:
    """The file of a trial's proxy-trained weights, where ``trial_weights`` looks: the folder
    of the worker that stored it (see ``nas.search._workers``), the folder of the study's
    SQLite file (the run folder, wherever it was moved or copied), the run folder the study
    recorded. None when the trial has none (it broke a constraint, or trained nothing)."""
    from nas.search import sqlite_file, trial_weights, weight_folders

    if not trial.user_attrs.get("weights"):
        return None
    sqlite = sqlite_file(storage)
    folder = sqlite.parent if sqlite else None
    path = trial_weights(trial, study.user_attrs, folder)
    if path is not None:
        return path
    folders = weight_folders(trial, study.user_attrs, folder)
    raise NasConfigError(
        f"--trial {number}: its proxy-trained weights {trial.user_attrs['weights']} are in "
        f"none of {', '.join(map(str, folders)) or 'the run folders'}; a run folder is moved "
        "or copied whole (study.db with its weights/): export from one"
    )


def _check_export_folder(folder: Path, origin: dict[str, Any]) -> None:
    """Refuse an export folder that holds anything but an earlier export of the same trial:
    writing into it would leave the other model's files (an INT8 twin, checkpoints) beside
    this one's, and ``nas.load_architecture`` would load either."""
    if folder.exists() and not folder.is_dir():
        raise NasConfigError(f"--out {folder}: is a file, not a folder; pass another --out")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        previous = read_json_object(folder / "arch.json").get("origin")
    except NasConfigError:
        previous = None
    if previous != origin:
        raise NasConfigError(
            f"--out {folder}: the folder is not empty and holds no earlier export of this "
            "trial; pass a new --out (or remove the folder)"
        )
