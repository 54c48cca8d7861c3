"""``arch.json``: a self-contained file form of an architecture, and loading it back as a model.

The file holds the architecture (schema version, space name and hash, choices, ``arch_id``), its
one-line string form, the full canonical spec of its space (so it loads without the search
space file), optional metrics, and optionally the path of its weights (safetensors, relative to
the JSON file). Never a pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_write_json, read_json_object
from nas.space import Architecture, SearchSpace, space_from_dict

__all__ = ["load_architecture", "read_architecture_file", "write_architecture_file"]


def write_architecture_file(
    path: str | Path,
    space: SearchSpace,
    arch: Architecture,
    *,
    metrics: dict[str, Any] | None = None,
    weights: str | Path | None = None,
) -> Path:
    """Write ``arch`` as a self-contained ``arch.json`` (atomically); returns the path."""
    space.check(arch)
    path = Path(path)
    doc: dict[str, Any] = arch.to_dict()
    doc["string"] = space.format(arch)
    if metrics:
        doc["metrics"] = metrics
    if weights is not None:
        doc["weights"] = os.path.relpath(Path(weights).resolve(), path.resolve().parent)
    doc["space_spec"] = space.to_dict()
    atomic_write_json(path, doc)
    return path


def read_architecture_file(path: str | Path) -> tuple[SearchSpace, Architecture, dict[str, Any]]:
    """(space, architecture, whole document) of an ``arch.json``; validates all of it."""
    path = Path(path)
    doc = read_json_object(path)
    arch = Architecture.from_dict(doc, source=str(path))
    if "space_spec" not in doc:
        raise NasConfigError(
            f"{path}: missing key 'space_spec' (the space the architecture is from)"
        )
    space = space_from_dict(doc["space_spec"], source=f"{path}: space_spec")
    if space.hash != arch.space_hash:
        raise NasConfigError(
            f"{path}: space_spec hashes to {space.hash} but the architecture names space hash "
            f"{arch.space_hash}; the file was edited by hand or corrupted"
        )
    space.from_choices(dict(arch.choices), source=str(path))  # every choice is valid
    return space, arch, doc


def load_architecture(path: str | Path, *, weights: bool = True) -> nn.Module:
    """Rebuild the model of an ``arch.json``, with its trained weights when the file names them.

    Example:
        >>> model = load_architecture("runs/qs/architectures/0123456789ab.json")  # doctest: +SKIP
        >>> model.architecture.arch_id  # doctest: +SKIP
        '0123456789ab'

    Raises:
        NasConfigError: the file is malformed, from an unknown schema, or its weights do not
            match the architecture.
    """
    path = Path(path)
    space, arch, doc = read_architecture_file(path)
    model = space.build(arch)
    if weights and doc.get("weights"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        wpath = (path.parent / doc["weights"]).resolve()
        if not wpath.is_file():
            raise NasConfigError(f"{path}: weights file {wpath} does not exist")
        try:
            state = load_file(str(wpath))
        except (SafetensorError, OSError) as exc:
            raise NasConfigError(f"{wpath}: not a readable safetensors file ({exc})") from None
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        wrong = sorted(
            k
            for k in set(expected) & set(state)
            if tuple(expected[k].shape) != tuple(state[k].shape)
        )
        if missing or extra or wrong:
            detail = "; ".join(
                f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (
                    ("missing", missing),
                    ("unexpected", extra),
                    ("wrong shape", wrong),
                )
                if keys
            )
            raise NasConfigError(
                f"{wpath}: weights do not match architecture {arch.arch_id} ({detail})"
            )
        model.load_state_dict(state)
    model.eval()
    model.architecture = arch  # type: ignore[assignment]
    return model
