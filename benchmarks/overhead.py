"""Framework overhead per trial: everything a trial costs except training, at N trials on SQLite.

The search loop runs for real (sampler, free metrics, SQLite storage, user attributes,
constraints, tell); only the training step is replaced by a lookup of a fixed pseudo-accuracy per
architecture, so the time left is the framework's own. Prints a table and, with --write, updates
docs/benchmarks.md.

    python benchmarks/overhead.py --trials 1000 --sampler tpe --write

With ``--resume-at K`` the search stops after K trials and a second ``run_search`` (a new
sampler, as a new ``nas run`` would make) continues the study to N: the table adds that
continued search's first trial, which includes the cost-aware sampler redoing the stored
trials' draws.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas.search import load_experiment, prepare, run_search  # noqa: E402
from nas.search._evaluate import Evaluator  # noqa: E402
from nas.train import TrainResult  # noqa: E402


def fake_train(self, arch, *, progress=None):  # the only thing not measured: training
    h = int(hashlib.sha256(arch.arch_id.encode()).hexdigest()[:8], 16)
    acc = 0.8 + 0.2 * (h % 1000) / 1000
    return None, TrainResult(acc, 0.1, 0.1, 1, 0.0, False, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--space", default="mobilenet_small")
    parser.add_argument("--resume-at", type=int, default=None, metavar="K")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.write and args.resume_at:
        parser.error("--resume-at times a continued search: its figures are not the section's")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Evaluator.train = fake_train  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory() as tmp:
        exp_path = Path(tmp) / "exp.yaml"
        exp_path.write_text(
            f"""
name: overhead
space: {args.space}
data: {{dataset: digits}}
objectives: [error, params, latency_ms@cpu]
constraints: {{params: "<= 150000"}}
search: {{sampler: {args.sampler}, n_trials: {args.trials}, seed: 0}}
"""
        )
        exp = load_experiment(exp_path)
        prepared = prepare(exp)
        times: list[float] = []
        last = [time.perf_counter()]

        def tick(event, info):
            if event == "trial":
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

        start = time.perf_counter()
        resumed_ms = None
        if args.resume_at:
            first = replace(exp, search=replace(exp.search, n_trials=args.resume_at))
            run_search(prepare(first), Path(tmp) / "run", progress=tick, save_weights=False)
            n_before = len(times)
            last[0] = time.perf_counter()
        outcome = run_search(prepared, Path(tmp) / "run", progress=tick, save_weights=False)
        total = time.perf_counter() - start
        if args.resume_at:
            resumed_ms = times[n_before] * 1e3
    ms = [t * 1e3 for t in times]
    n = len(ms)
    rows = [
        ("trials", f"{n}"),
        ("first trial ms (the sampler's set-up included)", f"{ms[0]:.0f}"),
        ("mean ms/trial (all trials)", f"{statistics.mean(ms):.1f}"),
        ("median ms/trial", f"{statistics.median(ms):.1f}"),
        ("mean ms/trial, last 100 trials", f"{statistics.mean(ms[-100:]):.1f}"),
        ("p95 ms/trial", f"{sorted(ms)[int(0.95 * n) - 1]:.1f}"),
        ("total s", f"{total:.1f}"),
        *(
            [(f"first trial after continuing at {args.resume_at} ms", f"{resumed_ms:.0f}")]
            if resumed_ms is not None
            else []
        ),
        (
            "trained / reused / infeasible",
            f"{outcome.n_trained} / {outcome.n_reused} / {outcome.n_infeasible}",
        ),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    if args.write:
        cmd = f"python benchmarks/overhead.py --trials {args.trials} --sampler {args.sampler}"
        if args.space != "mobilenet_small":
            cmd += f" --space {args.space}"
        update_section(
            f"overhead-{args.sampler}-{args.space}",
            f"### Framework overhead per trial: {args.sampler}, {args.space}, "
            f"{args.trials} trials, SQLite\n\n"
            f"Command: `{cmd} --write`  \nMachine: {machine()}\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
