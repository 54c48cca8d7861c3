"""Measuring lookup tables on this machine: ``nas profile`` (``nas validate-table`` checks them,
in :mod:`nas.cost._validate`).

Protocol (recorded in each table's metadata): the module is built once and prepared for the
runtime it is timed in, then gets ``warmup`` untimed calls and ``repeats`` timed calls, each timed
alone (``time.perf_counter_ns`` on CPU, CUDA events with a synchronize on GPUs); the statistic is
the median. The thread count is fixed for the whole run. Two runtimes:

* ``torch`` (fp32, fp16, bf16; CPU or CUDA): the module moved to the device and dtype, in eval
  mode, called under ``torch.inference_mode``.
* ``onnxruntime`` (fp32 or int8; CPU): the module exported to ONNX and run by an ONNX Runtime
  session with all graph optimizations, as the compress stage deploys models. For int8 it is
  first quantized with the compress stage's own recipe (torchao PT2E, x86 quantizer, a QDQ
  graph that ONNX Runtime fuses into int8 kernels), calibrated on random-normal inputs: an int8
  kernel's speed does not depend on the values it multiplies; a layer that feeds another has
  its output quantized, as the next layer's input is. A layer timed alone in ONNX Runtime pays
  a session call and, at int8, a quantize of its input and layout transposes that a whole
  model pays once; the in-model correction, fitted on whole models, takes them back (for this
  runtime its terms may be negative, and it also scales the sum of the layers).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import itertools
import logging
import math
import os
import platform
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._config import check_field_types
from nas._errors import NasConfigError
from nas._timing import fixed_threads, spin_up, split_repeats, time_calls
from nas.cost._table import (
    DEFAULT_POWER_W,
    IN_MODEL_TERMS,
    UNFINISHED,
    LookupTable,
    TableEntry,
    entry_from_layer,
    poor_fit,
)
from nas.space import Architecture, Layer, SearchSpace, parse_op

__all__ = [
    "ProfileConfig",
    "build_layer",
    "against_reference",
    "measure",
    "profile_space",
]

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: runtime -> the dtypes it profiles
RUNTIMES = {"torch": ("fp32", "fp16", "bf16"), "onnxruntime": ("fp32", "int8")}
#: random-normal images that calibrate a module's int8 quantization before it is timed
_INT8_CALIBRATION = 8
_RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
#: overhead calibration uses architectures drawn with this seed; validation never uses it
CALIBRATION_SEED = 20_240_601
#: architectures timed end to end to fit a space's in-model correction, by default
DEFAULT_FIT_ARCHS = 20


def fit_archs(fix: Mapping[str, Any]) -> int:
    """How many architectures an in-model correction was fitted on (a correction fitted before
    the count was recorded: the default then, :data:`DEFAULT_FIT_ARCHS`)."""
    return int(fix.get("fit_archs", DEFAULT_FIT_ARCHS))


@dataclass(frozen=True)
class ProfileConfig:
    """How to measure: device (``cpu``, ``cuda``, ``cuda:N``), threads, batch, dtype, repeats.

    Each module is timed in ``rounds`` interleaved rounds of ``repeats / rounds`` calls (all
    modules once per round), so a slow phase of a shared machine hits every module alike and
    the median over all samples discards it.

    ``power_w`` is the average power charged per millisecond where no energy counter can be
    read (RAPL on Linux CPUs, NVML on NVIDIA GPUs), with ``power_source`` saying where the
    figure comes from.

    ``runtime`` is ``torch`` or ``onnxruntime`` (module docstring); ``None`` picks
    ``onnxruntime`` for int8, where PyTorch has no int8 kernels to call, else ``torch``.
    """

    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    dtype: str = "fp32"
    runtime: str | None = None
    warmup: int = 10
    repeats: int = 50
    rounds: int = 3
    spin_up_s: float = 1.0
    power_w: float = DEFAULT_POWER_W
    power_source: str = "latency_tables/cpu.yaml static_power_w (15 W TDP class CPU)"
    overhead_archs: int = DEFAULT_FIT_ARCHS

    def __post_init__(self) -> None:
        check_field_types(self)
        dtypes = sorted({d for ds in RUNTIMES.values() for d in ds}, key=str.lower)
        if self.dtype not in dtypes:
            raise NasConfigError(f"unknown dtype '{self.dtype}'", allowed=dtypes, value=self.dtype)
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise NasConfigError(
                f"unknown runtime '{self.runtime}'", allowed=list(RUNTIMES), value=self.runtime
            )
        if self.dtype not in RUNTIMES[self.engine]:
            other = next(r for r, ds in RUNTIMES.items() if self.dtype in ds)
            *first, last = RUNTIMES[self.engine]
            raise NasConfigError(
                f"--runtime {self.engine} does not profile {self.dtype} (it takes "
                f"{', '.join(first)} or {last}); use --runtime {other}"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise NasConfigError(
                f"--device {self.device}: not a device to measure on; use cpu, cuda or cuda:N"
                + (
                    " (the analytic GPU profile is the cost model 'gpu': latency_ms@gpu in an "
                    "experiment, nas cost --table gpu)"
                    if self.device == "gpu"
                    else ""
                )
            )
        if self.engine == "onnxruntime" and self.device != "cpu":
            raise NasConfigError(
                f"--device {self.device}: ONNX Runtime tables are measured on the CPU (its "
                "CPU execution provider); use --device cpu, or --runtime torch on the GPU"
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NasConfigError(
                f"--device {self.device}: CUDA is not available on this machine; without a GPU, "
                "the analytic profile 'gpu' estimates one (latency_ms@gpu), or nas calibrate "
                "fits a table from whole-model timings taken on the GPU machine"
            )
        for name in ("batch", "warmup", "repeats", "rounds"):
            if getattr(self, name) < (0 if name == "warmup" else 1):
                raise NasConfigError(f"--{name} must be positive, got {getattr(self, name)}")

    @property
    def engine(self) -> str:
        """The runtime timed in: ``runtime``, or the dtype's default when it is None."""
        if self.runtime is not None:
            return self.runtime
        return "onnxruntime" if self.dtype == "int8" else "torch"

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def protocol(self) -> dict[str, Any]:
        timer = "cuda events" if self.device.startswith("cuda") else "time.perf_counter_ns"
        if self.engine == "onnxruntime":
            mode = "ONNX Runtime CPUExecutionProvider, all graph optimizations, " + (
                "int8: torchao PT2E x86 quantizer (the compress stage's recipe), QDQ ONNX, "
                f"calibrated on {_INT8_CALIBRATION} random-normal inputs"
                if self.dtype == "int8"
                else "fp32 ONNX (torch.onnx dynamo exporter)"
            )
        else:
            mode = "torch eager, eval, inference_mode"
        return {
            "warmup": self.warmup,
            "repeats": self.repeats,
            "statistic": "p50",
            "rounds": self.rounds,
            "spin_up_s": self.spin_up_s,
            "timer": timer,
            "threads": torch.get_num_threads(),
            "batch": self.batch,
            "dtype": self.dtype,
            "runtime": self.engine,
            "mode": mode,
        }


