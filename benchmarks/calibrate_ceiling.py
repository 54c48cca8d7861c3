"""How well can any per-layer additive latency table rank NAS-Bench-201 on each HELP device?

Fits, on ALL 15,625 measured cells of a device (not 10), least squares on additive features:
op counts per cell (what a per-op table can express) and per-edge one-hot op choices (what a
table keyed by edge position could express). The Spearman of these in-sample fits is an upper
bound for `nas calibrate` (which sees 10 cells) with any additive table.

    python benchmarks/calibrate_ceiling.py --write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas.space import load_space  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "help-latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent; this benchmark needs the HELP latency data")
    lat = pd.read_csv(DATA / "nasbench201_latency_ms.csv")
    space = load_space("nasbench201")
    params = list(space.parameters())
    ops = list(space.parameters()[params[0]])
    codes = np.array(
        [[ops.index(space.parse(s).choices[p]) for p in params] for s in lat["arch_str"]]
    )
    n = len(codes)
    counts = np.zeros((n, len(ops)))
    onehot = np.zeros((n, len(params) * len(ops)))
    for e in range(len(params)):
        counts[np.arange(n), codes[:, e]] += 1
        onehot[np.arange(n), e * len(ops) + codes[:, e]] = 1
    designs = {"op counts": np.c_[np.ones(n), counts], "edge x op": np.c_[np.ones(n), onehot]}
    rows = []
    for device in [c for c in lat.columns if c not in ("index", "arch_str")]:
        y = lat[device].to_numpy()
        row = {"device": device, "distinct values": len(np.unique(y))}
        for name, X in designs.items():
            w, *_ = np.linalg.lstsq(X, y, rcond=None)
            row[f"ceiling, {name}"] = float(stats.spearmanr(X @ w, y).statistic)
        rows.append(row)
    frame = pd.DataFrame(rows)
    table = frame.to_markdown(index=False, floatfmt=".3f")
    print(table)
    if args.write:
        update_section(
            "calibrate-ceiling",
            "### Ceiling of additive tables on NAS-Bench-201 (HELP data, all 15,625 cells)\n\n"
            f"Command: `python benchmarks/calibrate_ceiling.py --write`  \nMachine: "
            f"{machine()}\n\nIn-sample least squares on all measurements: no table that sums "
            "per-layer costs can rank a device better than this. Devices with few distinct "
            "values were timed with integer-millisecond resolution.\n\n" + table + "\n",
        )


if __name__ == "__main__":
    main()
