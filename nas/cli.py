"""Command line: ``nas run | search | train | export | pareto | spaces | show | sample | ...``.

User errors print one line on stderr and exit with status 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nas._errors import NasConfigError

__all__ = ["main"]


#: what --space takes (nas.space.load_space)
_SPACE_HELP = (
    "built-in space name or YAML path, optionally @CxHxW:CLASSES for the space at another input "
    "shape (mobilenet_small@1x28x28:10, as a run adapts it to its data), or a run's "
    "architectures/<id>.json"
)


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
            bar.set_postfix_str(
                f"trial {info['trial']} epoch {info['epoch']}/{info['epochs']} "
                f"loss {info['loss']:.3f}"
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


def _print_final(results: Sequence[Any], run_dir: Path) -> None:
    for r in results:
        for m in r.measurements:
            print(
                f"  {r.arch_id} {m.variant:<12} {m.runtime:<12} accuracy {m.accuracy:.4f} "
                f"({m.split})  latency {m.latency_ms * 1e3:8.1f} us  size {m.size_bytes:>9,} B"
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


def _cmd_run(args: argparse.Namespace) -> int:
    import optuna

    from nas.pipeline import run_experiment
    from nas.search import load_experiment, storage_url

    exp = load_experiment(args.experiment, args.set or [])
    bar = None if args.quiet else _progress_bar(exp.search.n_trials)
    summarized: list[bool] = []
    count = {"before": 0, "new": 0, "total": exp.search.n_trials, "models": 0}

    def kept() -> str:
        """What an interrupt keeps, in numbers (said by :func:`_stopped`)."""
        if summarized:
            return (
                f"the search's {count['before'] + count['new']} trials and "
                f"{count['models']} finished model{'s' * (count['models'] != 1)}"
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


def _cmd_train(args: argparse.Namespace) -> int:
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
    space, arch, doc = read_architecture_file(args.arch)
    if doc.get("precision") == "int8":
        beside = Path(args.arch).parent / "arch.json"
        raise NasConfigError(
            f"{args.arch}: an INT8 variant (an ONNX Runtime graph) cannot be fine-tuned; name "
            f"the float model's arch.json ({beside}), whose INT8 twin nas train then makes"
        )
    out = Path(args.out or Path(exp.out) / "train")
    _check_out_folder(out)
    data = load_data(exp.data)
    adapted = adapt_space(space, data)
    if adapted.hash != space.hash:
        raise NasConfigError(
            f"{args.arch}: the architecture's space '{space.name}' takes input "
            f"{tuple(space.input_shape)} with {space.num_classes} classes but {args.experiment}"
            f"'s data is {tuple(data.input_shape)} with {data.num_classes} classes; train it "
            f"with an experiment on data of that shape (the one that searched space "
            f"'{space.name}')"
        )
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
        progress=None if args.quiet else _final_progress,
        start=args.arch,
        keep_others=True,
    )
    _print_final(results, out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
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


def _check_out_file(out: Path, example: str, inputs: Sequence[str] = ()) -> None:
    """Refuse an --out file that cannot be written, or that is one of the command's
    ``inputs`` (it would replace them), before any work is done."""
    for given in inputs:
        if given != "-" and Path(given).resolve() == out.resolve():
            raise NasConfigError(
                f"--out {out}: is the input file {given}, which writing would replace; name "
                f"another file, e.g. --out {out.with_name(example)}"
            )
    if out.is_dir():
        raise NasConfigError(
            f"--out {out}: is a folder; name a file in it, e.g. --out {out / example}"
        )
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise NasConfigError(
            f"--out {out}: {parent} is a file, not a folder; choose another --out"
        )
    try:  # the only sure test of a folder that takes files (/proc says it is writable)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        raise NasConfigError(
            f"--out {out}: cannot write in {parent}; choose another --out"
        ) from None


def _files_read(space: Any, model: Any, table: str) -> list[str]:
    """The files a command reads its space and cost model from: an --out must not replace
    them (a table's rows or JSON, an analytic profile, a space file)."""
    files = [space.source] if getattr(space, "source", "") else []
    path = getattr(model, "path", None)
    if path:
        files += [str(path), str(Path(path).with_suffix(".csv"))]
    elif table.endswith((".yaml", ".yml")):
        files.append(table)
    else:  # an analytic profile found by its device name
        from nas.cost import builtin_table_dir

        files.append(str(builtin_table_dir() / f"{table}.yaml"))
    return files


def _table_out(given: str, example: str, *inputs: str | Path) -> Path:
    """The table file ``--out given`` names (``given`` with ``.json``), refused when it is a
    folder or its files would overwrite an input or a file that is no table: a table is
    ``<out>.json`` plus ``<out>.csv``, and ``phone.json`` writes ``phone.csv``."""
    if Path(given).is_dir():  # not 'given.json' beside the folder
        _check_out_file(Path(given), example)
    out = Path(given).with_suffix(".json")
    _check_out_file(out, example, inputs=[str(source) for source in inputs])
    rows = out.with_suffix(".csv")
    for source in inputs:
        if Path(source).resolve() == rows.resolve():
            raise NasConfigError(
                f"--out {out}: the table's rows go to {rows}, which is the input {source}; "
                f"choose another --out, e.g. --out {Path(source).with_name(example)}"
            )
    for profile in (out.with_suffix(".yaml"), out.with_suffix(".yml")):
        if profile.is_file():  # the table would take the profile's device name in that folder
            raise NasConfigError(
                f"--out {out}: {profile} beside it names the device '{out.stem}' too, and a "
                f"table would take its place; choose another --out, e.g. --out "
                f"{out.with_name(out.stem + '-table.json')}"
            )
    if rows.is_file():
        with open(rows, encoding="utf-8", errors="replace") as f:
            header = f.readline().strip()
        if header and header.split(",")[0] != "signature":
            raise NasConfigError(
                f"--out {out}: {rows} exists and is not a table's rows (it starts "
                f"{header[:40]!r}); writing the table would overwrite it: choose another --out"
            )
    return out


def _warn_builtin_name(out: Path) -> None:
    """Say when a new table is named like a built-in device: in a folder an experiment lists in
    ``table_dirs`` (or in ``latency_tables/`` itself) it would stand in for that device."""
    from nas.cost import builtin_table_dir, list_devices

    builtin = builtin_table_dir() / out.name
    refill = builtin.exists() and out.resolve() == builtin.resolve()
    if out.stem in list_devices() and not refill:
        print(
            f"nas: warning: {out} is named like the built-in device '{out.stem}'; in a folder "
            f"that an experiment's table_dirs lists it replaces that device in every "
            f"latency_ms@{out.stem}; name it e.g. {out.stem}-mine.json to keep both",
            file=sys.stderr,
        )


def _check_replaced_table(
    out: Path, writes: str, same_kind: Any, force: bool, column: str | None = None
) -> None:
    """Refuse to overwrite a table whose latencies are of another kind (a measured table, say)
    with a ``writes`` one, or an imported table of another source ``column``, unless --force."""
    if force or not out.exists():
        return
    try:
        meta = json.loads(out.read_text())
        theirs = str(meta.get("value_kinds", {}).get("latency", "unstated"))
        device = f" for device '{meta.get('device')}'"
        their_column = (meta.get("source") or {}).get("device_column")
    except (OSError, ValueError, AttributeError):
        theirs, device, their_column = "unreadable", "", None
    if not same_kind(theirs):
        raise NasConfigError(
            f"--out {out}: holds a table of {theirs} latencies{device}; the {writes} table "
            "would replace it: choose another --out, or pass --force to replace it"
        )
    if column is not None and their_column not in (None, column):
        raise NasConfigError(
            f"--out {out}: holds device '{their_column}' of its source; importing "
            f"'{column}' would replace those numbers under the same name: choose another --out "
            f"(e.g. {out.with_name(f'{column}.json')}), or pass --force to replace it"
        )


def _cmd_pareto(args: argparse.Namespace) -> int:
    import optuna

    from nas.search import load_study, write_report
    from nas.search._report import _objectives

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(args.storage, args.study)
    out = Path(args.out or f"pareto-{args.study}")
    _check_out_folder(out)
    report = write_report(study, out)
    frame_path = out / "pareto.csv"
    if not frame_path.stat().st_size:
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


def _cmd_spaces(args: argparse.Namespace) -> int:
    from nas.space import builtin_space_dir, list_spaces, load_space

    rows = []
    for name in args.files or list_spaces():  # a file given is checked as it is listed
        space = load_space(name)
        rows.append(
            (
                name if not args.files else f"{space.name} ({name})",
                f"{space.size():.4g}" if space.size() > 1e6 else f"{space.size():,}",
                str(len(space.parameters())),
                "x".join(map(str, space.input_shape)),
                space.description,
            )
        )
    header = ("space", "architectures", "choices", "input", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    if not args.files:
        print(f"(built-in spaces live in {builtin_space_dir()}; any YAML path works too)")
    return 0


def _table_dirs(args: argparse.Namespace) -> tuple[Path, ...]:
    """The ``--table-dir`` folders, searched before ``latency_tables/`` (as ``table_dirs``)."""
    extra = tuple(Path(d) for d in args.table_dir)
    for folder in extra:
        if not folder.is_dir():
            raise NasConfigError(f"--table-dir {folder}: no such folder")
    return extra


def _add_table_dir(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--table-dir",
        action="append",
        default=[],
        metavar="DIR",
        help=f"{what} (repeatable; searched first, like an experiment's table_dirs)",
    )


def _cmd_devices(args: argparse.Namespace) -> int:
    from nas.cost import builtin_table_dir, list_devices, load_cost_model
    from nas.cost._table import UNFINISHED

    extra = _table_dirs(args)
    rows = [("device", "kind", "covers", "description")]
    for name in list_devices(extra):
        try:
            model = load_cost_model(name, extra)
        except NasConfigError as exc:  # one broken file in a user's folder hides no other model
            if "a search space file, not a cost model" not in str(exc):
                rows.append((name, "unreadable", "-", str(exc)))
            continue
        meta = getattr(model, "meta", None)
        if meta is not None:
            kinds = sorted({e.kind for e in model.entries.values()})  # type: ignore[attr-defined]
            rows.append(
                (
                    name,
                    f"table ({', '.join(kinds)})",
                    ", ".join(
                        f"{n} (interrupted profile)" if n in meta.get(UNFINISHED, []) else n
                        for n in meta.get("spaces", {})
                    )
                    or "any",
                    str(meta.get("description", "")),
                )
            )
        else:
            rows.append((name, "analytic", "any space", getattr(model, "description", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    folders = ", ".join(str(f) for f in (*extra, builtin_table_dir()))
    print(
        f"(cost models from {folders}, the first folder holding a name wins; metrics name them "
        "as latency_ms@<device>, and an experiment adds folders with table_dirs)"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from nas.export import read_architecture_file
    from nas.space import load_space

    target = args.arch
    if args.space and (target.endswith(".json") or Path(target).exists()):
        where = "" if Path(target).exists() else " (and does not exist)"
        raise NasConfigError(
            f"'{target}' names a file{where}, not an architecture string; --space is for "
            f"strings: nas show {target}"
        )
    if args.space:
        space = load_space(args.space)
        arch = space.parse(target)
    elif target.endswith(".json") or Path(target).is_file():
        space, arch, doc = read_architecture_file(target)
    else:
        raise NasConfigError(
            f"'{target}' is not an arch.json file; to show an architecture string, name its "
            "space: nas show --space SPACE 'ARCH'"
        )
    table = space.describe(arch)
    if not args.space and "pruned" in doc:
        from nas.compress import apply_shape_overrides

        model = apply_shape_overrides(space.build(arch), doc["pruned"], source=target)
        pruned = space.describe(arch, model=model)
        print(pruned)
        print(
            f"pruned: the widths of {Path(target).name}'s 'pruned'; {pruned.params:,} params "
            f"({pruned.params / table.params:.0%} of the searched architecture's "
            f"{table.params:,}), {pruned.macs:,} MACs ({pruned.macs / table.macs:.0%})"
        )
    else:
        print(table)
    if not args.space:
        print(_weights_line(target, doc))
    if args.json:
        print(arch.to_json())
    return 0


def _weights_line(path: str, doc: dict[str, Any]) -> str:
    """Whether the file's weights load into its model: loading them is the check (a missing
    file or weights of another network raise the same error ``load_architecture`` gives)."""
    from nas.export import load_architecture

    if doc.get("precision") == "int8":
        load_architecture(path)
        return f"weights: in {doc['onnx']} (INT8 ONNX graph; it loads in ONNX Runtime)"
    if not doc.get("weights"):
        return "weights: none, the seeded initialization (train it with nas train)"
    load_architecture(path)
    return f"weights: {doc['weights']} (every tensor fits the model)"


def _cmd_sample(args: argparse.Namespace) -> int:

    from nas.space import load_space

    space = load_space(args.space)
    size = space.size()
    if args.n > size:
        raise NasConfigError(
            f"-n {args.n}: space '{space.name}' has only {size:,} architectures; ask for at most "
            "that many"
        )
    # distinct: a calibration refuses an architecture measured twice
    for arch in space.random_distinct(args.n, args.seed):
        print(space.format(arch))
    return 0


def _profile_config(args: argparse.Namespace) -> Any:
    from nas.cost._profile import ProfileConfig

    power = {}
    if getattr(args, "power_w", None) is not None:
        power = {
            "power_w": args.power_w,
            "power_source": args.power_source or f"given with --power-w {args.power_w:g}",
        }
    elif getattr(args, "power_source", None):
        raise NasConfigError("--power-source: describes a --power-w figure; give --power-w too")
    return ProfileConfig(
        device=args.device,
        threads=args.threads,
        batch=getattr(args, "batch", 1),
        dtype=getattr(args, "dtype", "fp32"),
        runtime=getattr(args, "runtime", None),
        warmup=args.warmup,
        repeats=args.repeats,
        **power,
    )


_QUIET_PROGRESS_S = 30.0  # without a terminal: a progress line this often


def _counter(desc: str, unit: str = "layer") -> Any:
    """A tqdm bar on a terminal; on a file or pipe (CI logs, nohup) a line every 30 s with the
    count and the time left, so a long measurement is never silent."""
    import time

    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)
    start = last = time.monotonic()

    def update(done: int, total: int, what: str) -> None:
        nonlocal last
        if bar.disable:
            now = time.monotonic()
            if now - last >= _QUIET_PROGRESS_S and 0 < done < total:
                left = (now - start) / done * (total - done)
                print(
                    f"{desc}: {done}/{total} {unit}s, about {left / 60:.0f} min left",
                    file=sys.stderr,
                    flush=True,
                )
                last = now
            return
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what[:60])
        bar.refresh()

    update.close = bar.close  # type: ignore[attr-defined]
    return update


def _cmd_profile(args: argparse.Namespace) -> int:
    import shlex

    from torch import get_num_threads as torch_threads

    from nas.cost import LookupTable
    from nas.cost._profile import profile_space
    from nas.cost._table import fit_error, poor_fit
    from nas.space import load_space

    space = load_space(args.space)
    config = _profile_config(args)
    kind = "".join(
        [
            "-onnxruntime" * (config.engine == "onnxruntime"),
            f"-{config.dtype}" * (config.dtype != "fp32"),
        ]
    )
    default = f"{args.device.replace(':', '')}{kind}-{space.name}.json"
    out = _table_out(args.out or default, f"{space.name}-table.json")
    existing = LookupTable.load(out) if out.exists() else None
    if existing is None:
        _warn_builtin_name(out)
    name = existing.device if existing else out.stem
    # the table as it was, kept if this run changes what it predicts for the space
    before = _table_files(out)
    bar = _counter(f"profiling {space.name} on {args.device}")
    try:
        table = profile_space(
            space,
            config,
            device_name=name,
            existing=existing,
            checkpoint=lambda t: t.save(out),
            progress=bar,
            command=shlex.join(
                [
                    "nas",
                    "profile",
                    "--space",
                    args.space,
                    "--device",
                    args.device,
                    "--threads",
                    str(config.threads or torch_threads()),
                    "--batch",
                    str(config.batch),
                    "--dtype",
                    config.dtype,
                    "--runtime",
                    config.engine,
                    "--warmup",
                    str(config.warmup),
                    "--repeats",
                    str(config.repeats),
                    *(["--power-w", f"{args.power_w:g}"] if args.power_w is not None else []),
                    "--out",
                    str(out),
                ]
            ),
        )
    finally:
        bar.close()  # type: ignore[attr-defined]
    table.save(out)
    fix = table.meta["in_model"][space.name]
    if existing is not None:
        _keep_previous_table(out, before, existing.meta, table.meta, space)
    kept = len(existing.entries) if existing is not None else 0
    print(
        f"{out}: {len(table.entries)} entries for device '{table.device}', "
        f"{len(table.entries) - kept} measured now"
        + (f", {kept} kept from before" if kept else "")
        + f" (in-model correction: {_correction_text(fix)}, fit RMSE {fix['fit_rmse_ms']:.4f} ms"
        + (
            f"; {', '.join(fix['held_at_zero'])} held at 0: a free fit made a cost negative, "
            "or the models timed do not determine them)"
            if fix.get("held_at_zero")
            else ")"
        )
    )
    if poor_fit(fix):
        print(
            f"nas: warning: the correction fits the end-to-end timings poorly ({fit_error(fix)}): "
            "the machine was busy, the timings too short"
            + (
                ", or the runtime fuses across layers more than the correction models"
                if config.engine == "onnxruntime"
                else ""
            )
            + ", and predictions may be far off; on an idle machine, rerun the same command "
            "(it refits the correction and keeps the entries) or profile into a new --out "
            f"(more --repeats), then check it with nas validate-table --space {args.space} "
            f"--table {out}",
            file=sys.stderr,
        )
    return 0


def _correction_text(fix: Any) -> str:
    """An in-model correction in words: '+0.0120 ms +0.0010 ms/layer +0.5000 ms/MB'."""
    if not fix:
        return "none"
    text = (
        f"{fix['model_ms']:+.4f} ms {fix['per_layer_ms']:+.4f} ms/layer "
        f"{fix['per_mb_ms']:+.4f} ms/MB"
    )
    if "layer_scale" in fix:  # fitted for graph runtimes only
        text += f" {fix['layer_scale']:+.3f} x the layers"
    return text


def _table_files(out: Path) -> dict[Path, bytes]:
    """The bytes of the table ``out`` (its JSON and CSV), empty when there is none."""
    return {p: p.read_bytes() for p in (out, out.with_suffix(".csv")) if p.is_file()}


def _set_aside(out: Path, before: dict[Path, bytes]) -> Path:
    """Write the table files ``before`` (from :func:`_table_files`) as ``<out>.prev.json`` and
    ``.csv``, or, when that holds another table, the first free ``<out>.prev-N.json``: a
    backup never replaces another (two versions of a space profiled in turn would otherwise
    leave neither's); returns the JSON's path."""
    from nas._io import atomic_write_bytes

    for n in itertools.count(1):
        kept = out.with_name(f"{out.stem}.prev{'' if n == 1 else f'-{n}'}.json")
        copy = {}
        for path, data in before.items():
            if path.suffix == ".json":  # the copy reads its own rows file, not the new one
                doc = json.loads(data)
                doc["table"] = kept.with_suffix(".csv").name
                data = (json.dumps(doc, indent=2) + "\n").encode()
            copy[kept.with_suffix(path.suffix)] = data
        if copy == _table_files(kept) or not any(p.exists() for p in copy):
            break  # the same backup already, or a free name
    for path, data in copy.items():
        atomic_write_bytes(path, data)
    return kept


def _save_replacing(table: Any, out: Path) -> None:
    """Save ``table`` as ``out``; a table already there is kept as ``<out>.prev.json`` (a study
    that costed with it refuses the new one, and can continue with the old)."""
    before = _table_files(out)
    if before:
        kept = _set_aside(out, before)
        print(
            f"nas: warning: replacing {out}; the previous table is kept as {kept}", file=sys.stderr
        )
    table.save(out)


def _keep_previous_table(
    out: Path, before: dict[Path, bytes], old: Any, new: Any, space: Any
) -> None:
    """When a rerun changed what the table predicts for ``space`` (another version of the
    space, or a refit in-model correction), keep the previous table beside it and say so:
    studies that costed with it refuse to continue with the changed one."""
    from nas.cost._table import IN_MODEL_TERMS, poor_fit

    old_fix = (old.get("in_model") or {}).get(space.name)
    new_fix = new["in_model"][space.name]
    refit = old_fix is not None and any(old_fix.get(k) != new_fix.get(k) for k in IN_MODEL_TERMS)
    old_hash = (old.get("spaces") or {}).get(space.name)
    other_space = old_hash is not None and old_hash != space.hash
    if not (refit or other_space):
        return
    kept = _set_aside(out, before)
    why = (
        f"another version of space '{space.name}'"
        if other_space
        else "a poorly fitting correction before"
        if poor_fit(old_fix or {})
        else "new entries"
    )
    print(
        f"nas: warning: {out} already held space '{space.name}'; with {why} its in-model "
        f"correction was refit ({_correction_text(old_fix)} -> {_correction_text(new_fix)}), "
        "so its predictions changed and a study that costed with it refuses to continue; the "
        f"previous table is kept as {kept} (copy it and its .csv back to continue such a study)",
        file=sys.stderr,
    )


def _cmd_validate(args: argparse.Namespace) -> int:
    import numpy as np
    from torch import get_num_threads as torch_threads

    from nas.cost import LookupTable, load_cost_model
    from nas.cost._profile import fingerprint, validate_table
    from nas.space import load_space

    space = load_space(args.space)
    table = load_cost_model(args.table, _table_dirs(args))
    if args.out:
        _check_out_file(Path(args.out), "validation.csv", _files_read(space, table, args.table))
    if not isinstance(table, LookupTable):
        raise NasConfigError(
            f"--table {args.table}: an analytic profile, not a lookup table; validate-table "
            "checks a table's entries against this machine (make one with nas profile)"
        )
    protocol = table.meta.get("protocol") or {}  # time the models as the table's layers were
    for key, fallback in (("threads", None), ("warmup", 20), ("repeats", 100)):
        if getattr(args, key) is None:
            setattr(args, key, protocol.get(key) or fallback)
    config = _profile_config(args)
    table_threads = protocol.get("threads")
    threads = config.threads or torch_threads()
    if table_threads and table_threads != threads:
        print(
            f"nas: warning: {args.table} was measured with {table_threads} "
            f"thread{'s' * (table_threads != 1)}, this run "
            f"uses {threads}: the figures compare the two settings (pass --threads "
            f"{table_threads} to check the table itself)",
            file=sys.stderr,
        )
    changed = _fingerprint_changes(table.meta.get("fingerprint") or {}, fingerprint(config))
    if changed:
        print(
            f"nas: warning: {args.table} was measured with {', '.join(changed)}: the figures "
            "compare the table with this setting, not only with itself",
            file=sys.stderr,
        )
    bar = _counter(f"measuring {args.n} {space.name} models", unit="model")
    try:
        report = validate_table(space, table, config, n=args.n, seed=args.seed, progress=bar)
    finally:
        bar.close()  # type: ignore[attr-defined]
    if args.out:
        import pandas as pd

        from nas._io import atomic_write_text

        columns = ["arch", "predicted_ms", "measured_ms", "drift_ratio"]
        frame = pd.DataFrame(report.rows, columns=columns)
        atomic_write_text(args.out, frame.to_csv(index=False))
    for name, figures in (
        ("as measured", report.raw),
        ("drift-corrected", report.drift_corrected),
    ):
        print(
            f"table {table.device}, {report.n} random {space.name} architectures (seed "
            f"{args.seed}), {name}: {100 * figures['within_5pct']:.1f}% within 5%, "
            f"{100 * figures['within_10pct']:.1f}% within 10%, MAPE {figures['mape_pct']:.2f}%, "
            f"RMSPE {figures['rmspe_pct']:.2f}%, Kendall tau {figures['kendall_tau']:.3f}"
        )
    if report.repeatability:
        again = report.repeatability
        print(
            "the measurement itself, drift-corrected (each timing round of a model against its "
            f"other rounds): {100 * again['within_5pct']:.1f}% within 5%, "
            f"{100 * again['within_10pct']:.1f}% within 10%, MAPE {again['mape_pct']:.2f}%; "
            "no table scores far above this on this machine"
        )
    q = np.quantile(report.drift_ratios, [0.0, 0.5, 1.0])
    print(
        f"machine speed beside each model (reference now / in table): min {q[0]:.3f}, "
        f"median {q[1]:.3f}, max {q[2]:.3f}"
    )
    print(json.dumps(report.summary()))
    return 0


def _fingerprint_changes(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """What of the machine and runtime that measured a table (its ``fingerprint``) differs
    here: another CPU or GPU model, another torch or ONNX Runtime version ("torch 2.12.0,
    this machine has torch 2.13.0"). Kernels change between versions and chips; a thread
    count is said apart, with how to match it."""
    return [
        f"{theirs[key]}, this machine has {ours[key]}"
        if key not in ("cpu", "gpu")
        else f"{key.upper()} {theirs[key]!r}, this machine has {ours[key]!r}"
        for key in ("cpu", "gpu", "runtime", "onnxruntime", "cuda")
        if theirs.get(key) and ours.get(key) and theirs[key] != ours[key]
    ]


def _cmd_cost(args: argparse.Namespace) -> int:
    import csv
    import io

    from nas._io import atomic_write_text, read_text
    from nas.cost import charged_layers, for_space, load_cost_model
    from nas.space import load_space

    space = load_space(args.space)
    model = for_space(load_cost_model(args.table, _table_dirs(args)), space)
    if args.out:
        inputs = [args.archs, *_files_read(space, model, args.table)]
        _check_out_file(Path(args.out), "costs.csv", inputs=inputs)
    what = "a file of architecture strings, one per line, or a CSV with an 'arch' column"
    lines = read_text(args.archs, expected=what).splitlines()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["arch", "latency_ms", "energy_mj"])
    source = "<stdin>" if args.archs == "-" else args.archs
    for number, text in _arch_lines(lines, source):
        try:
            arch = space.parse(text)
            estimate = model.estimate(charged_layers(space, model, arch))
        except NasConfigError as exc:
            raise NasConfigError(f"{source}:{number}: {exc}") from None
        energy = estimate.energy_mj
        # a latency-only table (imported, calibrated) has no energy: an empty cell, not 0
        writer.writerow(
            [text, f"{estimate.latency_ms:.9g}", "" if math.isnan(energy) else f"{energy:.9g}"]
        )
    if buf.getvalue().count("\n") == 1:
        print(
            f"nas: warning: {args.archs} holds no architectures (blank and # lines only); "
            "write one architecture string per line",
            file=sys.stderr,
        )
    if args.out:
        atomic_write_text(args.out, buf.getvalue())
    else:
        print(buf.getvalue(), end="")
    return 0


def _arch_lines(lines: list[str], source: str) -> list[tuple[int, str]]:
    """(line number, architecture string) of a file of strings, one per line (blank and ``#``
    lines skipped), or of the ``arch`` column of a CSV the tool wrote (trials.csv, pareto.csv,
    nas cost's output): architecture strings hold no commas, so a first line with commas and
    an ``arch`` field is a CSV header."""
    import csv

    numbered = [(n, line.strip()) for n, line in enumerate(lines, start=1)]
    numbered = [(n, t) for n, t in numbered if t and not t.startswith("#")]
    if not numbered or "," not in numbered[0][1]:
        return numbered
    header = next(csv.reader([numbered[0][1]]))
    if "arch" not in header:
        named = [h for h in header if "arch" in h.lower()]
        if named:  # another tool's CSV: its architecture column named otherwise
            raise NasConfigError(
                f"{source}:{numbered[0][0]}: a CSV header without an 'arch' column (found "
                f"{', '.join(named)}); rename the architecture column to 'arch'"
            )
        return numbered  # parsing it as an architecture names the problem
    column = header.index("arch")
    rows = [(n, next(csv.reader([line]))) for n, line in numbered[1:]]
    return [(n, row[column].strip()) for n, row in rows if len(row) > column]


def _cmd_import(args: argparse.Namespace) -> int:
    from nas.cost._import import import_table
    from nas.space import load_space

    space = load_space(args.space) if args.space else None
    out = _table_out(args.out, f"{args.device}-table.json", args.src)
    _check_replaced_table(
        out, "imported", lambda k: k.endswith(" in source"), args.force, args.device
    )
    _warn_builtin_name(out)
    table = import_table(args.format, args.src, args.device, space=space, name=out.stem)
    _save_replacing(table, out)
    print(
        f"{out}: {len(table.entries)} entries imported from {args.src} ({args.format}, "
        f"device {args.device})"
    )
    return 0


_HOUR_MS = 3.6e6
_LOO_WARN_PCT = 25.0  # leave-one-out error of a calibration worth a warning


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import csv

    from nas._io import read_text
    from nas.cost import for_space, load_cost_model
    from nas.cost._calibrate import calibrate
    from nas.space import load_space

    out = _table_out(args.out, "my-device.json", args.measurements)
    _check_replaced_table(out, "calibrated", lambda k: k == "calibrated", args.force)
    _warn_builtin_name(out)
    space = load_space(args.space)
    prior = for_space(load_cost_model(args.prior, _table_dirs(args)), space)
    path = Path(args.measurements)
    text = read_text(path, expected="a CSV of arch,latency_ms", kind="CSV")
    reader = csv.DictReader(text.splitlines())
    if not {"arch", "latency_ms"} <= set(reader.fieldnames or ()):
        found = ",".join(reader.fieldnames or ()) or "nothing"
        raise NasConfigError(
            f"{path}:1: expected the columns arch,latency_ms (architectures in the space's "
            f"string form, whole-model milliseconds), found {found}"
        )
    ignored = [name for name in reader.fieldnames or () if name not in ("arch", "latency_ms")]
    if ignored:
        print(
            f"nas: warning: {path}:1: ignoring the columns {','.join(ignored)} (nas calibrate "
            "reads arch and latency_ms)",
            file=sys.stderr,
        )
    measurements = []
    first_line: dict[str, int] = {}  # arch_id -> the line that measured it
    for line, row in enumerate(reader, start=2):
        if row.get(None):  # type: ignore[call-overload]  # fields beyond the header's
            raise NasConfigError(
                f"{path}:{line}: {len(reader.fieldnames or ()) + len(row[None])} fields "  # type: ignore[index]
                f"but the header names {len(reader.fieldnames or ())}; a decimal comma? write "
                "latency_ms with a point (17.5)"
            )
        try:
            arch = space.parse(row["arch"])
        except NasConfigError as exc:
            raise NasConfigError(f"{path}:{line}: arch: {exc}") from None
        try:
            value = float(row["latency_ms"])
        except (ValueError, TypeError):
            raise NasConfigError(
                f"{path}:{line}: latency_ms: expected a number of milliseconds, "
                f"got {row['latency_ms']!r}"
            ) from None
        if not 0 < value < float("inf"):
            raise NasConfigError(f"{path}:{line}: latency_ms must be > 0 and finite, got {value}")
        if value > _HOUR_MS:
            raise NasConfigError(
                f"{path}:{line}: latency_ms: {value:g} ms is over an hour for one inference; "
                "write the time of one inference in milliseconds"
            )
        if arch.arch_id in first_line:
            raise NasConfigError(
                f"{path}:{line}: arch: measured already on line {first_line[arch.arch_id]} "
                "(the same architecture); keep one row per architecture, e.g. the median of "
                "its timings"
            )
        first_line[arch.arch_id] = line
        measurements.append((arch, value))
    if len(measurements) < 3:
        raise NasConfigError(
            f"{path}: {len(measurements)} measurement{'s' * (len(measurements) != 1)}; nas "
            "calibrate needs at least 3 (the documented figures use 10 or more)"
        )
    if len(measurements) < 10:
        print(
            f"nas: warning: {path}: {len(measurements)} measurements; the fit leans on the "
            "prior (the documented figures use 10 or more)",
            file=sys.stderr,
        )
    result = calibrate(
        space, measurements, prior, device=out.stem, source=str(path), unread=args.unread_layers
    )
    _save_replacing(result.table, out)
    print(
        f"{out}: {len(result.table.entries)} entries calibrated from {len(measurements)} "
        f"measurements (prior {args.prior}; unread layers {args.unread_layers}; leave-one-out "
        f"MAPE {result.loo_mape_pct:.1f}%)"
    )
    _warn_of_outliers(path, first_line, measurements, result.loo_predictions)
    if result.loo_mape_pct > _LOO_WARN_PCT:
        other = "run" if args.unread_layers == "skipped" else "skipped"
        print(
            f"nas: warning: the table misses the measurements it was not fitted on by "
            f"{result.loo_mape_pct:.0f}% on average (leave-one-out): its latencies are rough, "
            f"though its ranking may still serve; measure more architectures, try another "
            f"--prior, or --unread-layers {other} if the runtime "
            + ("runs every layer" if other == "run" else "drops layers nothing reads"),
            file=sys.stderr,
        )
    return 0


def _warn_of_outliers(
    path: Path,
    line_of: dict[str, int],
    measurements: Sequence[tuple[Any, float]],
    predicted: Sequence[float],
) -> None:
    """Name the measurements the others disagree with by far more than they disagree among
    themselves (a slip of the keyboard, a run timed while something else ran): each pulled
    the fit towards itself."""
    import numpy as np

    measured = np.array([v for _, v in measurements])
    ratio = np.array(predicted) / measured
    off = np.abs(np.log(np.maximum(ratio, 1e-9)))  # 2x too slow and 2x too fast alike
    typical = float(np.median(off))
    for i in np.argsort(-off)[:3]:
        if off[i] <= max(np.log(2.0), 5 * typical):
            break
        arch, value = measurements[i]
        print(
            f"nas: warning: {path}:{line_of[arch.arch_id]}: latency_ms {value:g} is "
            f"{max(ratio[i], 1 / ratio[i]):.1f}x what the other measurements predict for it "
            f"({predicted[i]:.4g} ms): a typo, or a run timed while something else ran? check "
            "it, or drop the row, and calibrate again",
            file=sys.stderr,
        )


def _cmd_bench(args: argparse.Namespace) -> int:
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
        f"architectures; {args.budget} {evaluation_unit(problem)} x {args.seeds} seeds per method"
    )
    print(format_summary(result.summary))
    print(NORMALIZATION_NOTE)
    print(
        f"results in {out}/ (evaluations.csv, runs.csv, summary.csv, gap.png, settings.json) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors (subcommand parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        import re

        from nas._errors import nearest

        wrong = re.match(
            r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message
        )
        if wrong:  # a misspelt command or choice: what was meant, not the whole list
            allowed = re.findall(r"'([^']*)'", wrong[3]) or wrong[3].split(", ")
            close = nearest(wrong[2], allowed)
            hint = f"did you mean '{close}'? " if close else ""
            message = f"{wrong[1]}: unknown '{wrong[2]}' ({hint}one of: {', '.join(allowed)})"
        raise NasConfigError(f"{message}; see {self.prog} --help")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    from nas import __version__

    parser = _Parser(prog="nas", description="Hardware-aware neural architecture search.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, more: str = "") -> argparse.ArgumentParser:
        description = help_text[0].upper() + help_text[1:] + "." + (f" {more}" if more else "")
        return sub.add_parser(name, help=help_text, description=description)

    for name, help_text in (
        ("run", "run the whole pipeline of an experiment"),
        ("search", "run (or continue) the search of an experiment and write its report"),
    ):
        p = command(name, help_text)
        p.add_argument("experiment", help="experiment YAML file")
        p.add_argument("--out", help="run directory (default: the experiment's 'out')")
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a config field (repeatable; the value is YAML), e.g. --set "
            "search.n_trials=60 --set finetune=null",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        p.set_defaults(func=_cmd_run, finish=name == "run", resumable=True)

    p = command("pareto", "write the Pareto report of a stored study")
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///x.db")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", help="output directory (default: pareto-<study>)")
    p.set_defaults(func=_cmd_pareto)

    p = command("train", "fine-tune, compress, measure and export one arch.json")
    p.add_argument("arch", help="an arch.json file (its weights, if any, are the start)")
    p.add_argument("--experiment", required=True, help="experiment YAML (data, finetune, ...)")
    p.add_argument("--out", help="output directory (default: <experiment out>/train)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field of the experiment (repeatable), e.g. --set finetune.epochs=5",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_train, resumable=True)

    p = command("export", "export folder (arch.json, weights, ONNX, ...) of a trial")
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///x.db")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument(
        "--trial",
        required=True,
        type=_at_least(0),
        help="Optuna trial number (the 'number' column of trials.csv and pareto.csv)",
    )
    p.add_argument("--out", help="output folder (default: export-<study>-<trial>)")
    p.set_defaults(func=_cmd_export)

    p = command("spaces", "list the built-in search spaces (or check space files) with sizes")
    p.add_argument("files", nargs="*", help="space YAML files to check and list instead")
    p.set_defaults(func=_cmd_spaces)

    p = command("devices", "list the cost models (tables and analytic profiles)")
    _add_table_dir(p, "also list the tables and profiles in DIR")
    p.set_defaults(func=_cmd_devices)

    p = command("show", "layer table of an architecture")
    p.add_argument(
        "arch",
        help="an arch.json file or export folder, or an architecture string with --space "
        "(the space's string form, as in trials.csv's 'arch' column or nas sample's output)",
    )
    p.add_argument(
        "--space",
        help=f"{_SPACE_HELP}, for a string",
    )
    p.add_argument("--json", action="store_true", help="also print the architecture JSON")
    p.set_defaults(func=_cmd_show)

    def measuring(p: argparse.ArgumentParser, default: str = "") -> None:
        """Timing options; ``default``: where unset ones come from instead of the defaults."""
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
        p.add_argument(
            "--threads",
            type=_at_least(1),
            help="torch threads (default: " + (default or "torch's choice") + ")",
        )
        p.add_argument(
            "--warmup",
            type=_at_least(0),
            default=None if default else 20,
            help=f"untimed calls (default {default + ', else ' if default else ''}20)",
        )
        p.add_argument(
            "--repeats",
            type=_at_least(1),
            default=None if default else 100,
            help=f"timed calls (default {default + ', else ' if default else ''}100)",
        )

    p = command("profile", "measure a lookup table of every layer a space can hold")
    p.add_argument("--space", required=True, help=_SPACE_HELP)
    measuring(p)
    p.add_argument("--batch", type=_at_least(1), default=1, help="batch size (default 1)")
    p.add_argument(
        "--dtype",
        default="fp32",
        help="fp32, fp16 or bf16 (torch), fp32 or int8 (onnxruntime; int8 quantized as the "
        "compress stage does) (default fp32)",
    )
    p.add_argument(
        "--runtime",
        help="torch (eager, CPU or CUDA) or onnxruntime (exported ONNX, CPU, as models are "
        "deployed) (default: onnxruntime for int8, else torch)",
    )
    p.add_argument(
        "--out",
        help="table path (.json + .csv; default ./<device>-<space>.json); an existing table "
        "is completed (only missing entries are measured)",
    )
    p.add_argument(
        "--power-w",
        type=_positive_float,
        help="average power (W) while the model runs, charged per ms where no energy counter "
        "(RAPL, NVML) is readable (default 10, a 15 W TDP class CPU)",
    )
    p.add_argument("--power-source", help="where the --power-w figure comes from (recorded)")
    p.set_defaults(func=_cmd_profile, resumable=True)

    p = command(
        "validate-table",
        "compare a table with end-to-end measurements",
        "Each model is timed at the table's dtype, batch and runtime (from its metadata), "
        "about 6 s a model on a 2-core CPU. The last line is a JSON object of the figures.",
    )
    p.add_argument("--space", required=True, help=_SPACE_HELP)
    p.add_argument("--table", required=True, help="device name or table .json path")
    _add_table_dir(p, "a folder of tables that --table names")
    p.add_argument(
        "--n", "-n", type=_at_least(2), default=100, help="random architectures (default 100)"
    )
    p.add_argument(
        "--seed",
        type=_at_least(0),
        default=0,
        help="seed of the random architectures (default 0; the table's own in-model "
        "correction uses other ones)",
    )
    p.add_argument(
        "--out", help="also write a CSV of arch, predicted_ms, measured_ms (default: none)"
    )
    measuring(p, default="the table's")
    p.set_defaults(func=_cmd_validate)

    p = command("import-table", "convert another tool's latency table into ours")
    p.add_argument("src", help="the source table (file or folder)")
    p.add_argument("--format", required=True, help="hwnasbench-fbnet or ofa-yaml")
    p.add_argument(
        "--device",
        required=True,
        help="the source's device (column) to import (hwnasbench-fbnet: edgegpu, raspi4, "
        "pixel3, eyeriss, fpga)",
    )
    p.add_argument("--out", required=True, help="table path (.json + .csv); its stem names it")
    p.add_argument("--space", help="space the table covers (default: fbnet / mbconv_imagenet)")
    p.add_argument("--force", action="store_true", help="replace an --out table of another kind")
    p.set_defaults(func=_cmd_import)

    p = command("calibrate", "fit a table from whole-model latency measurements")
    p.add_argument("--space", required=True, help=_SPACE_HELP)
    p.add_argument("--measurements", required=True, help="CSV with columns arch,latency_ms")
    p.add_argument("--out", required=True, help="table path (.json + .csv); its stem names it")
    p.add_argument("--prior", default="cpu", help="device name or table/profile path (cpu)")
    _add_table_dir(p, "a folder of tables and profiles that --prior names")
    p.add_argument("--force", action="store_true", help="replace an --out table of another kind")
    p.add_argument(
        "--unread-layers",
        default="run",
        help="run or skipped: whether the device's runtime runs layers whose output nothing "
        "reads (eager PyTorch: run, the default) or drops them (TFLite, ONNX Runtime, "
        "TensorRT: skipped)",
    )
    p.set_defaults(func=_cmd_calibrate)

    p = command("cost", "latency and energy of architectures from a cost model")
    p.add_argument(
        "--space",
        required=True,
        help=_SPACE_HELP,
    )
    p.add_argument("--table", required=True, help="device name or table/profile path")
    _add_table_dir(p, "a folder of tables and profiles that --table names")
    p.add_argument(
        "--archs",
        required=True,
        help="file with one architecture string per line, or a CSV with an 'arch' column "
        "(trials.csv, pareto.csv); - reads standard input",
    )
    p.add_argument("--out", help="CSV path (default: standard output)")
    p.set_defaults(func=_cmd_cost)

    p = command("bench", "score search methods on a tabular benchmark's true front")
    p.add_argument(
        "benchmark",
        help="nasbench201 (tabular, accuracy + cost) or fbnet (cost-only, exact front by DP)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="nasbench201 only: cifar10, cifar100 or ImageNet16-120 (cifar10)",
    )
    p.add_argument(
        "--objectives",
        default=None,
        help="comma-separated; nasbench201: error, accuracy, latency_ms@<device>, "
        "energy_mj@pi5 (default error,latency_ms@pixel3); fbnet: latency_ms@<device>, "
        "energy_mj@<edgegpu|eyeriss|fpga>, macs (default latency_ms@raspi4,macs)",
    )
    p.add_argument(
        "--budget",
        type=_at_least(1),
        default=100,
        help="evaluations per run: accuracy evaluations, or cost lookups for fbnet (100)",
    )
    p.add_argument(
        "--seeds", type=_at_least(1), default=10, help="runs per method, seeds 0..N-1 (10)"
    )
    p.add_argument(
        "--sampler",
        default="nas",
        help="method under test: nas, random, optuna-tpe, optuna-tpe-mv, optuna-nsga2, "
        "optuna-nsga3 or optuna-gp (default nas)",
    )
    p.add_argument(
        "--baselines",
        default="random,optuna-tpe,optuna-nsga2",
        help="comma-separated methods run beside it (random,optuna-tpe,optuna-nsga2)",
    )
    p.add_argument(
        "--out", help="output folder (default bench-<benchmark>-<dataset>, bench-fbnet)"
    )
    p.add_argument("--data", help="benchmark data folder (default <repo>/../shared/data)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_bench)

    p = command("sample", "print random architectures of a space")
    p.add_argument(
        "--space",
        required=True,
        help=_SPACE_HELP,
    )
    p.add_argument(
        "-n", type=_at_least(1), default=5, help="how many distinct architectures (default 5)"
    )
    p.add_argument(
        "--seed", type=_at_least(0), default=0, help="random seed (default 0: same output)"
    )
    p.set_defaults(func=_cmd_sample)
    return parser


def _unknown_options(parser: argparse.ArgumentParser, name: str, extra: list[str]) -> NoReturn:
    from nas._errors import nearest

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = action.choices[name]
    options = [o for a in command._actions for o in a.option_strings]
    close = nearest(extra[0].split("=")[0], options)
    hint = f" (did you mean {close}?)" if close else ""
    raise NasConfigError(
        f"unrecognized arguments: {' '.join(extra)}{hint}; see {command.prog} --help"
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler), raised where the process is, as Ctrl-C
    is, so that the same clean-up runs: the failed trial is recorded, the manifest says
    'interrupted', no half-written file is left."""


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        return _main(argv, [])
    received: list[int] = []  # the signals that stopped the command

    def stop(signum: int, frame: Any) -> NoReturn:
        received.append(signum)
        raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _main(argv, received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _LogFormat(logging.Formatter):
    """Warnings and errors as the command's own (``nas: warning: ...``); progress (``-v``) with
    the module that logged it."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno < logging.WARNING:
            return f"{record.name}: {text}"
        return f"nas: {record.levelname.lower()}: {text}"


class _Once(logging.Filter):
    """Each warning once per command (two stages that load the same file both warn of it)."""

    def __init__(self) -> None:
        super().__init__()
        self._said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = record.getMessage()
        if key in self._said:
            return False
        self._said.add(key)
        return True


def _main(argv: Sequence[str] | None, received: list[int]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's own parser, which knows its options
            _unknown_options(parser, args.command, extra)
    except NasConfigError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormat())
    handler.addFilter(_Once())
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler]
    )
    try:
        return int(args.func(args))
    except NasConfigError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _stopped(args, terminated=isinstance(exc, _Terminated))
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:
        if not received:
            raise
        # the interrupt landed inside a library that turned it into its own error (torch's
        # exporter during a lazy import): it is still the interrupt
        return _stopped(args, terminated=received[0] == signal.SIGTERM)


def _stopped(args: argparse.Namespace, *, terminated: bool) -> int:
    """Say what an interrupt (Ctrl-C, or SIGTERM) kept; the shell's exit status for it."""
    if getattr(args, "resumable", False):
        kept = getattr(args, "kept", None)
        what = f"{kept()} kept" if callable(kept) else "what was finished before it is kept"
        after = getattr(args, "after_kept", None)
        said = f"{what}: run the same command to continue{after() if callable(after) else ''}"
    else:
        said = "this command keeps no partial work: run it again to redo it"
    print(f"nas: {'terminated' if terminated else 'interrupted'}; {said}", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