def fingerprint(config: ProfileConfig) -> dict[str, Any]:
    """The machine and runtime a table was measured on."""
    from nas.pipeline import environment

    env = environment()
    out = {
        "cpu": env["cpu"],
        "cpu_count": env["cpu_count"],
        "platform": env["platform"],
        "python": env["python"],
        "runtime": f"torch {torch.__version__}",
        **({"onnxruntime": _onnxruntime_version()} if config.engine == "onnxruntime" else {}),
        "threads": torch.get_num_threads(),
        "device": config.device,
    }
    if config.device.startswith("cuda"):
        index = config.torch_device.index or 0
        out["gpu"] = torch.cuda.get_device_name(index)
        out["cuda"] = torch.version.cuda
        out["driver"] = _nvidia_driver()
    return out


def _onnxruntime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _nvidia_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001 - optional: pynvml absent or no driver
        return None


def steady_allocator() -> str:
    """Keep freed memory in the process, as a long-running inference process ends up doing.

    glibc serves allocations above 128 KiB with fresh ``mmap``s and returns them on free, so a
    layer timed in a young process pays a page fault per touched page on every call: measured
    here, the largest 224x224 MBConv layers ran 5.8 ms in a fresh process and 0.7 ms once
    glibc's adaptive threshold had grown. Raising the mmap and trim thresholds up front gives
    the steady state from the first call. Returns what was done, for the table's protocol.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return "allocator unchanged (not glibc)"
    return "glibc mallopt M_MMAP_THRESHOLD=M_TRIM_THRESHOLD=1 GiB" if ok else "mallopt failed"


class _Classifier(nn.Module):
    """Global average pool + linear: the ``classifier`` layer of every space."""

    def __init__(self, c: int, classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


def build_layer(layer: Layer) -> nn.Module:
    """The module of one table row, built exactly as the model builds it."""
    if layer.op.type == "classifier":
        return _Classifier(layer.in_shape[0], layer.out_shape[0])
    return parse_op(layer.op.name).op().build(layer.in_shape[0], layer.out_shape[0], layer.stride)


#: a prepared module: one call runs it once on its input in the configured runtime
Run = Callable[[], object]


def prepare(
    module: nn.Module, shape: Sequence[int], config: ProfileConfig, *, feeds_next: bool = False
) -> Run:
    """A call that runs ``module`` once on a random ``(batch, *shape)`` input, in the
    runtime, device and dtype of ``config`` (for ONNX Runtime: exported, and quantized first
    for int8, with the session's threads fixed to torch's current count).

    ``feeds_next``: the module is a layer whose output feeds the next layer of a model; at int8
    its output is then quantized, as the next layer's input is (see ``_quantized_output``).
    """
    if config.engine == "onnxruntime":
        return _onnxruntime_run(module, shape, config, feeds_next=feeds_next)
    device, dtype = config.torch_device, _DTYPES[config.dtype]
    module = module.to(device=device, dtype=dtype).eval()
    x = torch.randn(config.batch, *shape, device=device, dtype=dtype)
    return lambda: module(x)


class _Input(nn.Module):
    """Calls a module with its input named ``x``, as the ONNX exporter names it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)  # type: ignore[no-any-return]


