"""How many architectures a second a loaded cost model scores (goal: >= 100,000).

For every built-in space and cost model (the measured `cpu-x86` table where it covers the
space, the analytic `cpu` profile, and imported tables are alike), compile the model with
`nas.cost.VectorizedCost` and time scoring 1,000,000 random architectures; also time the
per-architecture path (`model.estimate(space.layers(arch))`) that `nas cost` and the search use.

    python benchmarks/predict_throughput.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas.cost import VectorizedCost, for_space, load_cost_model  # noqa: E402
from nas.space import list_spaces, load_space  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = [
        "| space | cost model | compile s | vectorized archs/s | per-arch archs/s | max rel. "
        "difference |",
        "|---|---|---|---|---|---|",
    ]
    for name in list_spaces():
        space = load_space(name)
        table = load_cost_model("cpu-x86")
        devices = ["cpu"] + (["cpu-x86"] if name in table.meta.get("spaces", {}) else [])
        for device in devices:
            model = for_space(load_cost_model(device), space)
            t0 = time.perf_counter()
            fast = VectorizedCost(space, model)
            compile_s = time.perf_counter() - t0
            rng = np.random.default_rng(0)
            codes = np.stack(
                [rng.integers(len(c), size=args.n) for c in space.parameters().values()], axis=1
            )
            t0 = time.perf_counter()
            fast.latency_ms(codes)
            fast_rate = args.n / (time.perf_counter() - t0)
            archs = [space.random(i) for i in range(300)]
            t0 = time.perf_counter()
            slow = [model.estimate(space.layers(a)).latency_ms for a in archs]
            slow_rate = len(archs) / (time.perf_counter() - t0)
            diff = np.max(np.abs(fast.latency_ms(fast.encode(archs)) - slow) / np.array(slow))
            rows.append(
                f"| {name} | {device} | {compile_s:.2f} | {fast_rate:,.0f} | "
                f"{slow_rate:,.0f} | {diff:.1e} |"
            )
    table = "\n".join(rows)
    print(table)
    if args.write:
        update_section(
            "predict-throughput",
            "### Scoring architectures from a loaded cost model\n\n"
            f"Command: `python benchmarks/predict_throughput.py --write`  \nMachine: "
            f"{machine()}\n\nGoal: >= 100,000 architectures a second.\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
