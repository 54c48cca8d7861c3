"""Commands of the cost models: ``nas devices | profile | validate-table | cost | import-table |
calibrate``."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas._errors import NasConfigError


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
    if Path(given).suffix not in ("", ".json", ".csv"):  # p.txt, pi5.v2: not quietly p.json
        raise NasConfigError(
            f"--out {given}: a table is two files, NAME.json and NAME.csv (NAME names its "
            f"device), so it would be written as {Path(given).with_suffix('.json')}; give "
            f"--out {Path(given).with_suffix('.json')}, or --out {given}.json to keep the dot"
        )
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


def _table_dirs(args: argparse.Namespace) -> tuple[Path, ...]:
    """The ``--table-dir`` folders, searched before ``latency_tables/`` (as ``table_dirs``)."""
    extra = tuple(Path(d) for d in args.table_dir)
    for folder in extra:
        if not folder.is_dir():
            raise NasConfigError(f"--table-dir {folder}: no such folder")
    return extra


def cmd_devices(args: argparse.Namespace) -> int:
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
            said = meta.get("value_kinds") or {}
            if said.get("latency") and said.get("energy"):  # energy is often estimated
                energy = str(said["energy"]).split(" ")[0]  # 'estimated (power x latency)'
                kind = f"table (latency {said['latency']}, energy {energy})"
            else:
                kind = f"table ({', '.join(kinds)})"
            rows.append(
                (
                    name,
                    kind,
                    ", ".join(
                        f"{n} (interrupted profile)" if n in meta.get(UNFINISHED, []) else n
                        for n in meta.get("spaces", {})
                    )
                    or "any",
                    str(meta.get("description", "")),
                )
            )
        else:
            rows.append(
                (name, "analytic (estimated)", "any space", getattr(model, "description", ""))
            )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    folders = ", ".join(str(f) for f in (*extra, builtin_table_dir()))
    print(
        f"(cost models from {folders}, the first folder holding a name wins; metrics name them "
        "as latency_ms@<device>, and an experiment adds folders with table_dirs)"
    )
    return 0


def _profile_config(args: argparse.Namespace) -> Any:
    from nas.cost._profile import DEFAULT_FIT_ARCHS, ProfileConfig

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
        overhead_archs=getattr(args, "fit_archs", None) or DEFAULT_FIT_ARCHS,
        **({"rounds": args.rounds} if getattr(args, "rounds", None) else {}),
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


def cmd_profile(args: argparse.Namespace) -> int:
    import shlex

    from torch import get_num_threads as torch_threads

    from nas.cost import LookupTable
    from nas.cost._profile import DEFAULT_FIT_ARCHS, fit_archs, profile_space
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
    elif args.fit_archs is None:  # a rerun keeps the table's count (another one refits)
        held = (existing.meta.get("in_model") or {}).get(space.name)
        if held is not None:
            config = dataclasses.replace(config, overhead_archs=fit_archs(held))
    name = existing.device if existing else out.stem
    # the table as it was, kept if this run changes what it predicts for the space
    before = _table_files(out)
    bar = _counter(f"profiling {space.name} on {args.device}")
    saved = [len(existing.entries) if existing is not None else 0]

    def checkpoint(partial: LookupTable) -> None:
        partial.save(out)
        saved[0] = len(partial.entries)

    args.kept = lambda: f"{saved[0]} measured entr{'y' if saved[0] == 1 else 'ies'} in {out}"
    try:
        table = profile_space(
            space,
            config,
            device_name=name,
            existing=existing,
            checkpoint=checkpoint,
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
                    *(
                        ["--fit-archs", str(config.overhead_archs)]
                        if config.overhead_archs != DEFAULT_FIT_ARCHS
                        else []
                    ),
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
            "the models timed do not determine them, or they predicted the models left out of "
            "the fit no better)"
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
    from nas.cost._profile import fit_archs
    from nas.cost._table import IN_MODEL_TERMS, poor_fit

    old_fix = (old.get("in_model") or {}).get(space.name)
    new_fix = new["in_model"][space.name]
    refit = old_fix is not None and any(old_fix.get(k) != new_fix.get(k) for k in IN_MODEL_TERMS)
    old_hash = (old.get("spaces") or {}).get(space.name)
    other_space = old_hash is not None and old_hash != space.hash
    if not (refit or other_space):
        return
    kept = _set_aside(out, before)
    counts = fit_archs(old_fix or {}), fit_archs(new_fix)
    why = (
        f"another version of space '{space.name}'"
        if other_space
        else "a poorly fitting correction before"
        if poor_fit(old_fix or {})
        else f"--fit-archs {counts[1]} (fitted on {counts[0]} models before)"
        if counts[0] != counts[1]
        else "new entries"
    )
    print(
        f"nas: warning: {out} already held space '{space.name}'; with {why} its in-model "
        f"correction was refit ({_correction_text(old_fix)} -> {_correction_text(new_fix)}), "
        "so its predictions changed and a study that costed with it refuses to continue; the "
        f"previous table is kept as {kept} (copy it and its .csv back to continue such a study)",
        file=sys.stderr,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    import numpy as np
    from torch import get_num_threads as torch_threads

    from nas.cost import LookupTable, load_cost_model
    from nas.cost._profile import fingerprint
    from nas.cost._validate import timed_as_table, validate_table
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
    changed = _fingerprint_changes(
        table.meta.get("fingerprint") or {}, fingerprint(timed_as_table(config, table))
    )
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


def cmd_cost(args: argparse.Namespace) -> int:
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
        if named == ["arch_id"]:  # final/summary.csv: ids, not architectures
            raise NasConfigError(
                f"{source}:{numbered[0][0]}: a CSV header without an 'arch' column; its "
                "'arch_id' names architectures by id, not by their string form: take the "
                "'arch' column of the run's trials.csv or pareto.csv, or pass a file of "
                "architecture strings"
            )
        if named:  # another tool's CSV: its architecture column named otherwise
            raise NasConfigError(
                f"{source}:{numbered[0][0]}: a CSV header without an 'arch' column (found "
                f"{', '.join(named)}); rename the architecture column to 'arch'"
            )
        return numbered  # parsing it as an architecture names the problem
    column = header.index("arch")
    rows = [(n, next(csv.reader([line]))) for n, line in numbered[1:]]
    return [(n, row[column].strip()) for n, row in rows if len(row) > column]


def cmd_import(args: argparse.Namespace) -> int:
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


def cmd_calibrate(args: argparse.Namespace) -> int:
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
    reader = csv.DictReader(text.splitlines(), skipinitialspace=True)  # 'arch, latency_ms'
    if reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
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
        if predicted[i] <= 0:  # the fit without it leans so far that it has no time left
            said = "far from what the other measurements predict for it (fitted without it"
            said += f", they give {predicted[i]:.4g} ms)"
        elif value > predicted[i]:
            said = f"{value / predicted[i]:.1f}x what the other measurements predict for it"
            said += f" ({predicted[i]:.4g} ms)"
        else:
            said = f"1/{predicted[i] / value:.1f} of what the other measurements predict for it"
            said += f" ({predicted[i]:.4g} ms)"
        print(
            f"nas: warning: {path}:{line_of[arch.arch_id]}: latency_ms {value:g} is {said}: a "
            "typo, or a run timed while something else ran? check it, or drop the row, and "
            "calibrate again",
            file=sys.stderr,
        )