def _quantized_output(graph: torch.fx.GraphModule, images: torch.Tensor) -> torch.fx.GraphModule:
    """``graph`` with its output quantized (uint8, range from ``images``) and dequantized.

    Inside a model, a layer's last convolution feeds the next layer's quantized input, so ONNX
    Runtime runs it as an int8 ``QLinearConv``. Alone, its float output is the graph's output,
    and ONNX Runtime runs it as a float convolution that dequantizes its weights on every call.
    Quantizing the output as the next layer would makes the layer run alone as it runs in the
    model. (The classifier's output is quantized by the recipe itself, in both.)
    """
    output = next(n for n in graph.graph.nodes if n.op == "output")
    results = output.args[0]
    value = results[0] if isinstance(results, (tuple, list)) else results
    if "dequantize" in str(getattr(value, "target", "")):
        return graph  # its output is quantized already
    with torch.no_grad():
        y = graph(images)
    y = y[0] if isinstance(y, (tuple, list)) else y
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    scale = max((hi - lo) / 255, 1e-8)
    zero_point = round(-lo / scale)
    ops = torch.ops.quantized_decomposed
    with graph.graph.inserting_before(output):
        args = (scale, zero_point, 0, 255, torch.uint8)
        q = graph.graph.call_function(ops.quantize_per_tensor.default, (value, *args))
        dq = graph.graph.call_function(ops.dequantize_per_tensor.default, (q, *args))
    output.replace_input_with(value, dq)
    graph.recompile()
    return graph


