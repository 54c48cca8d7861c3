"""Measuring model variants for real: held-out accuracy, size on disk, end-to-end latency.

Latency is timed at batch 1 on this machine, each variant in the runtime it is deployed with
(PyTorch eager for float models, ONNX Runtime for ONNX and INT8 models), with the thread count
fixed. Variants are timed in interleaved rounds, so a slow phase of a shared machine hits every
variant alike, after a second of load that brings the CPU clock up (see
``nas._timing.spin_up``); the statistic is the median of all samples.
"""

from __future__ import annotations

import io
import logging
import statistics
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._config import check_field_types
from nas._errors import NasConfigError
from nas._timing import fixed_threads, spin_up, split_repeats, time_calls

__all__ = ["LatencyConfig", "Measurement", "deflated_size", "time_interleaved"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyConfig:
    """How end-to-end latency is timed (batch 1).

    Args:
        threads: Intra-op threads of both runtimes, >= 1.
        warmup: Untimed calls per variant before timing.
        repeats: Timed calls per variant, split over ``rounds``.
        rounds: Interleaved rounds (every variant once per round).
        spin_up_s: Seconds of load before timing.
    """

    threads: int = 1
    warmup: int = 50
    repeats: int = 600
    rounds: int = 6
    spin_up_s: float = 1.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if min(self.threads, self.repeats, self.rounds) < 1 or self.warmup < 0:
            raise NasConfigError(
                "`threads, repeats, rounds >= 1` and `warmup >= 0` must hold, but got "
                f"threads={self.threads}, repeats={self.repeats}, rounds={self.rounds}, "
                f"warmup={self.warmup}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The protocol in words, for model cards: '1 thread, median of 600 timed calls in 6
        interleaved rounds after 50 untimed ones'."""
        threads = f"{self.threads} thread{'s' * (self.threads != 1)}"
        return (
            f"{threads}, median of {sum(split_repeats(self.repeats, self.rounds))} timed calls in "
            f"{self.rounds} interleaved rounds after {self.warmup} untimed ones"
        )


@dataclass(frozen=True)
class Measurement:
    """One measured variant of a model.

    Args:
        variant: ``fp32``, ``fp32/onnx``, ``int8``, ``pruned``, ``pruned/onnx``, ``pruned+int8``,
            ``sparse``; a model that was pruned before (``nas train`` on a pruned
            ``arch.json``) is ``pruned`` and its variants ``pruned-pruned``, ``pruned-sparse``.
        runtime: ``torch-eager`` or ``onnxruntime``.
        accuracy: Top-1 accuracy on the held-out split, a fraction.
        split: The split ``accuracy`` is on (``test``, or ``val`` without a test split).
        latency_ms: Median end-to-end latency at batch 1.
        latency_ms_iqr: Interquartile range of the latency samples.
        size_bytes: Size of the deployable file on disk.
        size_deflated_bytes: That file zip-deflated (zeros of sparse weights compress away).
        params_nonzero: Nonzero parameters of the float weights it came from (a sparse
            model's zeros are not counted).
        file: The deployable file, relative to ``final/`` (``<folder>/<file>``).
    """

    variant: str
    runtime: str
    accuracy: float
    split: str
    latency_ms: float
    latency_ms_iqr: float
    size_bytes: int
    size_deflated_bytes: int
    params_nonzero: int
    file: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deflated_size(path: str | Path) -> int:
    """Bytes of ``path`` after zip deflate (level 9), the size a sparse model ships at."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, arcname=Path(path).name)
    return buffer.getbuffer().nbytes


def nonzero_params(model: nn.Module) -> int:
    """Parameters of ``model`` that are not zero: what a sparse model keeps (its zeros pay off
    only compressed, or in a sparse kernel)."""
    return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def time_interleaved(
    runners: Mapping[str, Callable[[], Any]], config: LatencyConfig
) -> dict[str, list[float]]:
    """Latency samples (ms) of each zero-argument callable, timed in interleaved rounds."""
    with fixed_threads(config.threads), torch.inference_mode():
        spin_up(next(iter(runners.values())), config.spin_up_s)
        for run in runners.values():
            for _ in range(config.warmup):
                run()
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for per_round in split_repeats(config.repeats, config.rounds):
            for name, run in runners.items():
                samples[name] += time_calls(run, per_round)
    return samples


def summarize(samples: list[float]) -> tuple[float, float]:
    """(median, interquartile range) of latency samples."""
    q = statistics.quantiles(samples, n=4)
    return statistics.median(samples), q[2] - q[0]
