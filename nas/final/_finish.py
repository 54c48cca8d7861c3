"""Finishing one architecture: fine-tune, export, compress (INT8, structured pruning,
sparsity), measure every variant, and publish its folders (:func:`finish_architecture`)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_write_json
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
    write_int8_file,
    write_model_card,
)
from nas.final._state import (
    FINISHED_FORMAT,
    FINISHED_NAME,
    FinalModel,
    finish_settings,
    finished_earlier,
    forget_unstarted,
    fresh_checkpoint,
    publish,
    staging,
    state_dir,
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

log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]
#: where the value of a setting (a dotted key) came from: a ``--set``, or the experiment file
Locate = Callable[[str], "str | None"]


@contextlib.contextmanager
def _diverging(label: str, fix: str, locate: Locate, key: str) -> Iterator[None]:
    """Turn a diverged fine-tune into a one-line error that names the settings to change,
    located where ``key`` was set; what was finished before (models, earlier checkpoints)
    stays, so the same command continues."""
    try:
        yield
    except FinetuneDivergedError as exc:
        raise NasConfigError(
            f"{label}: {exc.detail}; {fix}. The models finished before are kept: change the "
            "setting and run the same command to continue",
            file=locate(key),
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
    locate: Locate,
    fix: str = "",
) -> dict[str, Any]:
    """Fine-tune ``model`` in place, resumably in ``state``; a divergence is a one-line error
    located where ``finetune.lr`` was set (``locate``) naming ``fix`` (by default the finetune
    keys)."""

    def on_epoch(info: dict[str, Any]) -> None:
        if progress is None:
            return
        if "resumed_after" in info:
            progress("finetune_resumed", {"model": label, **info})
        else:
            progress("finetune_epoch", {"model": label, **info})

    distilled = teacher is not None and config.distill is not None
    try:
        with _diverging(label, fix or _tuning_fix(config, distilled), locate, "finetune.lr"):
            result = finetune(
                model,
                data,
                config,
                teacher=teacher if config.distill is not None else None,
                checkpoint_dir=state,
                progress=on_epoch,
            )
    except NasConfigError:
        forget_unstarted(state)
        raise
    record = result.to_dict()
    # for the card: where an interrupted fine-tune went on, not the last call's start (a rerun
    # that found every epoch done said resumed_from_epoch: 200)
    del record["resumed_from_epoch"]
    record["resumed_after_epochs"] = list(result.resumed_after) or "none (one run)"
    return record


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
    locate: Locate | None = None,
) -> tuple[FinalModel, nn.Module]:
    """Fine-tune, export, compress and measure one architecture; returns it and its model.

    ``teacher_identity`` names the teacher by what it is (arch_id or file, and its settings),
    as JSON; it is what a rerun compares, while ``origin['teacher']`` words it for the card.

    ``model`` is the starting point (proxy-trained or freshly built); it is trained in place.
    ``pruning`` is the ``pruning`` record of a start that was structurally pruned before
    (``nas train`` on a pruned ``arch.json``): its folders are then named and labelled as the
    pruned model's (``<arch_id>-pruned/``, variant ``pruned``; pruned again
    ``<arch_id>-pruned-pruned/``), and the record travels on in their ``arch.json``.
    ``locate`` says where a setting came from, for an error about it (by default the
    experiment file of ``origin``).
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
        locate=locate,
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
        locate: Locate | None = None,
    ) -> None:
        self.base, self.space, self.arch, self.data = base, space, arch, data
        self.finetune_config, self.compress = finetune_config, compress
        self.environment, self.progress, self.pruning = environment, progress, pruning
        # a start pruned n times is the folder '<arch_id>' + n * '-pruned', its variants after it
        self.name = arch.arch_id + "-pruned" * len(pruning_chain(pruning))
        self.kind = self.name.removeprefix(arch.arch_id).removeprefix("-") or "fp32"
        self.origin = {**(origin or {}), "arch_id": arch.arch_id}
        source = self.origin.get("experiment")
        self.locate: Locate = locate or (lambda _key: source)
        # the teacher compared by identity, never by the words of its role on the card
        self.settings = finish_settings(
            arch, finetune_config, compress, data, {**self.origin, "teacher": teacher_identity}
        )
        self.settings["pruning"] = pruning
        self.record = state_dir(base, self.name) / FINISHED_NAME
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
        return finished_earlier(self.record, self.settings, self.base)

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
        self.trainings[name] = self._tune(model, self.finetune_config, name, {}, teacher)
        model.eval()
        self._stage(name, "exporting FP32 (safetensors, ONNX, torch.export)")
        x_held, y_held, split = data.held_out()
        folder = staging(self.base, name)
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
                with _diverging(out.name, fix, self.locate, "compress.quantize.qat_lr"):
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
        pfolder = staging(self.base, f"{name}-pruned")
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
                file=self.locate("compress.prune.round_to"),
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
            recovery = self._tune(
                pruned,
                pcfg,
                pfolder.name,
                {"prune": p.to_dict()},
                model,
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
        sfolder = staging(self.base, f"{name}-sparse")
        skind = sfolder.name.removeprefix(f"{self.arch.arch_id}-")
        self._stage(sfolder.name, f"magnitude pruning to {compress.sparsity:.0%} sparsity")
        scfg = replace(
            self.finetune_config,
            epochs=compress.sparse_epochs_for(self.finetune_config.epochs),
        )
        sparse = prune_unstructured(model, sparsity=compress.sparsity, keep_masks=True)
        recovery = self._tune(
            sparse,
            scfg,
            sfolder.name,
            {
                "sparsity": compress.sparsity,
                # (a key only when set: checkpoints made before it stay valid)
                **({"epochs": scfg.epochs} if compress.sparse_epochs is not None else {}),
            },
            model,
            _tuning_fix(scfg, True) + f" (the fine-tune under the mask of compress.sparsity), "
            f"or lower compress.sparsity ({compress.sparsity:g})",
        )
        sparse = make_sparsity_permanent(sparse)  # the mask held during the fine-tune
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
            publish(sub, self.base)
        # last: from here on a rerun with the same settings keeps this architecture as it is
        atomic_write_json(
            self.record,
            {"format": FINISHED_FORMAT, "settings": self.settings, "measurements": rows},
        )
        if self.progress is not None:
            self.progress("final_done", {"model": self.name, "variants": len(measurements)})
        return FinalModel(arch.arch_id, self.base / self.name, tuple(measurements))

    def _tune(
        self,
        model: nn.Module,
        config: FinetuneConfig,
        label: str,
        inputs: dict[str, Any],
        teacher: nn.Module | None,
        fix: str = "",
    ) -> dict[str, Any]:
        """Fine-tune the model of folder ``label`` in place, resumably: its checkpoint depends
        on the float model's inputs plus ``inputs`` (what makes this variant); returns its
        training record."""
        state = fresh_checkpoint(state_dir(self.base, label), {**self.inputs, **inputs}, label)
        return _finetune(
            model, self.data, config, state, teacher, self.progress, label, self.locate, fix
        )

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
