"""``arch.json``: a self-contained file form of an architecture, and loading it back as a model.

The file holds the architecture (schema version, space name and hash, choices, ``arch_id``), its
one-line string form, the full canonical spec of its space (so it loads without the search
space file), optional metrics, optionally the path of its weights (safetensors, relative to
the JSON file), and for a structurally pruned model its ``pruned`` widths: ``{module name:
{attribute: int}}`` from :func:`nas.compress.shape_overrides`, applied to the freshly built model
before its weights load. Never a pickle.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_write_json, file_sha256, read_json_object
from nas.compress import apply_shape_overrides
from nas.space import (
    SCHEMA_VERSION,
    Architecture,
    SearchSpace,
    changed_op_modules,
    import_file_op_modules,
    list_spaces,
    load_space,
    op_module_digests,
    op_module_folders,
    space_from_dict,
)

__all__ = ["load_architecture", "read_architecture_file", "write_architecture_file"]


def write_architecture_file(
    path: str | Path,
    space: SearchSpace,
    arch: Architecture,
    *,
    metrics: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    pruned: Mapping[str, Mapping[str, int]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``arch`` as a self-contained ``arch.json`` (atomically); returns the path.

    Args:
        path: Where to write the file.
        space: The space ``arch`` is from; its full spec is stored in the file.
        arch: The architecture.
        metrics: Optional measurements to store beside it (JSON-ready).
        weights: Path of a safetensors file of the model's ``state_dict``, stored relative to
            ``path``.
        pruned: For a structurally pruned model, its widths where they differ from
            ``space.build(arch)`` (:func:`nas.compress.shape_overrides`); the weights are then
            those of the pruned model.
        extra: More top-level keys (JSON-ready), e.g. ``preprocess``, ``origin``, and for an
            INT8 variant ``precision: int8`` with ``onnx``, the ONNX file (relative to
            ``path``) that :func:`load_architecture` runs.

    Example:
        >>> from nas.compress import prune_structured, shape_overrides  # doctest: +SKIP
        >>> small = prune_structured(model, x, ratio=0.5)  # doctest: +SKIP
        >>> save_file(small.state_dict(), "w.safetensors")  # doctest: +SKIP
        >>> write_architecture_file(  # doctest: +SKIP
        ...     "arch.json", space, arch, weights="w.safetensors",
        ...     pruned=shape_overrides(small, space.build(arch)),
        ... )
    """
    space.check(arch)
    path = Path(path)
    if pruned is not None:
        pruned = _check_pruned(pruned, str(path))
    doc: dict[str, Any] = arch.to_dict()
    doc["string"] = space.format(arch)
    if metrics:
        doc["metrics"] = metrics
    if weights is not None:
        doc["weights"] = os.path.relpath(Path(weights).resolve(), path.resolve().parent)
    if pruned is not None:
        doc["pruned"] = pruned
    reserved = set(doc) | {
        "space_spec", "metrics", "weights", "pruned", "op_modules", "op_module_sha256"
    }  # fmt: skip
    for key, value in (extra or {}).items():
        if key in reserved:
            raise ValueError(f"extra key {key!r} would overwrite the file's own {key!r}")
        doc[key] = value
    doc["space_spec"] = space.to_dict()
    modules = op_module_folders(space)
    if modules:  # where its ops' modules were found, to import them again from anywhere
        doc["op_modules"] = modules
        doc["op_module_sha256"] = op_module_digests(space)  # and what their code was
    atomic_write_json(path, doc)
    return path


def _arch_file(path: str | Path) -> Path:
    """``path``, or the ``arch.json`` inside it when it names an export folder."""
    path = Path(path)
    return path / "arch.json" if path.is_dir() and (path / "arch.json").is_file() else path


