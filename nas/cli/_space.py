"""Commands that show search spaces: ``nas spaces | show | sample``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas._errors import NasConfigError


def cmd_spaces(args: argparse.Namespace) -> int:
    from nas.space import builtin_space_dir, list_spaces, load_space

    rows = []
    for name in args.files or list_spaces():  # a file given is checked as it is listed
        space = load_space(name)
        rows.append(
            (
                name if not args.files else f"{space.name} ({name})",
                f"{space.size():.4g}" if space.size() > 1e6 else f"{space.size():,}",
                str(len(space.parameters())),
                "x".join(map(str, space.input_shape)),
                space.description,
            )
        )
    header = ("space", "architectures", "choices", "input", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    if not args.files:
        print(f"(built-in spaces live in {builtin_space_dir()}; any YAML path works too)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nas.export import read_architecture_file
    from nas.space import load_space

    target = args.arch
    if args.space and not target.strip():
        raise NasConfigError(
            f"expected an architecture string of space {args.space}, got an empty string; "
            f"nas sample --space {args.space} prints some"
        )
    if Path(target).is_dir() and (Path(target) / "arch.json").is_file():  # an export folder
        target = str(Path(target) / "arch.json")
    if args.space and (target.endswith(".json") or Path(target).exists()):
        where = "" if Path(target).exists() else " (and does not exist)"
        raise NasConfigError(
            f"'{target}' names a file{where}, not an architecture string; --space is for "
            f"strings: nas show {target}"
        )
    if args.space:
        space = load_space(args.space)
        arch = space.parse(target)
    elif target.endswith(".json") or Path(target).is_file():
        space, arch, doc = read_architecture_file(target)
    else:
        raise NasConfigError(
            f"'{target}' is not an arch.json file; to show an architecture string, name its "
            "space: nas show --space SPACE 'ARCH'"
        )
    table = space.describe(arch)
    if not args.space and "pruned" in doc:
        from nas.compress import apply_shape_overrides

        model = apply_shape_overrides(space.build(arch), doc["pruned"], source=target)
        pruned = space.describe(arch, model=model)
        print(pruned)
        print(
            f"pruned: the widths of {Path(target).name}'s 'pruned'; {pruned.params:,} params "
            f"({pruned.params / table.params:.0%} of the searched architecture's "
            f"{table.params:,}), {pruned.macs:,} MACs ({pruned.macs / table.macs:.0%})"
        )
    else:
        print(table)
    if not args.space:
        print(_weights_line(target, doc))
    if args.json:
        print(arch.to_json())
    return 0


def _weights_line(path: str, doc: dict[str, Any]) -> str:
    """Whether the file's weights load into its model: loading them is the check (a missing
    file or weights of another network raise the same error ``load_architecture`` gives)."""
    from nas.export import load_architecture

    if doc.get("precision") == "int8":
        load_architecture(path)
        return f"weights: in {doc['onnx']} (INT8 ONNX graph; it loads in ONNX Runtime)"
    if not doc.get("weights"):
        return "weights: none, the seeded initialization (train it with nas train)"
    load_architecture(path)
    return f"weights: {doc['weights']} (every tensor fits the model)"


def cmd_sample(args: argparse.Namespace) -> int:

    from nas.space import load_space

    space = load_space(args.space)
    size = space.size()
    if args.n > size:
        raise NasConfigError(
            f"-n {args.n}: space '{space.name}' has only {size:,} architectures; ask for at most "
            "that many"
        )
    # distinct: a calibration refuses an architecture measured twice
    for arch in space.random_distinct(args.n, args.seed):
        print(space.format(arch))
    return 0
