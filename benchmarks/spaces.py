"""Every built-in space: size, 200 random architectures built and run, NB201 enumeration.

For each space in `search_spaces/`: the number of architectures, the number of Optuna
parameters, and for 200 seeded random architectures the time to compute the layer table
(params, MACs), to build the torch model and to run one forward pass at batch 1, plus the
parameter range. Also enumerates `nasbench201` and counts its distinct architectures.

    python benchmarks/spaces.py --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas.space import list_spaces, load_space  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    for name in list_spaces():
        space = load_space(name)
        rng = np.random.default_rng(0)
        describe_ms, build_ms, forward_ms, params, ok = [], [], [], [], 0
        x = torch.randn(1, *space.input_shape)
        for _ in range(args.n):
            arch = space.random(rng)
            t0 = time.perf_counter()
            table = space.describe(arch)
            t1 = time.perf_counter()
            model = space.build(arch).eval()
            t2 = time.perf_counter()
            with torch.no_grad():
                out = model(x)
            t3 = time.perf_counter()
            ok += int(
                out.shape == (1, space.num_classes)
                and bool(torch.isfinite(out).all())
                and table.params == sum(p.numel() for p in model.parameters())
            )
            describe_ms.append((t1 - t0) * 1e3)
            build_ms.append((t2 - t1) * 1e3)
            forward_ms.append((t3 - t2) * 1e3)
            params.append(table.params)
        rows.append(
            (
                name,
                f"{space.size():.4g}" if space.size() > 1e6 else f"{space.size():,}",
                str(len(space.parameters())),
                "x".join(map(str, space.input_shape)),
                f"{ok}/{args.n}",
                f"{statistics.median(describe_ms):.2f}",
                f"{statistics.median(build_ms):.1f}",
                f"{statistics.median(forward_ms):.1f}",
                f"{min(params):,}-{max(params):,}",
            )
        )
    header = (
        "space",
        "architectures",
        "Optuna params",
        "input",
        "built+ran OK",
        "describe ms (median)",
        "build ms",
        "forward ms (batch 1)",
        "params range",
    )
    table = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    table += "\n".join("| " + " | ".join(r) + " |" for r in rows)
    t0 = time.perf_counter()
    nb = load_space("nasbench201")
    distinct = len({nb.format(a) for a in nb.enumerate()})
    enum_s = time.perf_counter() - t0
    table += (
        f"\n\n`nasbench201` enumerates {distinct:,} distinct architectures "
        f"(NB201 arch strings) in {enum_s:.1f} s; the official index has 15,625."
    )
    print(table)
    if args.write:
        update_section(
            "spaces",
            f"### Built-in spaces: {args.n} random architectures each\n\n"
            f"Command: `python benchmarks/spaces.py --write` (the same checks run as tests in "
            f"`tests/space/test_builtin_spaces.py`)  \nMachine: {machine()}\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