def _onnxruntime_run(
    module: nn.Module, shape: Sequence[int], config: ProfileConfig, *, feeds_next: bool
) -> Run:
    import tempfile

    from nas.export import export_onnx, onnx_session

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch, *shape, generator=gen)
    model: nn.Module = _Input(module).float().eval()
    if config.dtype == "int8":
        from nas.compress import quantize_int8

        images = torch.randn(_INT8_CALIBRATION, *shape, generator=gen)
        model = quantize_int8(model, images)
        if feeds_next:
            model = _quantized_output(model, images)
    with tempfile.TemporaryDirectory(prefix="nas-profile-") as tmp:
        path = Path(tmp) / "module.onnx"
        export_onnx(model, x, path)
        session = onnx_session(path, threads=torch.get_num_threads())
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def measure_interleaved(runs: Sequence[Run], config: ProfileConfig) -> list[list[float]]:
    """Latency samples of several prepared modules, timed in ``config.rounds`` interleaved
    rounds."""
    samples: list[list[float]] = [[] for _ in runs]
    _spin_up(runs, config)
    for per_round in split_repeats(config.repeats, config.rounds):
        part = ProfileConfig(**{**asdict(config), "repeats": per_round})
        for i, run in enumerate(runs):
            samples[i] += measure(run, part)
    return samples


def _spin_up(runs: Sequence[Run], config: ProfileConfig) -> None:
    """Keep the device busy for ``config.spin_up_s`` before timing (``nas._timing.spin_up``)."""
    if not runs or config.spin_up_s <= 0:
        return
    with torch.inference_mode():
        spin_up(runs[0], config.spin_up_s)
    if config.torch_device.type == "cuda":
        torch.cuda.synchronize(config.torch_device)


def measure(run: Run, config: ProfileConfig) -> list[float]:
    """Latency samples in ms of a prepared module (:func:`prepare`)."""
    device = config.torch_device
    samples: list[float] = []
    with torch.inference_mode():
        for _ in range(config.warmup):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            for _ in range(config.repeats):
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
        else:
            samples = time_calls(run, config.repeats)
    return samples


def _energy_mj(run: Run, config: ProfileConfig, latency_ms: float) -> tuple[float, str]:
    """Energy of one call: a hardware counter where readable, else power x latency."""
    if config.device == "cpu" and os.access(_RAPL, os.R_OK):
        calls = max(10, int(50 / max(latency_ms, 1e-3)))  # ~50 ms of work per reading
        with torch.inference_mode():
            before = int(_RAPL.read_text())
            for _ in range(calls):
                run()
            after = int(_RAPL.read_text())
        if after > before:  # the counter wraps; a wrapped reading falls back below
            return (after - before) / 1e3 / calls, "rapl package energy"
    if config.device.startswith("cuda"):
        measured = _nvml_energy_mj(run, config, latency_ms)
        if measured is not None:
            return measured, "nvml total energy"
    return config.power_w * latency_ms, f"power x latency ({config.power_w} W)"


