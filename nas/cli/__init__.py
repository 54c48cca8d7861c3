"""Command line: ``nas run | search | train | export | pareto | spaces | show | sample | ...``:
the parser and the handling every command shares (one-line errors, interrupts, logging); the
commands themselves are in ``_run`` (searches and their results), ``_cost`` (cost models) and
``_space`` (search spaces).

User errors print one line on stderr and exit with status 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from nas._errors import NasConfigError
from nas.cli._cost import (
    cmd_calibrate,
    cmd_cost,
    cmd_devices,
    cmd_import,
    cmd_profile,
    cmd_validate,
)
from nas.cli._run import cmd_bench, cmd_export, cmd_pareto, cmd_run, cmd_train
from nas.cli._space import cmd_sample, cmd_show, cmd_spaces

__all__ = ["build_parser", "main"]


#: what --space takes (nas.space.load_space)
_SPACE_HELP = (
    "built-in space name or YAML path, optionally @CxHxW:CLASSES for the space at another input "
    "shape (mobilenet_small@1x28x28:10, as a run adapts it to its data), or a run's "
    "architectures/<id>.json"
)


def _add_table_dir(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--table-dir",
        action="append",
        default=[],
        metavar="DIR",
        help=f"{what} (repeatable; searched first, like an experiment's table_dirs)",
    )


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
        p.set_defaults(func=cmd_run, finish=name == "run", resumable=True)

    p = command("pareto", "write the Pareto report of a stored study")
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///x.db")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", help="output directory (default: pareto-<study>)")
    p.add_argument("-q", "--quiet", action="store_true", help="no table of the front")
    p.set_defaults(func=cmd_pareto)

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
    p.set_defaults(func=cmd_train, resumable=True)

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
    p.set_defaults(func=cmd_export)

    p = command("spaces", "list the built-in search spaces (or check space files) with sizes")
    p.add_argument("files", nargs="*", help="space YAML files to check and list instead")
    p.set_defaults(func=cmd_spaces)

    p = command("devices", "list the cost models (tables and analytic profiles)")
    _add_table_dir(p, "also list the tables and profiles in DIR")
    p.set_defaults(func=cmd_devices)

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
    p.set_defaults(func=cmd_show)

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
    p.add_argument(
        "--fit-archs",
        type=_at_least(2),
        help="architectures timed end to end to fit the space's in-model correction (default: "
        "the table's, else 20; more make a steadier fit on a noisy machine; another number "
        "than the table's refits it)",
    )
    p.set_defaults(func=cmd_profile, resumable=True)

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
    # not the table's rounds: the median of 6 rounds, each corrected for the machine's speed on
    # its own, outlasts a busy stretch that spoils 2 of 3 (docs/benchmarks.md: the same table
    # validated 97-100% within 10% with 6 rounds, 91-100% with 3, the same evening)
    p.add_argument(
        "--rounds",
        type=_at_least(1),
        default=6,
        help="interleaved rounds the timed calls are split into, each corrected for drift on "
        "its own; the latency is their median (default 6)",
    )
    p.set_defaults(func=cmd_validate)

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
    p.set_defaults(func=cmd_import)

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
    p.set_defaults(func=cmd_calibrate)

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
    p.set_defaults(func=cmd_cost)

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
    p.set_defaults(func=cmd_bench)

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
    p.set_defaults(func=cmd_sample)
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

    def unraisable(info: Any) -> None:
        # the signal landed in a weakref callback or a __del__ (torch runs some while it
        # frees tensors), where Python prints the exception and drops it: the command would
        # run on as if never stopped; deliver the signal again, after that callback
        if isinstance(info.exc_value, KeyboardInterrupt) and received:
            # from another thread, a moment later: a signal handled in this hook (or in the
            # callback still running) would be dropped the same way; another lost one comes
            # back here and is sent again
            again = threading.Timer(0.05, os.kill, (os.getpid(), received[-1]))
            again.daemon = True
            again.start()
            return
        hook(info)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        return _main(argv, received)
    finally:
        sys.unraisablehook = hook
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
