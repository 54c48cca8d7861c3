"""What the package's timers share (``nas.cost`` times layers and models for tables,
``nas.compress`` times deployed variants, ``nas.train`` runs at a thread count): a fixed thread
count, CPU clock spin-up, timed calls, and how timed calls are split over interleaved rounds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["fixed_threads", "spin_up", "split_repeats", "time_calls"]


@contextlib.contextmanager
def fixed_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch at ``n`` intra-op threads (``None``: as it is), and restore
    the count after."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def split_repeats(repeats: int, rounds: int) -> list[int]:
    """Timed calls per round, ``repeats`` in all: ``split_repeats(100, 3) == [34, 33, 33]``.

    A round gets at least one call, so fewer repeats than rounds time ``rounds`` calls.
    """
    base, extra = divmod(max(repeats, rounds), rounds)
    return [base + (r < extra) for r in range(rounds)]


def spin_up(run: Callable[[], Any], seconds: float) -> None:
    """Call ``run`` for ``seconds`` before timing anything.

    CPUs (and GPUs) lower their clocks when idle and take up to a second of load to return to
    full speed: measured here, a 2-core x86 VM ran the same model in 30 ms cold and 15-16 ms
    after a second of load. Timing only after this keeps tables and end-to-end runs comparable.
    """
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        run()


def time_calls(run: Callable[[], Any], n: int) -> list[float]:
    """Milliseconds of ``n`` calls of ``run``, each timed alone with ``time.perf_counter_ns``."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples
