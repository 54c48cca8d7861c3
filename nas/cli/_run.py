"""Commands that run or read a search: ``nas run | search | train | export | pareto | bench``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas._errors import NasConfigError


def _trial_done(event: str) -> bool:
    """Whether a progress event of ``nas run`` is a finished trial (the search's other events
    and those of the stage after it are not)."""
    return event not in ("start", "proposing", "epoch", "searched") and not event.startswith(
        ("final_", "finetune_")
    )


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal; one line per trial when stderr is a file or a pipe (CI logs)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="trial", dynamic_ncols=True, file=sys.stderr, disable=None)
    done = [0]

    def update(event: str, info: dict[str, Any]) -> None:
        if event.startswith(("final_", "finetune_")):
            _final_progress(event, info)
            return
        if event == "start":
            done[0] = info["finished"]
            bar.reset(total=info["total"])
            bar.update(info["finished"])
            if info.get("joined"):
                said = (
                    "another worker's study: this one samples with a seed of its own, keeps its "
                    "weights here, and leaves the architectures others are training to them"
                )
                bar.write(f"nas: {said}", file=sys.stderr)
        elif event == "waiting":
            bar.set_postfix_str(f"waiting {info['reason']}")
            if bar.disable:
                print(f"waiting {info['reason']}...", file=sys.stderr, flush=True)
        elif event == "proposing":
            which = "next" if done[0] else "first"
            said = f"choosing the {which} architecture (the sampler prices its candidates)"
            bar.set_postfix_str(said)
            if bar.disable:
                print(f"{said}...", file=sys.stderr, flush=True)
        elif event == "epoch":
            which = "" if info["trial"] is None else f"trial {info['trial']} "  # (not stored yet)
            bar.set_postfix_str(
                f"{which}epoch {info['epoch']}/{info['epochs']} loss {info['loss']:.3f}"
            )
        elif _trial_done(event):
            done[0] += 1
            bar.update(1)
            bar.set_postfix_str(f"trial {info['trial']} {info['status']}")
            if bar.disable:
                values = ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in info.items()
                    if k not in ("trial", "status", "arch") and isinstance(v, (int, float))
                )
                print(
                    f"trial {info['trial']} ({done[0]}/{total}) {info['status']}: {values}",
                    file=sys.stderr,
                    flush=True,
                )

    update.close = bar.close  # type: ignore[attr-defined]
    return update


def _final_progress(event: str, info: dict[str, Any]) -> None:
    """One line per event of the stage after the search: the selection, each stage of a model's
    finish, and each fine-tuning epoch (with throughput)."""
    if event == "final_selected":
        line = f"finishing {', '.join(info['arch_ids'])} (select rule '{info['rule']}')"
    elif event == "final_kept":
        line = (
            f"{info['model']}: finished by an earlier run with the same settings, kept as it is "
            f"(delete {info['record']} to redo it)"
        )
    elif event == "final_stage":
        line = f"{info['model']}: {info['stage']}"
    elif event == "final_done":
        line = f"{info['model']}: finished ({info['variants']} variants measured)"
    elif event == "finetune_resumed" and info["resumed_after"] >= info["epochs"]:
        line = (
            f"finetune {info['model']}: all {info['epochs']} epochs done by an earlier run, "
            f"not training again ({info['checkpoint']})"
        )
    elif event == "finetune_resumed":
        line = (
            f"finetune {info['model']}: resuming after epoch {info['resumed_after']}/"
            f"{info['epochs']} from {info['checkpoint']}"
        )
    else:
        line = (
            f"finetune {info['model']} epoch {info['epoch']}/{info['epochs']}: "
            f"loss {info['train_loss']:.4f}, val accuracy {info['val_accuracy']:.4f}, "
            f"lr {info['lr']:.3g}, {info['images_per_second']:.0f} images/s"
        )
    print(line, file=sys.stderr, flush=True)


class _Tuning:
    """The fine-tune in progress, from the progress events, for what an interrupt keeps: the
    epochs its checkpoint holds (a rerun resumes after them)."""

    def __init__(self) -> None:
        self.model, self.epoch, self.epochs = "", 0, 0

    def update(self, event: str, info: dict[str, Any]) -> None:
        if event == "finetune_epoch" and info.get("saved"):
            self.model, self.epoch, self.epochs = info["model"], info["epoch"], info["epochs"]
        elif event in ("final_kept", "final_done") or (
            event == "final_stage" and info.get("model") != self.model
        ):
            self.model = ""  # that model finished (or another began: its checkpoint stays)

    def said(self) -> str:
        if not self.model:
            return ""
        if self.epoch >= self.epochs:  # compressing it now: a rerun does not train it again
            from nas.final._finish import _epochs

            return f", and {self.model}'s finished fine-tuning ({_epochs(self.epochs)})"
        return f", and {self.model}'s fine-tuning up to epoch {self.epoch}/{self.epochs}"


def _print_final(results: Sequence[Any], run_dir: Path) -> None:
    rows = [(r, m) for r in results for m in r.measurements]
    # (a model pruned twice has variants such as 'pruned-pruned+int8')
    variant = max([12, *(len(m.variant) for _, m in rows)])
    runtime = max([12, *(len(m.runtime) for _, m in rows)])
    for r, m in rows:
        print(
            f"  {r.arch_id} {m.variant:<{variant}} {m.runtime:<{runtime}} accuracy "
            f"{m.accuracy:.4f} ({m.split})  latency {m.latency_ms * 1e3:8.1f} us  "
            f"size {m.size_bytes:>9,} B"
        )
    print(f"finished models in {run_dir}/final/ (summary.csv, one folder per model)")


def _print_search(exp: Any, s: Any, r: Any) -> None:
    """The search's summary: trials, warnings about them, the Pareto front."""
    print(
        f"study '{s.study_name}' ({s.storage}): {s.n_trials} trial{'s' * (s.n_trials != 1)}, "
        f"{s.n_new} new this run "
        f"({s.n_trained} trained, {s.n_evaluated} cost-only, {s.n_reused} reused, "
        f"{s.n_infeasible} skipped by "
        f"constraints, {s.n_failed} failed) in {s.seconds:.1f} s",
        flush=True,
    )
    if s.n_new == 0 and s.n_trials > exp.search.n_trials:
        print(
            f"nas: note: the study already held {s.n_trials} trials, more than search.n_trials "
            f"({exp.search.n_trials}), so nothing was searched; raise search.n_trials to search "
            "on (the report covers every stored trial)",
            file=sys.stderr,
        )
    if s.adapted_space:
        print(
            f"space '{exp.space}' fitted to the data: nas show, cost and sample take its "
            f"architectures with --space {s.adapted_space}",
            flush=True,
        )
    if s.n_trained and 2 * s.n_near_chance >= s.n_trained:
        t = exp.train
        print(
            f"nas: warning: {s.n_near_chance} of the {s.n_trained} architectures trained this run "
            f"learnt next to nothing (validation accuracy <= {s.near_chance:.2f}, near "
            "chance), so the search cannot rank them: raise "
            f"train.epochs ({t.epochs}) or change train.lr ({t.lr:g})",
            file=sys.stderr,
        )
    if r.n_pareto == 0 and s.n_trials and exp.constraints:
        bounds = ", ".join(f"{c.metric.name} {c.op} {c.bound:g}" for c in exp.constraints)
        print(
            f"nas: warning: no architecture of the {s.n_trials} trials meets the constraints "
            f"({bounds}), so there is no Pareto front; loosen them (trials.csv shows what each "
            "trial reached)",
            file=sys.stderr,
        )
    print(
        f"Pareto front: {r.n_pareto} architecture{'s' if r.n_pareto != 1 else ''}; "
        f"hypervolume {r.hypervolume:.4f} "
        "(normalized objectives, reference point 1.1)",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> int:
    import optuna

    from nas.pipeline import run_experiment
    from nas.search import load_experiment, storage_url

    exp = load_experiment(args.experiment, args.set or [])
    bar = None if args.quiet else _progress_bar(exp.search.n_trials)
    summarized: list[bool] = []
    count = {"before": 0, "new": 0, "total": exp.search.n_trials, "models": 0}
    tuning = _Tuning()

    def kept() -> str:
        """What an interrupt keeps, in numbers (said by :func:`_stopped`)."""
        if summarized:
            return (
                f"the search's {count['before'] + count['new']} trials and "
                f"{count['models']} finished model{'s' * (count['models'] != 1)}{tuning.said()}"
            )
        return (
            f"{count['before'] + count['new']} of {count['total']} trials "
            f"({count['new']} new this run)"
        )

    def report_hint() -> str:
        """How to see an interrupted search's trials without continuing it."""
        if summarized or not count["before"] + count["new"]:
            return ""
        run_dir = Path(args.out or exp.out)
        storage = storage_url(exp, run_dir)  # the study the run searched in
        command = ["nas", "pareto", "--storage", storage, "--study", exp.study_name]
        command += ["--out", str(run_dir)]
        return f"; their report now, without searching on: {shlex.join(command)}"

    args.kept, args.after_kept = kept, report_hint

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "start":
            count.update(before=info["finished"], total=info["total"])
        elif event in ("final_kept", "final_done"):
            count["models"] += 1
        elif _trial_done(event):
            count["new"] += 1
        tuning.update(event, info)
        if event == "searched":  # the search's summary when it ends, before any fine-tuning
            if bar is not None:
                bar.close()
            _print_search(exp, info["search"], info["report"])
            summarized.append(True)
        elif bar is not None:
            bar(event, info)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        result = run_experiment(
            exp, args.out, progress=progress, argv=sys.argv[1:], finish=args.finish
        )
    finally:
        if bar is not None:
            bar.close()
    if not summarized:
        _print_search(exp, result.search, result.report)
    written = sorted(
        p.name + "/" * p.is_dir()
        for p in result.run_dir.iterdir()
        if p.suffix in (".html", ".csv", ".png", ".json") or p.name == "architectures"
    )
    print(f"results in {result.run_dir}/ ({', '.join(written)}; open report.html)")
    if result.final:
        _print_final(result.final, result.run_dir)
    return 0


#: what decides a split's test images, given the same examples
_TEST_SPLIT_KEYS = ("limit", "seed", "test_fraction")


def _check_test_split(
    arch_file: str, doc: dict[str, Any], split: dict[str, Any], locate: Any
) -> None:
    """Refuse to fine-tune trained weights on a split of the same data whose test images
    differ from the split they were trained on: some of the new test images were then
    training images, and the accuracy measured on them would be inflated."""
    old = doc.get("data_split")
    if not doc.get("weights") or not isinstance(old, dict) or not split:
        return
    source = ("dataset", "root", "path", "examples")
    if any(old.get(k) != split.get(k) for k in source):
        return  # other data: its test images are not the ones it was trained on
    differ = [k for k in _TEST_SPLIT_KEYS if old.get(k) != split.get(k)]
    if not differ:
        return

    def value(v: Any) -> str:
        return "none" if v is None else str(v)

    was = ", ".join(f"{k} {value(old.get(k))}" for k in differ)
    now = ", ".join(
        f"{k} {value(split.get(k))}"
        + (f" from {by}" if (by := locate(f"data.{k}") or "").startswith("--set") else "")
        for k in differ
    )
    fix = " ".join(f"--set data.{k}={'null' if old.get(k) is None else old[k]}" for k in differ)
    raise NasConfigError(
        f"{arch_file}: its weights were trained on another split of {split['dataset']} "
        f"({was}) than this run makes ({now}): some of this split's test images are images it "
        f"was trained on, and its test accuracy would be inflated; split as it was: {fix}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``nas train ARCH.json --experiment EXP.yaml``: fine-tune, compress, export one model."""
    from nas.export import read_architecture_file
    from nas.final import finish_members
    from nas.pipeline import environment
    from nas.search import load_experiment
    from nas.search._study import adapt_space
    from nas.train import FinetuneConfig, load_data

    exp = load_experiment(args.experiment, args.set or [])
    if exp.finetune is None:
        nulled = [a for a in args.set or [] if a.split("=")[0].strip() == "finetune"]
        if nulled:  # in nas run, 'stop at the Pareto front'; here there is nothing else to do
            raise NasConfigError(
                f"--set {nulled[0]}: nas train fine-tunes the architecture with the "
                "experiment's finetune: settings (and then compresses it); change them with "
                "--set finetune.epochs=N and the like"
            )
        print(
            f"nas: warning: {args.experiment} has no finetune: section; nas train uses the "
            f"defaults ({FinetuneConfig().epochs} epochs) and does not compress",
            file=sys.stderr,
        )
    if Path(args.arch).suffix in (".safetensors", ".onnx", ".pt2"):  # the files beside it
        beside = Path(args.arch).parent / "arch.json"
        raise NasConfigError(
            f"{args.arch}: nas train takes a float model's arch.json ({beside}, which names "
            "its weights), not its weights or a compiled graph"
        )
    space, arch, doc = read_architecture_file(args.arch)
    if doc.get("precision") == "int8":
        beside = Path(args.arch).parent / "arch.json"
        raise NasConfigError(
            f"{args.arch}: an INT8 variant (an ONNX Runtime graph) cannot be fine-tuned; name "
            f"the float model's arch.json ({beside}), whose INT8 twin nas train then makes"
        )
    if doc.get("sparsity") is not None:
        dense = Path(args.arch).parent.with_name(arch.arch_id) / "arch.json"
        raise NasConfigError(
            f"{args.arch}: a sparse variant ({doc['sparsity']:.0%} of its weights zero): "
            "fine-tuning it would fill its zeros in (nas train keeps no mask); name the dense "
            f"model's arch.json ({dense}), whose sparse twin nas train makes with "
            "compress.sparsity"
        )
    out = Path(args.out or Path(exp.out) / "train")
    _check_out_folder(out)
    if Path(args.arch).resolve().parent.parent == (out / "final").resolve():
        raise NasConfigError(
            f"--out {out}: {args.arch} lies in {out / 'final'}, where nas train writes the "
            "models it trains: it would replace its own input (weights, card and rows of "
            "final/summary.csv); choose another --out"
        )
    data = load_data(exp.data)
    _check_test_split(args.arch, doc, data.split_recipe, exp.locate)
    adapted = adapt_space(space, data)
    if adapted.hash != space.hash:
        raise NasConfigError(
            f"{args.arch}: the architecture's space '{space.name}' takes input "
            f"{tuple(space.input_shape)} with {space.num_classes} classes but {args.experiment}"
            f"'s data is {tuple(data.input_shape)} with {data.num_classes} classes; train it "
            f"with an experiment on data of that shape (the one that searched space "
            f"'{space.name}')"
        )
    new_folder = not out.exists()
    tuning = _Tuning()
    args.kept = lambda: f"the models finished before{tuning.said()}"  # for an interrupt

    def progress(event: str, info: dict[str, Any]) -> None:
        tuning.update(event, info)
        if not args.quiet:
            _final_progress(event, info)

    try:
        results = finish_members(
            out,
            space,
            [arch.arch_id],
            {arch.arch_id: arch},
            data,
            finetune_config=exp.finetune or FinetuneConfig(),
            compress=exp.compress,
            accuracy={},
            origin={
                "arch_json": str(Path(args.arch).resolve()),
                "experiment": str(Path(exp.source).resolve()) if exp.source else None,
                # where the input came from (a search's study and trial, or an earlier nas train)
                "parent": doc.get("origin")
                or (
                    {"trial": doc["metrics"]["trial"]}
                    if "trial" in doc.get("metrics", {})
                    else "not recorded in the input"
                ),
            },
            environment=environment(),
            progress=progress,
            start=args.arch,
            keep_others=True,
            locate=exp.locate,
        )
    except NasConfigError:
        if new_folder and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a fine-tune that diverged at once leaves nothing to resume
        raise
    _print_final(results, out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``nas export --storage URL --study NAME --trial N``: the export folder of any trial."""
    import optuna

    from nas.final import export_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = export_trial(args.storage, args.study, args.trial, args.out)
    print(f"exported trial {args.trial} to {folder}/")
    return 0


def _check_out_folder(out: Path) -> None:
    """Refuse an --out folder that cannot be made, before any work is done."""
    if out.exists() and not out.is_dir():
        raise NasConfigError(f"--out {out}: exists and is not a folder; choose another --out")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NasConfigError(f"--out {out}: {parent} is not a folder; choose another --out")
    if parent is not None and not out.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise NasConfigError(f"--out {out}: cannot write in {parent}; choose another --out")


def _check_bench_out(out: Path, settings: dict[str, Any]) -> None:
    """Refuse an --out folder holding the results of a benchmark with other settings: writing
    would replace them. The same settings again (a rerun) replace them with the same figures."""
    if not (out / "summary.csv").is_file():
        if out.is_dir() and any(out.iterdir()):  # a run's folder, or anything else of yours
            raise NasConfigError(
                f"--out {out}: holds other files, not a benchmark's results; choose a new or "
                "empty --out"
            )
        return
    try:
        before = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if before != settings:
        differ = (
            ", ".join(k for k in settings if before.get(k) != settings[k])
            if isinstance(before, dict)
            else "settings not recorded"
        )
        raise NasConfigError(
            f"--out {out}: holds the results of another benchmark run ({differ}), which this "
            "one would replace; choose another --out, or delete the folder"
        )


def cmd_pareto(args: argparse.Namespace) -> int:
    import optuna

    from nas.search import load_study, write_report
    from nas.search._report import _objectives

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(args.storage, args.study)
    out = Path(args.out or f"pareto-{args.study}")
    _check_out_folder(out)
    others = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    ours = {"trials.csv", "manifest.json"}  # a report's folder, or a run's (stopped early too)
    if others and not ours & set(others):  # neither new, nor a run's or a report's folder
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        raise NasConfigError(
            f"--out {out}: holds other files ({shown}), which the report's (trials.csv, "
            "pareto.csv, report.html, figures, architectures/) would mix with or replace; "
            "choose a new or empty --out, or the study's run folder"
        )
    report = write_report(study, out)
    frame_path = out / "pareto.csv"
    if args.quiet:
        pass  # the summary line only
    elif not frame_path.stat().st_size:
        print("(no trials)")
    else:
        import pandas as pd

        # the front at a glance: trial, architecture and objectives (pareto.csv has the rest)
        frame = pd.read_csv(frame_path)
        columns = ["number", "arch_id", *_objectives(study), "arch"]
        if frame.empty:
            print("(no Pareto members: every trial failed or broke a constraint)")
        else:
            print(frame[[c for c in columns if c in frame]].to_string(index=False))
    print(
        f"{report.n_trials} trials, {report.n_pareto} on the Pareto front; written to {out}/ "
        "(pareto.csv has every column)"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``nas bench nasbench201|fbnet ...``: score search methods against the true front."""
    import time

    import optuna

    from nas._io import atomic_write_text
    from nas.bench import (
        NORMALIZATION_NOTE,
        check_methods,
        evaluation_unit,
        format_summary,
        load_problem,
        run_benchmark,
        write_results,
    )

    # Validate everything before running or creating --out, so bad input leaves nothing behind.
    if args.benchmark == "fbnet" and args.dataset is not None:
        raise NasConfigError(
            f"--dataset {args.dataset} does not apply to fbnet (cost-only: latency, energy, "
            "macs); drop --dataset"
        )
    objectives_text = args.objectives
    if objectives_text is None:
        objectives_text = (
            "latency_ms@raspi4,macs"  # latencies alone have one optimum (all-skip)
            if args.benchmark == "fbnet"
            else "error,latency_ms@pixel3"
        )
    if args.out:
        out = Path(args.out)
    elif args.benchmark == "fbnet":
        out = Path("bench-fbnet")
    else:
        out = Path(f"bench-{args.benchmark}-{args.dataset or 'cifar10'}")
    _check_out_folder(out)
    objectives = [o for o in objectives_text.split(",") if o.strip()]
    problem = load_problem(args.benchmark, args.dataset, objectives, data_dir=args.data)
    baselines = [b for b in args.baselines.split(",") if b.strip()]
    methods = check_methods([args.sampler, *baselines])
    if args.budget > problem.n_archs:
        raise NasConfigError(
            f"--budget {args.budget} exceeds the {problem.n_archs:,} architectures of the table"
        )
    settings = {
        "benchmark": problem.benchmark,
        "dataset": problem.dataset,
        "objectives": list(problem.names),
        "methods": list(methods),
        "budget": args.budget,
        "seeds": args.seeds,
    }
    _check_bench_out(out, settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def progress(name: str, seed: int, done: int, total: int, gap: float, seconds: float) -> None:
        if not args.quiet:
            print(
                f"[{done}/{total}] {name} seed {seed}: hv_gap {gap:.4f} ({seconds:.2f} s)",
                file=sys.stderr,
                flush=True,
            )

    start = time.perf_counter()
    result = run_benchmark(
        problem, methods, budget=args.budget, seeds=range(args.seeds), progress=progress
    )
    write_results(result, out)
    atomic_write_text(out / "settings.json", json.dumps(settings, indent=2) + "\n")
    where = problem.benchmark + (f" {problem.dataset}" if problem.dataset else "")
    exact = " (exact, by dynamic programming)" if problem.benchmark == "fbnet" else ""
    print(
        f"{where}, objectives {', '.join(problem.names)}: "
        f"{len(problem.true_front)} point{'' if len(problem.true_front) == 1 else 's'} on the "
        f"true front{exact} of {problem.n_archs:,} "
        f"architectures; {args.budget} {evaluation_unit(problem)} x {args.seeds} "
        f"seed{'s' * (args.seeds != 1)} per method"
    )
    print(format_summary(result.summary))
    print(NORMALIZATION_NOTE)
    print(
        f"results in {out}/ (evaluations.csv, runs.csv, summary.csv, gap.png, settings.json) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0