def state_mismatch(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> str | None:
    """How the tensors of ``state`` differ from those a model holds (``expected``): the keys
    missing, unexpected and of the wrong shape (three of each); None when they fit."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if not (missing or extra or wrong):
        return None
    return "; ".join(
        f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong))
        if keys
    )


def read_architecture_file(path: str | Path) -> tuple[SearchSpace, Architecture, dict[str, Any]]:
    """(space, architecture, whole document) of an ``arch.json`` (or of an export folder's);
    validates all of it."""
    path = _arch_file(path)
    doc = read_json_object(path)
    if "schema_version" not in doc and "choices" in doc:  # (no choices: not an arch file)
        raise NasConfigError(
            f"{path}: missing key 'schema_version' (files this version of nas writes have "
            f'"schema_version": {SCHEMA_VERSION}); add it, or re-export the model'
        )
    # the content first (space, choices: the errors that say what to fix), its arch_id last
    arch = Architecture.from_dict(
        {k: v for k, v in doc.items() if k != "arch_id"}, source=str(path)
    )
    if "space_spec" in doc:
        import_file_op_modules(path, doc)
        space = space_from_dict(doc["space_spec"], source=f"{path}: space_spec")
    else:  # a plain architecture (nas show --json): only a built-in space can be resolved
        builtin = load_space(arch.space) if arch.space in list_spaces() else None
        if builtin is None or builtin.hash != arch.space_hash:
            raise NasConfigError(
                f"{path}: missing key 'space_spec' (the space the architecture is from; "
                f"'{arch.space}' is not a built-in space with hash {arch.space_hash}); use the "
                "run's architectures/<arch_id>.json or an export folder's arch.json"
            )
        space = builtin
    if space.hash != arch.space_hash:
        raise NasConfigError(
            f"{path}: space_spec hashes to {space.hash} but the architecture names space hash "
            f"{arch.space_hash}; the file was edited by hand or corrupted: restore it from "
            "the run's architectures/ or export folder (nas export rewrites one)"
        )
    if arch.space != space.name:
        raise NasConfigError(
            f"{path}: space: names '{arch.space}' but the file's space_spec is space "
            f'\'{space.name}\'; set "space": "{space.name}" (the file was edited by hand)'
        )
    space.from_choices(dict(arch.choices), source=str(path))  # every choice is valid
    Architecture.from_dict(doc, source=str(path))  # its arch_id matches that content
    if "string" in doc and doc["string"] != space.format(arch):  # (it is what people read)
        raise NasConfigError(
            f"{path}: string: {doc['string']!r} is not the architecture its choices make "
            f"({space.format(arch)!r}); the file was edited by hand: restore it from the run's "
            "architectures/ or export folder; to look at another architecture, pass its "
            f"string to nas show with --space {path}"
        )
    if "pruned" in doc:
        doc["pruned"] = _check_pruned(doc["pruned"], str(path))
    return space, arch, doc


def _check_pruned(value: object, source: str) -> dict[str, dict[str, int]]:
    """``pruned`` as ``{module name: {attribute: positive int}}``, or a one-line error."""
    if not isinstance(value, Mapping):
        raise NasConfigError(
            f"expected a mapping of module names to {{attribute: int}}, got {value!r}",
            file=source,
            key="pruned",
        )
    out: dict[str, dict[str, int]] = {}
    for name, attrs in value.items():
        if not isinstance(name, str) or not isinstance(attrs, Mapping):
            raise NasConfigError(
                f"expected a mapping of attribute names to ints, got {attrs!r}",
                file=source,
                key=f"pruned.{name}",
            )
        out[name] = {}
        for attr, n in attrs.items():
            if not isinstance(attr, str) or isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise NasConfigError(
                    f"expected a positive int, got {n!r}", file=source, key=f"pruned.{name}.{attr}"
                )
            out[name][attr] = n
    return out


def _load_int8(path: Path, doc: dict[str, Any], arch: Architecture) -> nn.Module:
    """The INT8 variant: its QDQ ONNX graph run by ONNX Runtime behind the module interface."""
    from nas.export._onnx import OnnxModule

    onnx_file = doc.get("onnx")
    if not isinstance(onnx_file, str):
        raise NasConfigError(f"{path}: 'precision: int8' needs 'onnx', the INT8 ONNX file")
    target = (path.parent / onnx_file).resolve()
    if not target.is_file():
        raise NasConfigError(
            f"{path}: onnx file {target} does not exist; copy the export folder whole (the "
            "INT8 model is that ONNX file), or run the same nas run / nas train again to "
            "remake it"
        )
    recorded = doc.get("onnx_sha256")  # (files written before the digest have none)
    if recorded is not None and recorded != file_sha256(target):
        raise NasConfigError(
            f"{path}: onnx file {target} is not the one this file was written with (its "
            "SHA-256 differs from onnx_sha256): another model's, or changed since; copy the "
            f"{onnx_file} exported with this {path.name} (the same folder's), or re-export it"
        )
    model = OnnxModule(target)
    model.architecture = arch  # type: ignore[assignment]
    return model


def load_architecture(path: str | Path, *, weights: bool = True) -> nn.Module:
    """Rebuild the model of an ``arch.json``, with its trained weights when the file names them.

    ``path`` may name an export folder (``final/<arch_id>/``): its ``arch.json`` is loaded.

    An INT8 variant (``precision: int8``, written by :func:`nas.export.export_int8`) comes back
    as an :class:`nas.export.OnnxModule` running its INT8 ONNX graph in ONNX Runtime.

    A pruned model (the file has ``pruned``) is built at the architecture's widths, then given
    the pruned widths (:func:`nas.compress.apply_shape_overrides`), then its weights.

    Example:
        >>> model = load_architecture("runs/qs/architectures/0123456789ab.json")  # doctest: +SKIP
        >>> model.architecture.arch_id  # doctest: +SKIP
        '0123456789ab'

    Raises:
        NasConfigError: the file is malformed, from an unknown schema, its ``pruned`` widths
            name modules the architecture does not have, or its weights do not match the
            (pruned) architecture.
    """
    path = _arch_file(path)
    space, arch, doc = read_architecture_file(path)
    if doc.get("precision") == "int8":
        if not weights:
            raise NasConfigError(
                f"{path}: an INT8 variant's weights are part of its ONNX graph, so it has no "
                "form without them; for the untrained network load the arch.json beside it"
            )
        return _load_int8(path, doc, arch)
    model = space.build(arch, seed=0)  # without weights: the seeded initialization, as said
    if "pruned" in doc:
        apply_shape_overrides(model, doc["pruned"], source=str(path))
    if weights and not doc.get("weights"):
        warnings.warn(
            f"{path} names no weights: the model has its seeded initialization, untrained "
            "(train it with nas train, or pass weights=False to say so)",
            stacklevel=2,
        )
    if weights and doc.get("weights"):
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        wpath = (path.parent / doc["weights"]).resolve()
        if not wpath.is_file():
            raise NasConfigError(
                f"{path}: weights file {wpath} does not exist (its 'weights' key is relative "
                "to the arch.json: copy the weights file along, or load the architecture "
                "untrained with weights=False)"
            )
        try:
            state = load_file(str(wpath))
            with safe_open(str(wpath), "pt") as file:
                owner = (file.metadata() or {}).get("arch_id")
        except (SafetensorError, OSError) as exc:
            raise NasConfigError(
                f"{wpath}: not a readable safetensors file ({exc}): cut short or damaged in a "
                "copy? copy it again from the export folder"
            ) from None
        if owner is not None and owner != arch.arch_id:  # (tensors alike need not be the same)
            raise NasConfigError(
                f"{wpath}: the weights of architecture {owner} (the file's metadata), not of "
                f"{arch.arch_id} that {path} describes: name {arch.arch_id}'s weights file, or "
                "remove 'weights' from the file to start from the initialization"
            )
        detail = state_mismatch(model.state_dict(), state)
        if detail is not None:
            wrong = "wrong shape" in detail
            hint = (
                "; the weights are another network's: name this architecture's weights file, "
                "or remove 'weights' from the file to start from the initialization"
            )
            if wrong and "pruned" in doc:
                hint = "; the file has pruned widths: save the weights of the pruned model"
            changed = changed_op_modules(doc.get("op_module_sha256"), space)
            if changed:  # the same architecture, built by other code
                hint = (
                    f"; {', '.join(changed)}, where its ops come from, has changed since the "
                    "file was written: its ops now build other modules than the weights' "
                    "(put the module back as it was)"
                )
            raise NasConfigError(
                f"{wpath}: weights do not match architecture {arch.arch_id} ({detail}){hint}"
            )
        model.load_state_dict(state)
    model.eval()
    model.architecture = arch  # type: ignore[assignment]
    return model
