"""After the search: fine-tune the chosen architectures, compress them, measure, export.

For each chosen architecture (``select:``), in ``<run dir>/final/``:

1. fine-tune with the full budget (``finetune:``), starting from the search's proxy weights
   when there are any, distilling from a teacher when ``finetune.distill`` is set; the
   teacher (the most accurate chosen member unless a file is named) is fine-tuned first;
2. export the float model (``<arch_id>/``: ``arch.json``, safetensors, ONNX, ``torch.export``);
3. compress (``compress:``): INT8 (``model_int8.onnx`` beside ``model.onnx``), structured
   pruning + recovery fine-tuning (``<arch_id>-pruned/``, and its INT8 twin), unstructured
   magnitude sparsity with fine-tuning under the mask (``<arch_id>-sparse/``);
4. measure every variant: held-out accuracy, size on disk, latency at batch 1 in its runtime;
   write a model card and ``measurements.json`` per folder (files named from the folder, which
   ships alone), and ``final/summary.csv`` (files named from ``final/``) after each model.

A start that was pruned already (``nas train`` on a ``-pruned/arch.json``) is named and
labelled as what it is: ``<arch_id>-pruned/`` (variant ``pruned``), pruned again
``<arch_id>-pruned-pruned/``, its ``pruning`` record kept in ``arch.json`` and on the card.

Run bookkeeping lives in ``final/checkpoints/<folder name>/``, never in the folders a user ships:
every fine-tune checkpoints there, each folder is built there (``checkpoints/<name>/<name>/``)
and moved into ``final/`` only when finished, replacing an earlier one, and a finished
architecture leaves ``finished.json`` (its settings and measurements), written last. Running the
same command again resumes an interrupted fine-tune and keeps a finished architecture as it is
(nothing retrained, recompressed or re-measured) while its settings and files are unchanged;
other settings redo it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_write_json, atomic_write_text, file_sha256, read_json_object
from nas.compress import (
    CompressConfig,
    LatencyConfig,
    Measurement,
    check_calibration,
    deflated_size,
    make_sparsity_permanent,
    nonzero_params,
    prune_structured,
    prune_unstructured,
    quantize_int8,
    quantize_onnx,
    shape_overrides,
    summarize,
    time_interleaved,
)
from nas.export import (
    OnnxModule,
    export_float,
    export_int8,
    load_architecture,
    pruning_chain,
    read_architecture_file,
    write_int8_file,
    write_model_card,
)
from nas.space import Architecture, SearchSpace
from nas.train import (
    FinetuneConfig,
    FinetuneDivergedError,
    SplitData,
    describe_split,
    evaluate,
    finetune,
)
from nas.train._finetune import CHECKPOINT_NAME

__all__ = ["FinalModel", "finish_architecture", "finish_members"]

log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]

CHECKPOINTS = "checkpoints"
FINISHED_NAME = "finished.json"
INPUTS_NAME = "inputs.json"  # beside a fine-tuning checkpoint: the settings it was written for
_FINISHED_FORMAT = 2  # 2: measurements' params_nonzero, folder-relative measurements.json
# settings a finished architecture does not depend on (as for resuming a fine-tuning checkpoint)
_FINETUNE_INSENSITIVE = ("threads", "checkpoint_every")
# where a finished model's run was, recorded on its card but not a setting it depends on
_ORIGIN_LOCATIONS = ("storage", "experiment")


@dataclass(frozen=True)
class FinalModel:
    """One finished architecture: its export folders and measured variants."""

    arch_id: str
    folder: Path
    measurements: tuple[Measurement, ...]


def _state_dir(base: Path, name: str) -> Path:
    """Where the run keeps its bookkeeping for the folder ``final/<name>``."""
    return base / CHECKPOINTS / name


def _staging(base: Path, name: str) -> Path:
    """An empty folder where ``final/<name>`` is built; it moves into ``final/`` only whole
    (:func:`_publish`), so an interrupted finish leaves no half-written folder to ship."""
    stage = _state_dir(base, name) / name
    if stage.exists():
        shutil.rmtree(stage)  # left by an interrupted finish
    stage.mkdir(parents=True)
    return stage


def _publish(stage: Path, base: Path) -> Path:
    """Move a finished staging folder to ``final/<name>``, replacing an earlier one."""
    final = base / stage.name
    old = _state_dir(base, stage.name) / f"{stage.name}.replaced"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    stage.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def _fresh_checkpoint(state: Path, inputs: dict[str, Any], label: str) -> Path:
    """``state``, rid of a fine-tuning checkpoint written for other ``inputs`` (settings
    changed since: a rerun redoes the model rather than resuming another one), with ``inputs``
    recorded for the next run."""
    record = state / INPUTS_NAME
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):
        earlier = None  # none, or unreadable: the checkpoint's settings are unknown
    checkpoint = state / CHECKPOINT_NAME
    same = isinstance(earlier, dict) and _teacher_comparable(earlier) == _teacher_comparable(
        inputs
    )
    if not same and checkpoint.exists():
        log.info("%s: settings changed since its checkpoint; fine-tuning from the start", label)
        checkpoint.unlink()
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, inputs)
    return state


@contextlib.contextmanager
def _diverging(label: str, fix: str, source: str | None, key: str) -> Iterator[None]:
    """Turn a diverged fine-tune into a one-line error that names the settings to change; what
    was finished before (models, earlier checkpoints) stays, so the same command continues."""
    try:
        yield
    except FinetuneDivergedError as exc:
        raise NasConfigError(
            f"{label}: {exc.detail}; {fix}. The models finished before are kept: change the "
            "setting and run the same command to continue",
            file=source,
            key=key,
        ) from None


def _tuning_fix(config: FinetuneConfig, distilled: bool, prefix: str = "finetune") -> str:
    """The keys of a fine-tune that can make it diverge, with their values."""
    fix = (
        f"lower {prefix}.lr ({config.lr:g}) or raise {prefix}.warmup_epochs "
        f"({config.warmup_epochs:g})"
    )
    if distilled and config.distill is not None:
        fix += (
            f", or lower {prefix}.distill.temperature ({config.distill.temperature:g}) or "
            f"{prefix}.distill.weight ({config.distill.weight:g})"
        )
    return fix


def _finetune(
    model: nn.Module,
    data: SplitData,
    config: FinetuneConfig,
    state: Path,
    teacher: nn.Module | None,
    progress: Progress | None,
    label: str,
    source: str | None = None,
    fix: str = "",
) -> dict[str, Any]:
    """Fine-tune ``model`` in place, resumably in ``state``; a divergence is a one-line error
    located at ``source`` (the experiment file) naming ``fix`` (by default the finetune keys)."""

    def on_epoch(info: dict[str, Any]) -> None:
        if progress is None:
            return
        if "resumed_after" in info:
            progress("finetune_resumed", {"model": label, **info})
        else:
            progress("finetune_epoch", {"model": label, **info})

    distilled = teacher is not None and config.distill is not None
    with _diverging(label, fix or _tuning_fix(config, distilled), source, "finetune.lr"):
        result = finetune(
            model,
            data,
            config,
            teacher=teacher if config.distill is not None else None,
            checkpoint_dir=state,
            progress=on_epoch,
        )
    return result.to_dict()


def _settings(
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
        "finetune": {k: v for k, v in tune.items() if k not in _FINETUNE_INSENSITIVE},
        "compress": None if compress is None else compress.to_dict(),
        "data": {"name": data.name, "sizes": list(data.sizes), "preprocess": data.preprocess},
        "origin": origin,
    }
    return json.loads(json.dumps(settings))


def _comparable(settings: Any) -> Any:
    """``settings`` without where the run's files were (the study's storage, the experiment
    file's path, a teacher file's path: its arch_id and weights' digest say which it is): a
    run folder moved or copied whole, or an experiment or teacher file moved, finishes the same
    models (it redid every one, re-measuring its figures)."""
    if not isinstance(settings, dict) or not isinstance(settings.get("origin"), dict):
        return settings
    origin = {k: v for k, v in settings["origin"].items() if k not in _ORIGIN_LOCATIONS}
    return {**settings, "origin": _teacher_comparable(origin)}


def _teacher_comparable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (settings' origin, or a checkpoint's inputs) with its teacher named by what
    it is, not by where its file lies."""
    teacher = record.get("teacher")
    if isinstance(teacher, dict) and "weights_sha256" in teacher:
        return {**record, "teacher": {k: v for k, v in teacher.items() if k != "path"}}
    return record


