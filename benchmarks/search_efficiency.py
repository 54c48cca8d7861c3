"""Search efficiency on NAS-Bench-201: hypervolume gap after 100 accuracy evaluations.

The same runs as `nas bench`.

Runs every available method (the framework's default sampler `nas` when present, random search,
Optuna TPE with 5.0's multi-objective defaults, multivariate TPE, NSGA-II) for 10 seeds on a
2-objective and a 3-objective problem and prints one table per problem. Goal: the `nas`
sampler's gap at most a quarter of random search's and below plain Optuna TPE's.

    python benchmarks/search_efficiency.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# 2-objective: error + one device's latency; 3-objective: error + two devices, or latency +
# energy of the Raspberry Pi 5. Devices span a mobile CPU/GPU, an ASIC, an FPGA, server CPUs/GPUs.
TWO = ("pixel3", "raspi4", "eyeriss", "fpga", "gold_6226", "titan_rtx_1", "samsung_a50")
THREE = (
    ("latency_ms@pi5", "energy_mj@pi5"),
    ("latency_ms@pixel3", "latency_ms@fpga"),
    ("latency_ms@raspi4", "latency_ms@titanx_32"),
)
PROBLEMS = [(d, ("error", f"latency_ms@{dev}")) for d in DATASETS for dev in TWO] + [
    (d, ("error", *pair)) for d in DATASETS for pair in THREE
]
# what the sampler's settings were chosen on (the rest were never looked at before this run)
TUNED = {("cifar10", ("error", "latency_ms@pixel3"))}
LOOKED_AT = {
    ("cifar100", ("error", "latency_ms@raspi4")),
    ("ImageNet16-120", ("error", "latency_ms@eyeriss")),
    ("cifar100", ("error", "latency_ms@pi5", "energy_mj@pi5")),
    # effective forms and the optimistic exploit step were compared on these too
    ("ImageNet16-120", ("error", "latency_ms@pixel3")),
    ("ImageNet16-120", ("error", "latency_ms@raspi4")),
    ("ImageNet16-120", ("error", "latency_ms@samsung_a50")),
    ("ImageNet16-120", ("error", "latency_ms@raspi4", "latency_ms@titanx_32")),
    # the start-up order (middle of the costs first, cheapest second) was chosen on this one
    # with cifar10/pixel3 and ImageNet16-120/eyeriss, at 60 evaluations
    ("cifar100", ("error", "latency_ms@gold_6226")),
}
METHODS = ("nas", "random", "optuna-tpe", "optuna-tpe-mv", "optuna-nsga2")


def main() -> None:
    import optuna

    from nas.bench import (
        NORMALIZATION_NOTE,
        format_summary,
        load_problem,
        run_benchmark,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--data", help="benchmark data folder (default ../shared/data)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods = list(METHODS)
    blocks = []
    rows = []
    for dataset, objectives in PROBLEMS:
        problem = load_problem("nasbench201", dataset, objectives, data_dir=args.data)
        start = time.perf_counter()
        result = run_benchmark(problem, methods, budget=args.budget, seeds=range(args.seeds))
        seconds = time.perf_counter() - start
        table = format_summary(result.summary)
        title = (
            f"nasbench201 {dataset}, objectives {', '.join(objectives)} "
            f"({len(problem.true_front_idx)} architectures on the true front), "
            f"{args.budget} evaluations x {args.seeds} seeds, {seconds:.0f} s"
        )
        print(title, flush=True)
        print(table, flush=True)
        blocks.append(f"{title}:\n\n```\n{table}\n```")
        gap = result.summary.set_index("method")["hv_gap_mean"]
        key = (dataset, tuple(objectives))
        rows.append(
            {
                "dataset": dataset,
                "objectives": ", ".join(objectives[1:]),
                "k": len(objectives),
                **{m: gap.get(m, float("nan")) for m in methods},
                "nas / random": gap["nas"] / gap["random"],
                "goal met": bool(
                    gap["nas"] <= 0.25 * gap["random"] and gap["nas"] < gap["optuna-tpe"]
                ),
                "used in tuning": "tuned"
                if key in TUNED
                else ("looked at" if key in LOOKED_AT else "no"),
            }
        )
    import pandas as pd

    overview = pd.DataFrame(rows)
    met = int(overview["goal met"].sum())
    overview_md = overview.to_markdown(index=False, floatfmt=".4f")
    verdict = (
        f"Goal (gap <= 1/4 of random's and below Optuna TPE's) met on {met} of {len(overview)} "
        f"problems; on the {int((overview['used in tuning'] == 'no').sum())} never used in "
        f"tuning: {int(overview.loc[overview['used in tuning'] == 'no', 'goal met'].sum())}."
    )
    print(overview_md)
    print(verdict)
    print(NORMALIZATION_NOTE)
    if args.write:
        command = f"python benchmarks/search_efficiency.py --budget {args.budget} --seeds "
        body = (
            "## Search efficiency on NAS-Bench-201 (`nas bench`)\n\n"
            f"{machine()}; `{command}{args.seeds} --write`. Columns: mean hypervolume gap "
            "`1 - HV/HV(true front)` at the final budget (± std over seeds), mean gap at 25 and "
            "50 evaluations, IGD, fraction of the true Pareto set evaluated, gap relative to "
            f"random search, seconds per run. {NORMALIZATION_NOTE}."
            + "\n\nMean hypervolume gap after the budget, per problem and method:\n\n"
            + overview_md
            + "\n\n"
            + verdict
            + "\n\nPer problem:\n\n"
            + "\n\n".join(blocks)
        )
        update_section("search-efficiency", body)


if __name__ == "__main__":
    main()
