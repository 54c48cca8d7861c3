"""The export folder of a finished model: everything another project needs to use it.

One folder per model (and per structurally pruned variant)::

    arch.json            the architecture (+ pruned channel counts), metrics, preprocessing
    weights.safetensors  float weights
    model.onnx           float ONNX graph, checked against PyTorch in ONNX Runtime (1e-4)
    model.pt2            ``torch.export`` program (``torch.export.load(...).module()``)
    model_int8.onnx      INT8 QDQ graph beside its FP32 twin, run by ONNX Runtime
    model_int8.json      arch file of the INT8 variant (``load_architecture`` runs it)
    MODEL_CARD.md        measured metrics, machine, the search it came from, how to load it
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_path, atomic_write_bytes, atomic_write_text, file_sha256
from nas._quiet import quiet_third_party
from nas._trace import check_images, export_program
from nas.compress import apply_shape_overrides
from nas.export._archfile import state_mismatch, write_architecture_file
from nas.export._onnx import export_onnx, is_quantized
from nas.space import Architecture, SearchSpace, op_module_folders

__all__ = [
    "export_float",
    "export_int8",
    "onnx_metadata",
    "write_int8_file",
    "write_model_card",
]

logger = logging.getLogger(__name__)


def weights_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file of ``state`` and ``metadata``, the same bytes for the same tensors
    (safetensors writes its metadata in a random order: sorted here)."""
    from safetensors.torch import save

    blob = save(dict(state), metadata=dict(metadata))
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > n:  # (never: the same keys, another order; but never a corrupt file)
        return blob
    return blob[:8] + text.ljust(n) + blob[8 + n :]


def _save_weights(model: nn.Module, path: Path, space: SearchSpace, arch: Architecture) -> None:
    """Save the state dict with the architecture it belongs to in the file's metadata (two
    architectures can have the same tensors: a cell whose pooling became a skip)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"arch_id": arch.arch_id, "space": space.name, "space_hash": space.hash}
    atomic_write_bytes(path, weights_bytes(state, meta))


def _save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    for node in program.graph.nodes:  # Python stack traces naming this machine's paths
        node.meta.pop("stack_trace", None)
    with atomic_path(path, suffix=".pt2") as tmp, quiet_third_party(), open(tmp, "wb") as file:
        torch.export.save(program, file)  # a file object: the archive's folder is 'archive/'


@contextlib.contextmanager
def _exporting(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` on the CPU in eval mode, put back in its mode and on its device after."""
    training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        yield model.cpu().eval()
    finally:
        model.to(device).train(training)


