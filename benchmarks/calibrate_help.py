"""`nas calibrate` on NAS-Bench-201 against HELP's measured latencies of all 15,625 cells.

For every device column of ../shared/data/help-latency/nasbench201_latency_ms.csv: calibrate a
table from 10 measured architectures (HELP's own 10 reference architectures, and 10 random ones
averaged over several draws), starting from the analytic `cpu` profile as prior, predict all
15,625 cells with the table and report Spearman's rank correlation with the measurements. HELP
(NeurIPS 2021) reaches 0.932 on average with 10; FLOPs alone 0.79 on average.

    python benchmarks/calibrate_help.py --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas.cost import VectorizedCost, load_cost_model  # noqa: E402
from nas.cost._calibrate import calibrate  # noqa: E402
from nas.space import load_space  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "help-latency"
#: The NAS-Bench-201 meta-test devices of HELP's released scripts (HayeonLee/HELP,
#: script/run_nas_metad2a.sh); HELP meta-trains on 13 other devices, nas calibrate on none.
HELP_TEST_DEVICES = ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="cpu")
    parser.add_argument("--draws", type=int, default=10, help="random 10-arch draws per device")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent; this benchmark needs the HELP latency data")
    lat = pd.read_csv(DATA / "nasbench201_latency_ms.csv")
    ref = json.loads((DATA / "hardware_embedding_index.json").read_text())["nasbench201"]
    space = load_space("nasbench201")
    archs = [space.parse(s) for s in lat["arch_str"]]
    prior = load_cost_model(args.prior)
    prior_fast = VectorizedCost(space, prior)
    codes = prior_fast.encode(archs)
    rng = np.random.default_rng(0)
    rows = []
    for device in [c for c in lat.columns if c not in ("index", "arch_str")]:
        y = lat[device].to_numpy()

        def score(idx: list[int] | np.ndarray, y: np.ndarray = y, device: str = device) -> float:
            cal = calibrate(space, [(archs[i], y[i]) for i in idx], prior, device=device)
            return float(
                stats.spearmanr(VectorizedCost(space, cal.table).latency_ms(codes), y).statistic
            )

        random_scores = [score(rng.choice(len(y), 10, replace=False)) for _ in range(args.draws)]
        rows.append(
            {
                "device": device,
                f"prior ({args.prior}) alone": stats.spearmanr(
                    prior_fast.latency_ms(codes), y
                ).statistic,
                "10 HELP reference archs": score(ref),
                f"10 random archs (mean of {args.draws})": float(np.mean(random_scores)),
            }
        )
    frame = pd.DataFrame(rows)
    mean = frame.drop(columns="device").mean()
    frame.loc[len(frame)] = {"device": "**mean**", **mean.to_dict()}
    table = frame.to_markdown(index=False, floatfmt=".3f")
    met = int((frame["10 HELP reference archs"][:-1] >= 0.95).sum())
    table += (
        f"\n\n{met} of {len(frame) - 1} devices reach Spearman >= 0.95 with the 10 HELP "
        "reference architectures."
    )
    test = frame[frame["device"].isin(HELP_TEST_DEVICES)]["10 HELP reference archs"]
    table += (
        f" On the meta-test devices of HELP's released scripts ({', '.join(HELP_TEST_DEVICES)})"
        f" the mean is {test.mean():.3f} (HELP reports 0.932 mean with 10 samples), with no "
        "meta-training on other devices."
    )
    print(table)
    if args.write:
        update_section(
            "calibrate-help",
            "### `nas calibrate`: 10 measurements -> all 15,625 NB201 cells (HELP data)\n\n"
            f"Command: `python benchmarks/calibrate_help.py --write`  \nMachine: {machine()}\n\n"
            "Spearman rank correlation of the calibrated table's prediction with the measured "
            "latency of all 15,625 cells. Anchors: HELP 0.932 mean with 10 samples; FLOPs "
            f"0.79 mean. Goal: >= 0.95 on every device.\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
