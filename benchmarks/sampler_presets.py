"""Evidence for the sampler presets' advice: which Optuna sampler to pick when `auto` does not.

The README recommends NSGA-III for 3+ objectives with a large budget and GP for tiny budgets;
this script measures both claims with `nas bench` problems:

1. Large budget, 3 objectives, cost-only: the `fbnet` space (9^22 architectures) with MACs
   (maximized) against latency on two HW-NAS-Bench devices, 1,000 evaluations; exact front by
   dynamic programming. Methods: random, Optuna's multivariate TPE (the framework's `tpe`),
   NSGA-II and NSGA-III.
2. Small budget, 2 objectives: NAS-Bench-201 error against one device's latency after 20
   evaluations. Methods: random, multivariate TPE, Optuna's GP, and the default `nas`.

    python benchmarks/sampler_presets.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

LARGE = ("fbnet", None, ("macs", "latency_ms@raspi4", "latency_ms@eyeriss"))
LARGE_METHODS = ("random", "optuna-tpe-mv", "optuna-nsga2", "optuna-nsga3")
SMALL = [
    ("nasbench201", "cifar10", ("error", "latency_ms@pixel3")),
    ("nasbench201", "cifar100", ("error", "latency_ms@raspi4")),
    ("nasbench201", "ImageNet16-120", ("error", "latency_ms@fpga")),
]
SMALL_METHODS = ("random", "optuna-tpe-mv", "optuna-gp", "nas")


def _run(benchmark, dataset, objectives, methods, budget, seeds):
    from nas.bench import format_summary, load_problem, run_benchmark

    start = time.perf_counter()
    problem = load_problem(benchmark, dataset, objectives)
    result = run_benchmark(problem, methods, budget=budget, seeds=range(seeds))
    title = (
        f"{benchmark}{' ' + dataset if dataset else ''}, objectives {', '.join(objectives)}, "
        f"{budget} evaluations x {seeds} seeds, {time.perf_counter() - start:.0f} s"
    )
    table = format_summary(result.summary)
    print(title, flush=True)
    print(table, flush=True)
    return f"{title}:\n\n```\n{table}\n```", result.summary.set_index("method")["hv_gap_mean"]


def main() -> None:
    import optuna

    from nas.bench import NORMALIZATION_NOTE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-budget", type=int, default=1000)
    parser.add_argument("--small-budget", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    blocks = []
    block, large = _run(*LARGE, LARGE_METHODS, args.large_budget, args.seeds)
    blocks.append(block)
    small = []
    for benchmark, dataset, objectives in SMALL:
        block, gap = _run(
            benchmark, dataset, objectives, SMALL_METHODS, args.small_budget, args.seeds
        )
        blocks.append(block)
        small.append(gap)
    best_small = [g.drop("nas").idxmin() for g in small]
    reading = (
        f"Large budget, 3 objectives: NSGA-III {large['optuna-nsga3']:.4f}, NSGA-II "
        f"{large['optuna-nsga2']:.4f}, TPE {large['optuna-tpe-mv']:.4f}, random "
        f"{large['random']:.4f} (mean hypervolume gap). Small budget: the best Optuna sampler "
        f"after {args.small_budget} evaluations was {', '.join(best_small)} on the "
        f"{len(small)} problems; GP against TPE: "
        + ", ".join(f"{g['optuna-gp']:.4f} vs {g['optuna-tpe-mv']:.4f}" for g in small)
        + "; the default `nas`: "
        + ", ".join(f"{g['nas']:.4f}" for g in small)
        + "."
    )
    print(reading)
    if args.write:
        command = (
            f"python benchmarks/sampler_presets.py --large-budget {args.large_budget} "
            f"--small-budget {args.small_budget} --seeds {args.seeds} --write"
        )
        update_section(
            "sampler-presets",
            "### Sampler presets: NSGA-III for many objectives, GP for tiny budgets\n\n"
            f"{machine()}; `{command}`. {NORMALIZATION_NOTE}.\n\n"
            + "\n\n".join(blocks)
            + f"\n\n{reading}\n",
        )


if __name__ == "__main__":
    main()