def export_float(
    out_dir: str | Path,
    space: SearchSpace,
    arch: Architecture,
    model: nn.Module,
    *,
    example: torch.Tensor,
    metrics: dict[str, Any] | None = None,
    pruned: dict[str, dict[str, int]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``arch.json``, ``weights.safetensors``, ``model.onnx`` and ``model.pt2``.

    Args:
        out_dir: The export folder (created).
        space: The space ``arch`` is from.
        arch: The architecture.
        model: Its trained float model (pruned channel counts as in ``pruned``).
        example: Input images ``(N, C, H, W)``; the ONNX check runs on them.
        metrics: Measured metrics to record in ``arch.json``.
        pruned: Shape overrides of a structurally pruned model (``nas.compress``).
        extra: More top-level keys for ``arch.json`` (preprocessing, origin).

    Returns:
        ``{"files": [...], "onnx_check": {...}}``: the file names written, and ONNX Runtime's
        agreement with PyTorch (:func:`export_onnx`).

    Raises:
        NasConfigError: ``model`` is not ``arch``'s (its tensors differ from those ``arch``,
        with ``pruned``'s widths, builds), or ``example`` does not fit it. ``model`` is exported
        on the CPU in eval mode, and left in the mode and on the device it was in.
    """
    check_images(example, model, name="example")
    with torch.device("meta"):  # the tensors arch builds, allocating none
        reference = space.build(arch)
        if pruned:
            apply_shape_overrides(reference, pruned, source="pruned")
    differ = state_mismatch(reference.state_dict(), model.state_dict())
    if differ is not None:
        raise NasConfigError(
            f"model: not the model of architecture {arch.arch_id}"
            f"{' with the pruned widths given' if pruned else ''} ({differ}); pass the model "
            "space.build(arch) made (after pruning: the pruned widths, pruned=...)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _exporting(model) as model:
        _save_weights(model, out / "weights.safetensors", space, arch)
        meta = onnx_metadata(space, arch, extra, pruned=pruned)
        program = export_program(model, example)  # traced once, for model.onnx and model.pt2
        check = export_onnx(model, example, out / "model.onnx", metadata=meta, program=program)
        _save_program(program, out / "model.pt2")
    write_architecture_file(
        out / "arch.json",
        space,
        arch,
        metrics=metrics,
        weights=out / "weights.safetensors",
        pruned=pruned,
        extra={**(extra or {}), "onnx": "model.onnx", "program": "model.pt2"},
    )
    files = ["arch.json", "weights.safetensors", "model.onnx", "model.pt2"]
    for name, folder in op_module_folders(space).items():  # its custom ops travel with it
        source = Path(folder) / f"{name}.py"
        if source.is_file():
            shutil.copy2(source, out / source.name)
            files.append(source.name)
    return {"files": files, "onnx_check": check}


def export_int8(
    out_dir: str | Path,
    space: SearchSpace,
    arch: Architecture,
    quantized: nn.Module,
    *,
    example: torch.Tensor,
    check: torch.Tensor,
    metrics: dict[str, Any] | None = None,
    pruned: dict[str, dict[str, int]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model_int8.onnx`` (QDQ) and ``model_int8.json`` beside the float files.

    ``quantized`` is :func:`nas.compress.quantize_int8`'s graph; a float model is refused (its
    file would say int8 of float arithmetic)."""
    if not is_quantized(quantized):
        raise NasConfigError(
            "quantized: a float model, not an INT8 graph; quantize it first "
            "(nas.compress.quantize_int8), or export it with export_float"
        )
    out = Path(out_dir)
    result = export_onnx(
        quantized,
        example,
        out / "model_int8.onnx",
        check=check,
        atol=None,
        metadata=onnx_metadata(space, arch, extra, precision="int8", pruned=pruned),
    )
    write_int8_file(out, space, arch, metrics=metrics, pruned=pruned, extra=extra)
    return {"files": ["model_int8.onnx", "model_int8.json"], "onnx_check": result}


def onnx_metadata(
    space: SearchSpace,
    arch: Architecture,
    extra: dict[str, Any] | None,
    *,
    precision: str = "fp32",
    pruned: dict[str, dict[str, int]] | None = None,
) -> dict[str, str]:
    """What an exported ONNX file says about itself (``metadata_props``): the architecture and,
    when known, the input recipe, so the file alone tells what it is and how to feed it."""
    meta = {"nas.arch_id": arch.arch_id, "nas.space": space.name, "nas.arch": space.format(arch)}
    extra = extra or {}
    preprocess = extra.get("preprocess")
    if preprocess is not None:
        meta["nas.preprocess"] = json.dumps(preprocess, sort_keys=True)
    # which variant the file is, so that a file found alone says it (its name may not), as
    # summary.csv names it: 'pruned-pruned' for a model pruned twice, '+int8' after the rest
    made = ["pruned"] * len(pruning_chain(extra.get("pruning")))
    if extra.get("sparsity") is not None:
        made.append("sparse")
        meta["nas.sparsity"] = str(extra["sparsity"])
    shape = "-".join(made)
    if precision != "fp32":
        shape = f"{shape}+{precision}" if shape else precision
    meta["nas.variant"] = shape or "fp32"
    if pruned:
        meta["nas.pruned"] = json.dumps(pruned, sort_keys=True)
    return meta


def pruning_chain(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The structured prunes a ``pruning`` record describes, oldest first (each record names
    the one before it as ``parent_pruning``)."""
    chain = []
    while isinstance(record, dict):
        chain.append(record)
        record = record.get("parent_pruning")
    return chain[::-1]


def write_int8_file(
    out_dir: str | Path,
    space: SearchSpace,
    arch: Architecture,
    *,
    metrics: dict[str, Any] | None = None,
    pruned: dict[str, dict[str, int]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model_int8.json``: the loader of the ``model_int8.onnx`` beside it, with that
    file's SHA-256 (a loader refuses another model's ``model_int8.onnx`` put in its place)."""
    path = Path(out_dir) / "model_int8.json"
    onnx = {"onnx": "model_int8.onnx", "onnx_sha256": file_sha256(path.parent / "model_int8.onnx")}
    write_architecture_file(
        path,
        space,
        arch,
        metrics=metrics,
        pruned=pruned,
        extra={**(extra or {}), **onnx, "precision": "int8"},
    )
    return path


#: accuracy a faster variant may lose and still be the one to deploy (the compression goal's)
DEPLOY_MAX_DROP = 0.01


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # e.g. the origin of the model a model came from
        return "(" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + ")"
    return str(value)


#: a column's header where its name alone would mislead
_HEADERS = {"params_nonzero": "params (nonzero)"}


def _table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    names = [_HEADERS.get(c, c) for c in cols]
    head = ["| " + " | ".join(names) + " |", "|" + "---|" * len(cols)]
    return head + ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]


def _timed(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measurements with both a latency and an accuracy."""
    return [m for m in measurements if m.get("latency_ms") and m.get("accuracy") is not None]


def _deploy_pick(measurements: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The measured variant to deploy: the fastest within DEPLOY_MAX_DROP of the best accuracy."""
    timed = _timed(measurements)
    if not timed:
        return None
    best = max(float(m["accuracy"]) for m in timed)
    return min(
        (m for m in timed if float(m["accuracy"]) >= best - DEPLOY_MAX_DROP - 1e-12),
        key=lambda m: float(m["latency_ms"]),
    )


def _deploy_lines(pick: dict[str, Any], measurements: list[dict[str, Any]]) -> list[str]:
    def name(m: dict[str, Any]) -> str:
        return f"`{Path(str(m['file'])).name}` ({m['variant']}, {m['runtime']})"

    others = [m for m in _timed(measurements) if m is not pick]
    if not others:
        return [
            f"Only {name(pick)} was timed for this folder: {1e3 * float(pick['latency_ms']):.4g} "
            "us at batch 1. Its other files were not measured.",
            "",
        ]
    lines = [
        f"Deploy {name(pick)}: the fastest variant measured here within "
        f"{100 * DEPLOY_MAX_DROP:g} point of the best accuracy, "
        f"{1e3 * float(pick['latency_ms']):.4g} us at batch 1. The others, on this machine:",
        "",
    ]
    for m in others:
        ratio = float(m["latency_ms"]) / float(pick["latency_ms"])
        speed = f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"
        points = 100 * (float(m["accuracy"]) - float(pick["accuracy"]))
        accuracy = (
            "as accurate"
            if abs(points) < 1e-9
            else f"{abs(points):.2f} points {'more' if points > 0 else 'less'} accurate"
        )
        lines.append(f"- {name(m)}: {1e3 * float(m['latency_ms']):.4g} us ({speed}), {accuracy}")
    return [*lines, ""]


def _training_lines(training: dict[str, Any]) -> list[str]:
    history = training.get("history")
    if not (isinstance(history, list) and history and all(isinstance(h, dict) for h in history)):
        history = None  # not a list of per-epoch records: a bullet like the rest
    lines = [f"- {k}: {_fmt(v)}" for k, v in training.items() if history is None or k != "history"]
    if history is not None:
        lines += ["", "Per epoch:", "", *_table(history, list(history[0]))]
    return lines


def write_model_card(
    out_dir: str | Path,
    *,
    title: str,
    arch_string: str,
    space_name: str,
    measurements: list[dict[str, Any]],
    training: dict[str, Any],
    origin: dict[str, Any],
    environment: dict[str, Any],
    preprocess: dict[str, Any],
    timing: str = "",
    split: str = "",
    structure: str = "",
) -> Path:
    """Write ``MODEL_CARD.md``: what the model is, what was measured, which file to deploy and
    how to load it (only the files the folder holds).

    ``measurements`` name their ``file`` relative to ``out_dir``. ``timing`` says how latency
    was timed (threads, calls); the card leaves out the process's own torch thread count, which
    says nothing about the measurements. ``split`` says how the data was split (the held-out
    split's recipe, :func:`nas.train.describe_split`); ``structure`` what the architecture
    string leaves out (a structurally pruned model's widths).
    """
    out = Path(out_dir)
    cols = [
        "variant",
        "runtime",
        "accuracy",
        "split",
        "latency_ms",
        "size_bytes",
        "size_deflated_bytes",
        "params_nonzero",
        "file",
    ]
    rows = _table(measurements, cols)
    if not measurements:
        rows = ["Not measured: exported straight from the search (see Training)."]
    mean, std = preprocess["mean"], preprocess["std"]
    scale = preprocess.get("pixel_scale")
    if scale is None:  # a study written before the scale was recorded
        scaled = (
            "the raw pixel values scaled to 0..1 as the training data's were (not recorded "
            "here; digits' 0..16 are divided by 16, 8-bit images by 255)"
        )
    elif scale != 1:
        scaled = f"the raw pixel values divided by {scale:g} (to 0..1)"
    else:
        scaled = "pixel values as floats"
    if isinstance(mean, (list, tuple)) and mean:
        norm = (
            f"{scaled}, then standardized per channel with mean {list(mean)} and std "
            f"{list(std)} (statistics of the training split)"
        )
    elif isinstance(mean, (list, tuple)):
        norm = f"{scaled}, not standardized"
    else:
        norm = f"{scaled}, then standardized as its training data was (mean and std {mean})"
    has_int8 = (out / "model_int8.json").is_file()
    pick = _deploy_pick(measurements)
    deploy = _deploy_lines(pick, measurements) if pick is not None else []
    picked = Path(str(pick["file"])).name if pick is not None else ""
    onnx_file = picked if picked.endswith(".onnx") else "model.onnx"
    load = ["import nas", "model = nas.load_architecture('arch.json')          # PyTorch"]
    if has_int8:
        load.append("int8 = nas.load_architecture('model_int8.json')     # INT8, ONNX Runtime")
    lines = [
        f"# {title}",
        "",
        f"Architecture (space `{space_name}`): `{arch_string}`",
        "",
        *([structure, ""] if structure else []),
        "## Measured",
        "",
        *(
            [
                "Accuracy on the split named (test, or validation where the data has no test "
                "split); latency end to end at batch 1 in the runtime named, on the machine "
                f"below{f' ({timing})' if timing else ''}. Nothing in this table is predicted.",
                "",
                *([f"Data split: {split}.", ""] if split else []),
            ]
            if measurements
            else []
        ),
        *rows,
        "",
        *(["## Which file to deploy", "", *deploy] if deploy else []),
        "## Machine",
        "",
        *(
            f"- {k}: {_fmt(v)}"
            for k, v in environment.items()
            if k not in ("packages", "torch_threads")
        ),
        "- packages: "
        + ", ".join(f"{k} {v}" for k, v in environment.get("packages", {}).items() if v),
        "",
        "## Where it came from",
        "",
        *(f"- {k}: {_fmt(v)}" for k, v in origin.items()),
        "",
        "## Training",
        "",
        *_training_lines(training),
        "",
        "## Inputs",
        "",
        f"Float images `(N, {', '.join(map(str, preprocess['input_shape']))})`, {norm}.",
        "",
        "## How to load it",
        "",
        "```python",
        *load,
        "```",
        "",
        "Without this package: `torch.export.load('model.pt2').module()`, or ONNX Runtime:",
        "",
        "```python",
        "import onnxruntime as ort",
        f"session = ort.InferenceSession('{onnx_file}')",
        "logits = session.run(None, {'x': images})[0]  # images: float32 (N, C, H, W), see Inputs",
        "```",
        "",
    ]
    path = out / "MODEL_CARD.md"
    atomic_write_text(path, "\n".join(lines))
    return path
