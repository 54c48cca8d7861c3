"""Wall-clock time of the README quickstart (`nas run experiments/quickstart.yaml`).

Runs the real command in a fresh run directory, as a user would, and reports the time, the
trials trained, the Pareto front and the best validation error. With --write, updates
docs/benchmarks.md.

    python benchmarks/quickstart.py --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "nas",
            "run",
            "experiments/quickstart.yaml",
            "--out",
            str(run),
            "--set",
            f"search.n_trials={args.trials}",
            "-q",
        ]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        seconds = time.perf_counter() - start
        trials = pd.read_csv(run / "trials.csv")
        pareto = pd.read_csv(run / "pareto.csv")
        manifest = json.loads((run / "manifest.json").read_text())
    trained = trials[trials["status"] == "trained"]
    search_s = float(manifest["search"]["seconds"])
    sampler = manifest["experiment"]["search"]["sampler"]
    finished = len(manifest.get("final", {}).get("selected", []))
    rows = [
        ("trials", f"{len(trials)}"),
        ("sampler", sampler),
        ("wall clock, whole command (s)", f"{seconds:.1f}"),
        ("of which the search (s)", f"{search_s:.1f}"),
        (
            f"of which finishing {finished} models: fine-tune, compress, measure, export (s)",
            f"{seconds - search_s:.1f}",
        ),
        (
            "trained / reused / skipped by constraints",
            f"{len(trained)} / {(trials['status'] == 'reused').sum()} / "
            f"{(trials['status'] == 'infeasible').sum()}",
        ),
        ("mean training time per trained trial (s)", f"{trained['duration_s'].mean():.2f}"),
        ("Pareto members", f"{len(pareto)}"),
        ("best validation error", f"{trials['error'].min():.4f}"),
        ("hypervolume (normalized, ref 1.1)", f"{manifest['pareto']['hypervolume']:.4f}"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    if args.write:
        update_section(
            "quickstart",
            f"### Quickstart ({args.trials} trials, digits, mobilenet_small, {sampler} "
            "sampler, then the stage after the search)\n\n"
            f"Command: `python benchmarks/quickstart.py --trials {args.trials} --write` (runs "
            f"`nas run experiments/quickstart.yaml`)  \nMachine: {machine()}\n\n"
            f"Goal: under 3 minutes on a 2-core CPU.\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
