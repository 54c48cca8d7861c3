"""Parallel workers on one study: the quickstart's search by 1 worker and by 2 at once.

Each configuration runs `nas search experiments/quickstart.yaml` in fresh run folders: one
worker with 2 training threads, one with 1, and two with 1 each, the workers of a run sharing
one SQLite storage
(`search.storage`), as the README tells. Reported: the wall clock until the last worker ends,
the trials trained, architectures trained twice (there should be none), and the front found.
With --write, updates docs/benchmarks.md.

    python benchmarks/parallel_workers.py --trials 30 --write
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def search(workers: int, threads: int, trials: int, tmp: Path) -> dict[str, object]:
    name = f"{workers}x{threads}"
    storage = f"sqlite:///{tmp / f'study{name}.db'}"
    common = [
        "--set",
        f"search.n_trials={trials}",
        "--set",
        f"train.threads={threads}",
        "--set",
        f"search.storage={storage}",
        "-q",
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nas", "search", "experiments/quickstart.yaml"]
            + ["--out", str(tmp / f"w{name}-{i}"), *common],
            cwd=REPO,
        )
        for i in range(workers)
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    from nas.search import load_study, trials_frame

    frame = trials_frame(load_study(storage, "quickstart"))
    trained = frame[frame["status"] == "trained"]
    front = frame[frame["pareto"]]
    return {
        "workers": workers,
        "threads": threads,
        "seconds": seconds,
        "trials": len(frame),
        "trained": len(trained),
        "twice": int(trained["effective_id"].duplicated().sum()),
        "best_error": float(frame["error"].min()),
        "front": len(front.drop_duplicates("arch_id")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        # one worker with torch's threads on every core (the default), one with a thread,
        # and a worker per core
        rows = [search(w, t, args.trials, Path(tmp)) for w, t in ((1, 2), (1, 1), (2, 1))]
    one = rows[0]["seconds"]
    table = (
        "| workers | train.threads | wall clock (s) | speed-up | trials | trained | "
        "trained twice | best validation error | Pareto members |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    for r in rows:
        table += (
            f"| {r['workers']} | {r['threads']} | {r['seconds']:.1f} | {one / r['seconds']:.2f}x "
            f"| {r['trials']} | {r['trained']} | {r['twice']} | {r['best_error']:.4f} "
            f"| {r['front']} |\n"
        )
    print(table)
    if args.write:
        update_section(
            "parallel-workers",
            f"### Parallel workers: the quickstart's search ({args.trials} trials) by 1 and 2 "
            "worker processes\n\n"
            f"Command: `python benchmarks/parallel_workers.py --trials {args.trials} --write` "
            "(runs `nas search experiments/quickstart.yaml --set train.threads=T --set "
            "search.storage=sqlite:///...` once per worker, each with its own `--out`; speed-up "
            "against one worker with torch's default threads)  \n"
            f"Machine: {machine()}\n\n{table}",
        )


if __name__ == "__main__":
    main()