def _finished_earlier(
    record: Path, settings: dict[str, Any], base: Path
) -> tuple[Measurement, ...] | None:
    """The measurements of an earlier finish with the same settings whose files all still
    exist; None when the architecture must be (re)done."""
    try:
        earlier = json.loads(record.read_text())
        if earlier.get("format") != _FINISHED_FORMAT or _comparable(
            earlier.get("settings")
        ) != _comparable(settings):
            return None
        kept = tuple(Measurement(**m) for m in earlier["measurements"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing or not ours: redo, and write a new record at the end
    if not all((base / m.file).is_file() for m in kept):
        return None
    return kept


def _sparse_finetune(
    model: nn.Module,
    data: SplitData,
    config: FinetuneConfig,
    sparsity: float,
    state: Path,
    teacher: nn.Module | None,
    progress: Progress | None,
    label: str,
    source: str | None = None,
    fix: str = "",
) -> tuple[nn.Module, dict[str, Any]]:
    """Magnitude-prune, then fine-tune with the mask held fixed, then make the zeros permanent;
    returns the model and its fine-tuning record."""
    sparse = prune_unstructured(model, sparsity=sparsity, keep_masks=True)
    training = _finetune(sparse, data, config, state, teacher, progress, label, source, fix)
    return make_sparsity_permanent(sparse), training


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def _ratios(record: dict[str, Any] | None) -> list[str]:
    """The channel ratio of each prune of a ``pruning`` record, oldest first."""
    return [
        f"{r['ratio']:.0%}" if isinstance(r.get("ratio"), (int, float)) else "an unrecorded share"
        for r in pruning_chain(record)
    ]


def _removed(record: dict[str, Any]) -> str:
    """What one prune asked for and what it removed: the ratio asks for a share of channels,
    but round_to keeps groups whole, so the parameters removed can be more, less or none."""
    ratio = record.get("ratio")
    asked = f"{ratio:.0%}" if isinstance(ratio, (int, float)) else "an unrecorded share"
    parent, params = record.get("params_parent"), record.get("params")
    if not (isinstance(parent, int) and isinstance(params, int) and parent > 0):
        return f"{asked} of its channels"  # a record written before the counts were kept
    return (
        f"asked {asked} of its channels; removed {1 - params / parent:.0%} of its parameters, "
        f"{parent:,} -> {params:,}"
    )


def _pruned_line(record: dict[str, Any], params: int, unpruned: int) -> str:
    """The card's word on a structurally pruned model: how, and its parameters against the
    unpruned architecture's (the architecture string the card shows)."""
    ratios = _ratios(record)
    how = (
        f" ({_removed(record)})"
        if len(ratios) == 1
        else f" {len(ratios)} times ({', then '.join(ratios)} of the remaining channels: the "
        "ratios compound)"
    )
    return (
        f"Structurally pruned{how}: {params:,} params, {params / unpruned:.1%} of the "
        f"{unpruned:,} of the unpruned architecture above. Its widths are arch.json's 'pruned'."
    )


def finish_architecture(
    run_dir: Path,
    space: SearchSpace,
    arch: Architecture,
    model: nn.Module,
    data: SplitData,
    *,
    finetune_config: FinetuneConfig,
    compress: CompressConfig | None,
    teacher: nn.Module | None = None,
    origin: dict[str, Any] | None = None,
    environment: dict[str, Any] | None = None,
    progress: Progress | None = None,
    pruning: dict[str, Any] | None = None,
    teacher_identity: Any = None,
) -> tuple[FinalModel, nn.Module]:
    """Fine-tune, export, compress and measure one architecture; returns it and its model.

    ``teacher_identity`` names the teacher by what it is (arch_id or file, and its settings),
    as JSON; it is what a rerun compares, while ``origin['teacher']`` words it for the card.

    ``model`` is the starting point (proxy-trained or freshly built); it is trained in place.
    ``pruning`` is the ``pruning`` record of a start that was structurally pruned before
    (``nas train`` on a pruned ``arch.json``): its folders are then named and labelled as the
    pruned model's (``<arch_id>-pruned/``, variant ``pruned``; pruned again
    ``<arch_id>-pruned-pruned/``), and the record travels on in their ``arch.json``.
    """
    job = _Finish(
        run_dir / "final",
        space,
        arch,
        data,
        finetune_config=finetune_config,
        compress=compress,
        origin=origin,
        environment=environment or {},
        progress=progress,
        pruning=pruning,
        teacher_identity=teacher_identity,
    )
    kept = job.kept()
    if kept is not None:
        if progress is not None:
            progress("final_kept", {"model": job.name, "record": str(job.record)})
        folder = job.base / job.name
        return FinalModel(arch.arch_id, folder, kept), load_architecture(folder / "arch.json")
    return job.run(model, teacher), model


class _Finish:
    """One architecture's finish (:func:`finish_architecture`): what it depends on, and, as its
    steps run, the variants to measure and what each folder's model card will say.

    The steps: fine-tune the float model and export it (:meth:`run`), quantize a float model to
    INT8 beside it (:meth:`_int8`), prune it structurally (:meth:`_prune`), sparsify it
    (:meth:`_sparsify`); then measure every variant and publish the folders
    (:meth:`_measure_and_publish`). Each folder is built in staging and moved into ``final/``
    whole; ``finished.json`` is written last.
    """

    def __init__(
        self,
        base: Path,
        space: SearchSpace,
        arch: Architecture,
        data: SplitData,
        *,
        finetune_config: FinetuneConfig,
        compress: CompressConfig | None,
        origin: dict[str, Any] | None,
        environment: dict[str, Any],
        progress: Progress | None,
        pruning: dict[str, Any] | None,
        teacher_identity: Any,
    ) -> None:
        self.base, self.space, self.arch, self.data = base, space, arch, data
        self.finetune_config, self.compress = finetune_config, compress
        self.environment, self.progress, self.pruning = environment, progress, pruning
        # a start pruned n times is the folder '<arch_id>' + n * '-pruned', its variants after it
        self.name = arch.arch_id + "-pruned" * len(pruning_chain(pruning))
        self.kind = self.name.removeprefix(arch.arch_id).removeprefix("-") or "fp32"
        self.origin = {**(origin or {}), "arch_id": arch.arch_id}
        self.source = self.origin.get("experiment")
        # the teacher compared by identity, never by the words of its role on the card
        self.settings = _settings(
            arch, finetune_config, compress, data, {**self.origin, "teacher": teacher_identity}
        )
        self.settings["pruning"] = pruning
        self.record = _state_dir(base, self.name) / FINISHED_NAME
        self.taught = ", distilling from it" if finetune_config.distill is not None else ""
        # variant name -> (model to time, runtime, file, folder, params)
        self.variants: dict[str, dict[str, Any]] = {}
        # the training record and the card's word on pruning of each folder's model
        self.trainings: dict[str, dict[str, Any]] = {}
        self.structure: dict[str, str] = {}
        self.origins: dict[str, dict[str, Any]] = {}  # of the folders made from the float model
        # set by run(), from the data and the starting model
        self.example: torch.Tensor  # images to trace and check exports with
        self.calibration: torch.Tensor  # INT8 calibration images
        self.extra: dict[str, Any]  # arch.json keys of every folder (preprocess, split, origin)
        self.float_extra: dict[str, Any]  # those of the float model's folder
        self.widths: dict[str, dict[str, int]] | None  # a pruned start's channel counts
        self.unpruned_params: int
        self.inputs: dict[str, Any]  # what the float model's fine-tuning checkpoint depends on

    def kept(self) -> tuple[Measurement, ...] | None:
        """The measurements of an earlier finish this one would repeat (None: do it)."""
        return _finished_earlier(self.record, self.settings, self.base)

    def run(self, model: nn.Module, teacher: nn.Module | None) -> FinalModel:
        """Fine-tune ``model`` in place (distilling from ``teacher``), then export, compress,
        measure and publish; returns what was finished."""
        space, arch, data, compress = self.space, self.arch, self.data, self.compress
        self.example = data.x_val[:8]
        calibration_n = compress.quantize.calibration if compress and compress.quantize else 256
        self.calibration = data.x_train[:calibration_n]
        check_calibration(self.calibration, tuple(space.input_shape), source=f"data '{data.name}'")
        self.extra = {
            "preprocess": data.preprocess,
            "data_split": data.split_recipe,
            "origin": self.origin,
        }
        unpruned = space.build(arch)
        self.unpruned_params = _params(unpruned)
        # a start that was already pruned (``nas train`` on a pruned arch.json) keeps its widths
        self.widths = shape_overrides(model, unpruned) or None
        pruning = self.pruning
        self.float_extra = self.extra if pruning is None else {**self.extra, "pruning": pruning}
        # what each fine-tuning checkpoint depends on: the float model's, then each variant's
        # (not where the run, its study or the experiment file lie: a moved run resumes)
        self.inputs = {k: self.settings[k] for k in ("arch", "finetune", "data")}
        self.inputs["teacher"] = self.settings["origin"].get("teacher")
        if self.widths is not None:  # (a key only then: an unpruned model's checkpoints stay)
            self.inputs["pruned"] = self.widths
        name = self.name
        self.trainings[name] = _finetune(
            model,
            data,
            self.finetune_config,
            _fresh_checkpoint(_state_dir(self.base, name), self.inputs, name),
            teacher,
            self.progress,
            name,
            self.source,
        )
        model.eval()
        self._stage(name, "exporting FP32 (safetensors, ONNX, torch.export)")
        x_held, y_held, split = data.held_out()
        folder = _staging(self.base, name)
        export_float(
            folder,
            space,
            arch,
            model,
            example=self.example,
            extra=self.float_extra,
            metrics={f"accuracy_{split}": evaluate(model, x_held, y_held)[0]},
            pruned=self.widths,
        )
        if pruning is not None:
            self.structure[name] = _pruned_line(pruning, _params(model), self.unpruned_params)
        params = nonzero_params(model)
        self.variants[self.kind] = _torch_variant(model, folder, params)
        self.variants[f"{self.kind}/onnx"] = _onnx_variant(folder / "model.onnx", folder, params)
        if compress is not None and compress.quantize is not None:
            variant = "int8" if self.kind == "fp32" else f"{self.kind}+int8"
            self._int8(variant, model, folder, self.widths, self.float_extra)
        if compress is not None and compress.prune is not None:
            self._prune(model)
        if compress is not None and compress.sparsity is not None:
            self._sparsify(model)
        return self._measure_and_publish()

    # -- the variants -------------------------------------------------------------------------

    def _int8(
        self,
        variant: str,
        float_model: nn.Module,
        out: Path,
        pruned: dict[str, dict[str, int]] | None,
        extra: dict[str, Any],
    ) -> None:
        """Quantize ``float_model`` (exported in ``out``) to ``out/model_int8.onnx``: PTQ, and
        QAT when the settings ask for it or PTQ lost more than ``max_drop``."""
        compress, data, calibration = self.compress, self.data, self.calibration
        assert compress is not None and compress.quantize is not None
        q = compress.quantize
        self._stage(
            out.name, f"quantizing to INT8 ({q.tool}, {len(calibration)} calibration images)"
        )
        tool = (
            "PyTorch PT2E (torchao, x86 quantizer)"
            if q.tool == "pt2e"
            else "ONNX Runtime's static quantizer on model.onnx"
        )
        float_acc = evaluate(float_model, data.x_val, data.y_val)[0]
        quantized: nn.Module | None = None
        if q.tool == "onnxruntime":  # from the FP32 ONNX model export_float wrote to ``out``
            quantize_onnx(out / "model.onnx", out / "model_int8.onnx", calibration)
            int8_model: nn.Module = OnnxModule(out / "model_int8.onnx", threads=None)
        else:
            int8_model = quantized = quantize_int8(float_model, calibration)
        drop = float_acc - evaluate(int8_model, data.x_val, data.y_val)[0]
        mode = f"ptq ({q.tool})"
        how = (
            f"post-training quantization (PTQ) with {tool}, observers calibrated on "
            f"{len(calibration)} training images; it lost {drop:.3f} accuracy on val"
        )
        recipe: dict[str, Any] = {
            "method": "ptq",
            "tool": q.tool,
            "calibration_images": len(calibration),
            "ptq_val_accuracy_drop": round(drop, 6),
        }
        if q.qat == "always" or (q.qat == "auto" and drop > q.max_drop):
            why = (
                "qat: always"
                if q.qat == "always"
                else f"PTQ ({q.tool}) lost {drop:.3f} accuracy on val, more than max_drop "
                f"{q.max_drop:g}"
            )
            flow = (
                "PT2E flow: tool onnxruntime has no quantization-aware training"
                if q.tool == "onnxruntime"
                else "PT2E flow"
            )
            said = (
                f"{why}: quantization-aware training (QAT, {flow}), {_epochs(q.qat_epochs)} at "
                f"lr {q.qat_lr:g}"
            )
            log.info("%s: %s", out.name, said)
            self._stage(out.name, said)
            how = (
                f"quantization-aware training (QAT) with PyTorch PT2E ({flow}), "
                f"{_epochs(q.qat_epochs)} at lr {q.qat_lr:g} from the float model, observers "
                f"calibrated on {len(calibration)} training images; chosen because {why}"
            )
            recipe.update(
                {"method": "qat", "tool": "pt2e", "qat_epochs": q.qat_epochs, "qat_lr": q.qat_lr}
            )
            qat_config = replace(
                self.finetune_config,
                epochs=q.qat_epochs,
                lr=q.qat_lr,
                warmup_epochs=0.0,
                distill=None,
            )

            def train(prepared: nn.Module) -> None:
                fix = (
                    f"lower compress.quantize.qat_lr ({q.qat_lr:g}), or set "
                    "compress.quantize.qat: never"
                )
                with _diverging(out.name, fix, self.source, "compress.quantize.qat_lr"):
                    finetune(prepared, data, qat_config)

            quantized = quantize_int8(float_model, calibration, train=train)
            mode = "qat (pt2e)"
        extra = {**extra, "quantization": mode, "quantization_recipe": recipe}
        if quantized is not None:
            export_int8(
                out,
                self.space,
                self.arch,
                quantized,
                example=self.example,
                check=data.x_val,
                pruned=pruned,
                extra=extra,
            )
        else:
            write_int8_file(out, self.space, self.arch, pruned=pruned, extra=extra)
        self.trainings[out.name] = {**self.trainings[out.name], "INT8 (model_int8.onnx)": how}
        self.variants[variant] = _onnx_variant(
            out / "model_int8.onnx", out, nonzero_params(float_model)
        )

    def _prune(self, model: nn.Module) -> None:
        """Prune ``model``'s channels (Torch-Pruning), fine-tune it to recover, export it (and
        its INT8 twin) in ``<name>-pruned/``."""
        compress, space, arch, name = self.compress, self.space, self.arch, self.name
        assert compress is not None and compress.prune is not None
        p, pruning, unpruned_params = compress.prune, self.pruning, self.unpruned_params
        pfolder = _staging(self.base, f"{name}-pruned")
        pkind = pfolder.name.removeprefix(f"{arch.arch_id}-")
        self._stage(pfolder.name, f"pruning {p.ratio:.0%} of channels (Torch-Pruning)")
        parent_params = _params(model)
        pruned = prune_structured(model, self.example, ratio=p.ratio, round_to=p.round_to)
        overrides = shape_overrides(pruned, space.build(arch))
        n_pruned = _params(pruned)
        if n_pruned >= parent_params:
            # (raised before anything of the float model is lost: its fine-tuned checkpoint
            # stays, so a rerun with another round_to or ratio resumes from it)
            raise NasConfigError(
                f"{pfolder.name}: structured pruning removed nothing: ratio {p.ratio:g} with "
                f"round_to {p.round_to} leaves every channel group of {name} whole (a pruned "
                "group keeps a multiple of round_to channels; one narrower than round_to is "
                "left as it is); lower compress.prune.round_to or raise compress.prune.ratio, "
                "or set compress.prune: null. The fine-tuned float model is kept: the same "
                "command resumes from it",
                file=self.source,
                key="compress.prune.round_to",
            )
        precord: dict[str, Any] = {
            **p.to_dict(),
            "params_parent": parent_params,
            "params": n_pruned,
            "params_unpruned": unpruned_params,
            "params_ratio": round(n_pruned / unpruned_params, 6),  # to the unpruned: compounded
        }
        if pruning is not None:
            precord["parent_pruning"] = pruning
        removed = _removed(precord).replace(" its ", " ")
        how = (
            f"structured pruning (Torch-Pruning, widths rounded to multiples of {p.round_to}) "
            f"of {name}: {removed}"
        )
        log.info("%s: %s", pfolder.name, removed)
        self._stage(pfolder.name, f"pruned: {removed}")
        if pruning is not None:
            how += (
                f", itself already pruned ({', then '.join(_ratios(pruning))} of its channels), "
                f"so the ratios compound: {n_pruned:,} params, "
                f"{n_pruned / unpruned_params:.1%} of the unpruned {arch.arch_id}'s "
                f"{unpruned_params:,}"
            )
        self.structure[pfolder.name] = _pruned_line(precord, n_pruned, unpruned_params)
        self.trainings[pfolder.name] = {"compression": f"{how}, not fine-tuned"}
        if p.epochs:
            pcfg = replace(self.finetune_config, epochs=p.epochs)
            # the unpruned parent is the natural teacher of its pruned child
            recovery = _finetune(
                pruned,
                self.data,
                pcfg,
                _fresh_checkpoint(
                    _state_dir(self.base, pfolder.name),
                    {**self.inputs, "prune": p.to_dict()},
                    pfolder.name,
                ),
                model,
                self.progress,
                pfolder.name,
                self.source,
                _tuning_fix(pcfg, True) + f" (the recovery fine-tune of compress.prune, "
                f"{_epochs(p.epochs)}), or lower compress.prune.ratio ({p.ratio:g})",
            )
            self.trainings[pfolder.name] = {
                "compression": f"{how}, then fine-tuned {_epochs(p.epochs)}{self.taught}",
                **recovery,
            }
        pruned.eval()
        self.origins[pfolder.name] = self._derived("pruned")
        pextra = {**self.extra, "origin": self.origins[pfolder.name], "pruning": precord}
        export_float(
            pfolder, space, arch, pruned, example=self.example, pruned=overrides, extra=pextra
        )
        pruned_params = nonzero_params(pruned)
        self.variants[pkind] = _torch_variant(pruned, pfolder, pruned_params)
        self.variants[f"{pkind}/onnx"] = _onnx_variant(
            pfolder / "model.onnx", pfolder, pruned_params
        )
        if compress.quantize is not None:
            self._int8(f"{pkind}+int8", pruned, pfolder, overrides, pextra)

    def _sparsify(self, model: nn.Module) -> None:
        """Zero the smallest weights of ``model`` (a copy), fine-tune under the mask, export
        it in ``<name>-sparse/``."""
        compress, name = self.compress, self.name
        assert compress is not None and compress.sparsity is not None
        sfolder = _staging(self.base, f"{name}-sparse")
        skind = sfolder.name.removeprefix(f"{self.arch.arch_id}-")
        self._stage(sfolder.name, f"magnitude pruning to {compress.sparsity:.0%} sparsity")
        scfg = replace(
            self.finetune_config,
            epochs=compress.sparse_epochs_for(self.finetune_config.epochs),
        )
        sparse, recovery = _sparse_finetune(
            model,
            self.data,
            scfg,
            compress.sparsity,
            _fresh_checkpoint(
                _state_dir(self.base, sfolder.name),
                {
                    **self.inputs,
                    "sparsity": compress.sparsity,
                    # (a key only when set: checkpoints made before it stay valid)
                    **({"epochs": scfg.epochs} if compress.sparse_epochs is not None else {}),
                },
                sfolder.name,
            ),
            model,
            self.progress,
            sfolder.name,
            self.source,
            _tuning_fix(scfg, True) + f" (the fine-tune under the mask of compress.sparsity), "
            f"or lower compress.sparsity ({compress.sparsity:g})",
        )
        self.trainings[sfolder.name] = {
            "compression": (
                f"magnitude pruning of {compress.sparsity:.0%} of the weights of "
                f"{name}, fine-tuned {_epochs(scfg.epochs)} with the zeros held{self.taught}"
            ),
            **recovery,
        }
        if self.pruning is not None:
            self.structure[sfolder.name] = self.structure[name]
        self.origins[sfolder.name] = self._derived("sparsified")
        export_float(
            sfolder,
            self.space,
            self.arch,
            sparse,
            example=self.example,
            pruned=self.widths,
            extra={
                **self.float_extra,
                "origin": self.origins[sfolder.name],
                "sparsity": compress.sparsity,
            },
        )
        self.variants[skind] = _torch_variant(sparse, sfolder, nonzero_params(sparse))

    # -- measuring and publishing -------------------------------------------------------------

    def _measure_and_publish(self) -> FinalModel:
        """Measure every variant, write each folder's card and ``measurements.json``, move the
        folders into ``final/``, and last write ``finished.json``."""
        space, arch, data, variants = self.space, self.arch, self.data, self.variants
        x_held, y_held, split = data.held_out()
        self._stage(
            self.name,
            f"measuring {len(variants)} variants (accuracy on {split}, size, latency at batch 1)",
        )
        measurements = _measure(variants, x_held, y_held, split, self.compress)
        _warn_near_chance(measurements, data.num_classes, arch.arch_id)
        rows = [m.to_dict() for m in measurements]
        folders = {Path(v["folder"]) for v in variants.values()}
        for sub in folders:
            # this folder's, its files named from the folder itself (it ships alone)
            mine = [
                {**r, "file": Path(r["file"]).relative_to(sub.name).as_posix()}
                for r, v in zip(rows, variants.values(), strict=True)
                if Path(v["folder"]) == sub
            ]
            write_model_card(
                sub,
                title=f"{sub.name}: {space.name} architecture {arch.arch_id}",
                arch_string=space.format(arch),
                space_name=space.name,
                measurements=mine,
                training=self.trainings[sub.name],
                origin=self.origins.get(sub.name, self.origin),
                environment=self.environment,
                preprocess=data.preprocess,
                timing=_latency(self.compress).describe(),
                split=describe_split(data.split_recipe),
                structure=self.structure.get(sub.name, ""),
            )
            atomic_write_json(sub / "measurements.json", {"measurements": mine})
        for sub in folders:
            _publish(sub, self.base)
        # last: from here on a rerun with the same settings keeps this architecture as it is
        atomic_write_json(
            self.record,
            {"format": _FINISHED_FORMAT, "settings": self.settings, "measurements": rows},
        )
        if self.progress is not None:
            self.progress("final_done", {"model": self.name, "variants": len(measurements)})
        return FinalModel(arch.arch_id, self.base / self.name, tuple(measurements))

    def _derived(self, how: str) -> dict[str, Any]:
        """The origin of a model made from the fine-tuned float model (pruned, sparse): it
        starts from that model, which is also its teacher when fine-tunes distill."""
        name, origin = self.name, self.origin
        before = {k: origin[k] for k in ("started_from", "teacher") if k in origin}
        teacher = (
            f"{name}, the model it was {how} from"
            if self.finetune_config.distill is not None
            else f"none: its fine-tune after it was {how} did not distill"
        )
        said = "; ".join(f"{k}: {v}" for k, v in before.items())
        return {
            **origin,
            "started_from": f"{name}, fine-tuned, then {how}"
            + (f" ({name}'s own {said})" if said else ""),
            "teacher": teacher,
        }

    def _stage(self, label: str, what: str) -> None:
        if self.progress is not None:
            self.progress("final_stage", {"model": label, "stage": what})


# the setting to look at for a variant that learnt nothing, by its name after the arch_id
_NEAR_CHANCE_FIX = {
    "sparse": "lower compress.sparsity",
    "pruned": "lower compress.prune.ratio or raise compress.prune.epochs",
    "int8": "set compress.quantize.qat: always or auto",
}


def _warn_near_chance(measurements: list[Measurement], classes: int, arch_id: str) -> None:
    """Warn of a finished variant whose held-out accuracy is near chance (the search's own
    threshold, :func:`nas.search._study.near_chance`): measured, exported, and useless."""
    from nas.search._study import near_chance

    limit = near_chance(classes)
    for m in measurements:
        if m.accuracy > limit:
            continue
        parts = dict.fromkeys(re.split(r"[-+]", m.variant.split("/")[0]))  # pruned-sparse+int8
        fixes = [_NEAR_CHANCE_FIX[p] for p in parts if p in _NEAR_CHANCE_FIX]
        if not fixes:
            fixes = ["check finetune (lr, epochs) and the data"]
        log.warning(
            "%s %s (%s): %s accuracy %.3f is near chance (<= %.2f for %d classes): the model "
            "learnt next to nothing; %s",
            arch_id,
            m.variant,
            m.runtime,
            m.split,
            m.accuracy,
            limit,
            classes,
            "; ".join(fixes),
        )


def _latency(compress: CompressConfig | None) -> LatencyConfig:
    return compress.latency if compress is not None else LatencyConfig()


def _torch_variant(model: nn.Module, folder: Path, params: int) -> dict[str, Any]:
    return {
        "model": model,
        "runtime": "torch-eager",
        "file": folder / "weights.safetensors",
        "folder": folder,
        "params": params,
    }


def _onnx_variant(path: Path, folder: Path, params: int) -> dict[str, Any]:
    return {
        "model": None,
        "runtime": "onnxruntime",
        "file": path,
        "folder": folder,
        "params": params,
    }


def _measure(
    variants: dict[str, dict[str, Any]],
    x: torch.Tensor,
    y: torch.Tensor,
    split: str,
    compress: CompressConfig | None,
) -> list[Measurement]:
    latency = _latency(compress)
    one = x[:1].contiguous()
    one_np = one.numpy()
    runners: dict[str, Callable[[], Any]] = {}
    accuracy: dict[str, float] = {}
    for name, v in variants.items():
        if v["runtime"] == "onnxruntime":
            session = OnnxModule(v["file"], threads=latency.threads)
            accuracy[name] = float((session.run_numpy(x.numpy()).argmax(1) == y.numpy()).mean())
            runners[name] = partial(session.run_numpy, one_np)
        else:
            model = v["model"].eval()
            accuracy[name] = evaluate(model, x, y)[0]
            runners[name] = partial(model, one)
    samples = time_interleaved(runners, latency)
    out = []
    for name, v in variants.items():
        p50, iqr = summarize(samples[name])
        out.append(
            Measurement(
                variant=name,
                runtime=v["runtime"],
                accuracy=accuracy[name],
                split=split,
                latency_ms=p50,
                latency_ms_iqr=iqr,
                size_bytes=Path(v["file"]).stat().st_size,
                size_deflated_bytes=deflated_size(v["file"]),
                params_nonzero=int(v["params"]),
                file=str(Path(v["file"]).relative_to(Path(v["folder"]).parent)),
            )
        )
    return out


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
    ``run_dir/weights/<arch_id>.safetensors``.
    """
    trials = trials or {}
    start_doc = read_architecture_file(start)[2] if start is not None else {}
    # a start pruned before: its record travels on (its folders are named after it)
    pruning = start_doc.get("pruning") if isinstance(start_doc.get("pruning"), dict) else None
    if pruning is None and start_doc.get("pruned"):
        pruning = {"note": "pruned widths; how they were made is not recorded in the start"}

    def _identity(arch_id: str) -> dict[str, Any]:
        """The best member as a teacher: what it is and what its training depends on."""
        tune = {k: v for k, v in no_kd.to_dict().items() if k not in _FINETUNE_INSENSITIVE}
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


def export_trial(
    storage: str, study_name: str, number: int, out: str | Path | None = None
) -> Path:
    """The export folder of any trial of a stored study (its proxy-trained weights)."""
    from nas.pipeline import environment
    from nas.search import load_study
    from nas.search._evaluate import WORST
    from nas.search._study import PREPROCESS_ATTR, SPACE_ATTR
    from nas.space import space_from_dict

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
    space = space_from_dict(study.user_attrs[SPACE_ATTR], source=f"study {study_name}")
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
        "search metrics (proxy accuracy, predicted costs)": "; ".join(lines),
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


def measured_frame(results: list[FinalModel], objectives: list[str]) -> pd.DataFrame:
    """The finished variants as rows over the search's objectives (NaN where not measured).

    ``error``/``accuracy`` are held-out figures, ``params`` counts nonzero weights, and every
    ``latency_ms@<device>`` objective gets the latency measured on this machine in the
    variant's own runtime; other metrics are not re-measured.
    """
    rows = []
    for r in results:
        for m in r.measurements:
            row: dict[str, Any] = {"label": f"{m.variant} ({m.runtime})", "arch_id": r.arch_id}
            for name in objectives:
                if name == "error":
                    row[name] = 1.0 - m.accuracy
                elif name == "accuracy":
                    row[name] = m.accuracy
                elif name == "params":
                    row[name] = m.params_nonzero
                elif name.startswith("latency_ms@"):
                    row[name] = m.latency_ms
                else:
                    row[name] = float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def plot_final(
    frame: pd.DataFrame,
    objectives: list[str],
    directions: list[str],
    results: list[FinalModel],
    path: Path,
) -> None:
    """``pareto_final.png``: the search's points with the measured finished variants on top."""
    from nas.report import plot_pareto_pairs, save_figure

    measured = measured_frame(results, objectives)
    title = "search (latency predicted by the cost model) and finished models (measured)"
    save_figure(
        plot_pareto_pairs(frame, objectives, directions, title=title, measured=measured), path
    )