def _nvml_energy_mj(run: Run, config: ProfileConfig, latency_ms: float) -> float | None:
    """Energy per call from NVML's total-energy counter (Volta and newer), or None."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        index = config.torch_device.index or torch.cuda.current_device()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        device = config.torch_device
        # the counter updates every ~20-100 ms: integrate over about a second of work
        calls = max(10, int(1000 / max(latency_ms, 1e-3)))
        with torch.inference_mode():
            torch.cuda.synchronize(device)
            before = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
            for _ in range(calls):
                run()
            torch.cuda.synchronize(device)
            after = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # noqa: BLE001 - no driver, no permission or an old GPU: fall back
        return None
    return (after - before) / calls if after > before else None


def profile_space(
    space: SearchSpace,
    config: ProfileConfig,
    *,
    device_name: str,
    existing: LookupTable | None = None,
    checkpoint: Callable[[LookupTable], object] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    command: str | None = None,
) -> LookupTable:
    """Measure every layer ``space`` can produce that ``existing`` lacks; returns the table.

    ``command`` is recorded as the table's ``profile_command`` (the one that finishes or
    extends it); by default one is written from ``space``'s name and ``config``.

    After the layers, ``overhead_archs`` architectures (seed ``CALIBRATION_SEED``) are timed end
    to end and the gap to the sum of their layers is fitted as the space's in-model correction
    (see :class:`LookupTable`).
    """
    allocator = steady_allocator()
    with fixed_threads(config.threads):
        table = existing or LookupTable(device_name, {}, {}, config.dtype, config.batch)
        if existing is not None:
            _check_same_protocol(existing, config)
        todo = table.missing(space.possible_layers())
        log.info("%d layers to measure for space %s", len(todo), space.name)
        held = (table.meta.get("in_model") or {}).get(space.name)
        # the correction is refit with new entries, for another version of the space (fitted
        # on its architectures), and when the last fit was poor (a busy machine: try again)
        refit = (
            held is None
            or held.get("space_hash", table.meta.get("spaces", {}).get(space.name)) != space.hash
            or poor_fit(held)
            or fit_archs(held) != config.overhead_archs
        )
        spaces = dict(table.meta.get("spaces", {}))
        spaces[space.name] = space.hash
        command = command or (
            f"nas profile --space {space.name} --device {config.device} "
            f"--threads {torch.get_num_threads()} --batch {config.batch} "
            f"--dtype {config.dtype} --runtime {config.engine} --out {device_name}.json"
        )
        meta = {
            "description": table.meta.get("description")
            or (
                f"measured on {platform.node() or 'this machine'} with nas profile "
                f"({config.dtype} in {config.engine} on {config.device}, "
                f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}, "
                f"batch {config.batch})"
            ),
            "runtime_device": config.device,
            "fingerprint": fingerprint(config),
            "protocol": {**config.protocol(), "allocator": allocator},
            "spaces": spaces,
            "profile_command": command,
            # a table of several spaces: the command that fills each one
            "profile_commands": {**table.meta.get("profile_commands", {}), space.name: command},
        }
        new: list[TableEntry] = []
        energy_note = ""

        def how_obtained() -> dict[str, Any]:  # (in checkpoints too: nas devices reads them)
            return {
                "energy": {
                    "method": energy_note or table.meta.get("energy", {}).get("method", ""),
                    "power_w": config.power_w,
                    "power_source": config.power_source,
                },
                "value_kinds": {
                    "latency": "measured",
                    "energy": "estimated (power x latency)"
                    if not energy_note or energy_note.startswith("power x latency")
                    else f"measured ({energy_note})",
                },
            }

        chunk = 25  # layers timed together (interleaved); a checkpoint after each chunk
        for start in range(0, len(todo), chunk):
            layers = todo[start : start + chunk]
            runs = [
                prepare(
                    build_layer(layer),
                    layer.in_shape,
                    config,
                    feeds_next=layer.op.type != "classifier",
                )
                for layer in layers
            ]
            timings = measure_interleaved(runs, config)
            for layer, run, samples in zip(layers, runs, timings, strict=True):
                p50 = statistics.median(samples)
                energy, energy_note = _energy_mj(run, config, p50)
                new.append(
                    entry_from_layer(
                        layer,
                        latency_ms=samples,
                        energy_mj=energy,
                        kind="measured",
                        dtype=config.dtype,
                        batch=config.batch,
                    )
                )
            if progress:
                progress(len(new), len(todo), layers[-1].signature)
            if checkpoint:  # with the protocol, so that a resumed run can check it
                unfinished = sorted({*table.meta.get(UNFINISHED, []), space.name})
                checkpoint(
                    table.with_entries(new, **meta, **how_obtained(), **{UNFINISHED: unfinished})
                )
        meta |= {
            **how_obtained(),
            # a rerun that measured nothing leaves the date of the measurements
            "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            if new or "measured" not in table.meta
            else table.meta["measured"],
        }
        meta[UNFINISHED] = [n for n in table.meta.get(UNFINISHED, []) if n != space.name]
        table = table.with_entries(new, **meta)
        corrections = dict(table.meta.get("in_model", {}))
        if new or refit:
            corrections[space.name] = _in_model_correction(space, table, config)
            table = table.with_entries([], in_model=corrections)
        return table


def _check_same_protocol(table: LookupTable, config: ProfileConfig) -> None:
    """Refuse to add entries measured otherwise than ``table``'s (device, threads, batch, dtype,
    warm-up and timed calls): one table holds one protocol, which its metadata states."""
    kind = table.meta.get("value_kinds", {}).get("latency", "measured")
    if kind != "measured":
        raise NasConfigError(
            f"{table.path or table.device}: its latencies are {kind}, not measured here with "
            "nas profile; profiling into it would mix this machine's timings with them: "
            "profile into another --out"
        )
    protocol = table.meta.get("protocol")
    if not isinstance(protocol, Mapping):
        raise NasConfigError(
            f"{table.path or table.device}: the table states no measurement protocol (it was "
            "not made by nas profile), so new entries cannot be checked against its own; "
            "profile into another --out"
        )
    ours = {
        "device": config.device,
        "threads": torch.get_num_threads(),
        "batch": config.batch,
        "dtype": config.dtype,
        "runtime": config.engine,
        "warmup": config.warmup,
        "repeats": config.repeats,
        "power-w": config.power_w,
    }
    theirs = {
        "device": table.meta.get("runtime_device", "cpu"),
        "threads": protocol.get("threads"),
        "batch": table.batch,
        "dtype": table.dtype,
        "runtime": protocol.get("runtime", "torch"),  # tables before runtimes: all torch
        "warmup": protocol.get("warmup"),
        "repeats": protocol.get("repeats"),
        "power-w": table.meta.get("energy", {}).get("power_w"),
    }
    differ = [k for k in ours if theirs[k] is not None and ours[k] != theirs[k]]
    if differ:
        raise NasConfigError(
            f"{table.path or table.device}: measured with "
            + ", ".join(f"{k} {theirs[k]}" for k in differ)
            + ", not "
            + ", ".join(
                f"{k} {ours[k]}"
                + (" (torch's default here)" if k == "threads" and config.threads is None else "")
                for k in differ
            )
            + "; one table holds one protocol: rerun with "
            + " ".join(f"--{k} {theirs[k]}" for k in differ)
            + " to fill it, or pass another --out for a new table"
        )


def _in_model_correction(
    space: SearchSpace, table: LookupTable, config: ProfileConfig
) -> dict[str, Any]:
    rng = np.random.default_rng(CALIBRATION_SEED)
    archs = [space.random(rng) for _ in range(config.overhead_archs)]
    # every model's time at one machine speed, the first model's (the reference) when timed
    # alone: each is timed between two runs of the reference and divided by their drift, as
    # nas validate-table does; a VM's speed moves by the minute, and tiny models' timings
    # taken minutes apart would otherwise fit the machine's moods, not the layers
    ref_run = prepare(space.build(archs[0], seed=0), space.input_shape, config)
    reference_ms = statistics.median(measure_interleaved([ref_run], config)[0])
    latencies = [
        measured / ratio
        for _, found, _ in against_reference(space, ref_run, archs, config, reference_ms)
        for measured, ratio in found
    ]
    gaps, rows = [], []
    for arch, latency in zip(archs, latencies, strict=True):
        layers = space.layers(arch)
        layers_ms = sum(table.entry(x).latency_ms_p50 for x in layers)
        gaps.append(latency - layers_ms)
        rows.append((1.0, len(layers), table.moved_mb(layers), layers_ms))
    # end-to-end - sum of layers timed alone = a + b * layers + c * MB (+ d * sum of layers):
    # ``a`` is the model's own call, ``b`` the dispatch a layer pays inside the model's
    # containers, ``c`` the cost of caches that a layer timed alone keeps warm (weights +
    # activations it touches). In torch every term is a cost, so none may be negative: the best
    # fit over the subsets of terms whose least-squares coefficients are all >= 0 (trying all is
    # cheap). In ONNX Runtime a layer timed alone pays a session call, and boundary work that
    # grows with the layer (quantizing its input, layout transposes) which a whole model fuses
    # away: there ``b`` and ``c`` are rebates that may be negative, and ``d`` (``layer_scale``)
    # the share of a layer's time alone that the model does not pay. Either way a model costs
    # at least its own call, and no layer may make a model faster: ``a >= 0``, and, for every
    # layer the space can hold, its time alone plus its terms ``>= 0`` (so that every partial
    # sum, which the search's vectorized cost adds up, is a cost too)
    signed = config.engine == "onnxruntime"
    terms = IN_MODEL_TERMS if signed else IN_MODEL_TERMS[:3]
    A, y = np.array(rows)[:, : len(terms)], np.array(gaps)
    possible = space.possible_layers()
    alone = np.array([table.entry(x).latency_ms_p50 for x in possible])
    # per possible layer, its time in a model = alone + added @ coef
    mb = [table.moved_mb([x]) for x in possible]
    added = np.column_stack([np.zeros_like(alone), np.ones_like(alone), mb, alone])
    added = added[:, : len(terms)]

    def is_cost(coef: np.ndarray) -> bool:
        if not signed:
            return bool(np.all(coef >= 0))
        return bool(coef[0] >= 0 and np.all(alone + added @ coef >= 0))

    # the terms kept are those whose fit predicts best the models it was not fitted on
    # (leave-one-out error, from one least-squares fit per subset): the least error on the
    # models fitted would always keep every term, and on noisy timings of tiny models the
    # extra terms fit the noise (four refits on the same entries gave layer_scale from +0.13
    # to -0.40)
    coef = np.zeros(len(terms))
    best, kept = float(np.sum(y**2)), tuple[int, ...]()
    index = range(len(terms))
    for cols in (c for k in index for c in itertools.combinations(index, len(terms) - k)):
        sub = A[:, cols]
        if np.linalg.matrix_rank(sub) < len(cols):
            continue
        sol, *_ = np.linalg.lstsq(sub, y, rcond=None)
        full = np.zeros(len(terms))
        full[list(cols)] = sol
        error = _leave_one_out_sse(sub, sol, y)
        if is_cost(full) and error < best:
            best, coef, kept = error, full, cols
    fitted = " + ".join(
        {
            "model_ms": "model_ms",
            "per_layer_ms": "per_layer_ms x layers",
            "per_mb_ms": "per_mb_ms x MB",
            "layer_scale": "layer_scale x sum of layers",
        }[t]
        for t in terms
    )
    return {
        **{t: float(c) for t, c in zip(terms, coef, strict=True)},
        "fit": (
            f"end-to-end - sum of layers = {fitted}, "
            f"least squares over {config.overhead_archs} architectures drawn with seed "
            f"{CALIBRATION_SEED} (never used for validation), each timed between runs of the "
            "first (the reference) and divided by their drift; the terms kept are those with "
            "the least leave-one-out error"
        ),
        "fit_archs": config.overhead_archs,
        "fit_rmse_ms": float(np.sqrt(np.mean((A @ coef - y) ** 2))),
        # relative to each model's latency: models of a space span 10x and more
        "fit_rmspe": float(np.sqrt(np.mean(((A @ coef - y) / np.array(latencies)) ** 2))),
        # terms the best fit leaves out: a free fit made a cost negative, the models do not
        # determine them (every model has as many layers), or they did not predict the models
        # left out of the fit better than the fit without them
        "held_at_zero": [t for i, t in enumerate(terms) if i not in kept],
        # a model timed at profiling time, to measure later how fast the machine runs now
        "reference_arch": space.format(archs[0]),
        "space_hash": space.hash,  # the version of the space it was fitted on
        "reference_ms": float(reference_ms),
    }


def _leave_one_out_sse(A: np.ndarray, coef: np.ndarray, y: np.ndarray) -> float:
    """The squared error of least squares ``A @ coef ~ y`` on each row when fitted without it
    (the PRESS statistic: residual / (1 - leverage)); infinite where a row alone fixes a term."""
    leverage = np.einsum("ij,ji->i", A, np.linalg.pinv(A))
    if np.any(leverage > 1 - 1e-9):
        return math.inf
    return float(np.sum(((y - A @ coef) / (1 - leverage)) ** 2))


_GLITCH = 4.0  # a drift ratio beyond 4x (or under 1/4) is a pause, not the machine's drift
_GLITCH_RETRIES = 2


def against_reference(
    space: SearchSpace,
    ref_run: Run,
    archs: Sequence[Architecture],
    config: ProfileConfig,
    reference_ms: float,
) -> Iterator[tuple[Sequence[Architecture], list[tuple[float, float]], list[float]]]:
    """Time ``archs`` end to end in batches of 5, each model between two runs of the
    reference model (ref, m1, ref, m2, ref, ...: small batches track fast drift); per batch,
    its models, their (median latency, drift ratio against ``reference_ms``) and the rounds'
    errors (:func:`_timed_batch`). A batch with a ratio beyond :data:`_GLITCH` (a pause of the
    process, a burst of other work) is timed again, up to :data:`_GLITCH_RETRIES` times."""
    chunk = 5
    for start in range(0, len(archs), chunk):
        part = archs[start : start + chunk]
        runs = [ref_run]
        for arch in part:
            runs += [prepare(space.build(arch, seed=0), space.input_shape, config), ref_run]
        for attempt in range(1, _GLITCH_RETRIES + 2):
            found, errors = _timed_batch(runs, part, config, reference_ms)
            glitch = [r for r in found if not 1 / _GLITCH <= r[1] <= _GLITCH]
            if not glitch or attempt > _GLITCH_RETRIES:
                break
            log.warning(
                "machine %.3gx its reference speed while timing %s; timing these %d models again",
                glitch[0][1],
                space.format(part[found.index(glitch[0])]),
                len(part),
            )
        yield part, found, errors


def _timed_batch(
    runs: list[Any], part: Sequence[Architecture], config: ProfileConfig, reference_ms: float
) -> tuple[list[tuple[float, float]], list[float]]:
    """Time ``runs`` (reference, model, reference, model, ..., reference) interleaved; per model
    its median latency and drift ratio (the machine's speed over the table's, from the
    reference runs beside it, per round), and the rounds' errors (:func:`_round_errors`)."""
    timings = measure_interleaved(runs, config)
    ends = np.cumsum([0, *split_repeats(config.repeats, config.rounds)])
    rounds = [[t[a:b] for a, b in itertools.pairwise(ends)] for t in timings]  # per round
    found, errors = [], []
    for i in range(len(part)):
        # per round: the model's latency over the speed of the reference runs beside it
        before, own, after = rounds[2 * i], rounds[2 * i + 1], rounds[2 * i + 2]
        per_round = [
            statistics.median(m) * reference_ms / statistics.median(b + a)
            for b, m, a in zip(before, own, after, strict=True)
        ]
        measured = statistics.median(timings[2 * i + 1])
        found.append((measured, measured / statistics.median(per_round)))
        errors += _round_errors(per_round)
    return found, errors


def _round_errors(per_round: Sequence[float]) -> list[float]:
    """Each round's drift-corrected latency against the median of the model's other rounds
    (relative): how far a second measurement of the same model lands from the first."""
    if len(per_round) < 2:
        return []
    return [
        r / statistics.median([*per_round[:k], *per_round[k + 1 :]]) - 1
        for k, r in enumerate(per_round)
    ]
