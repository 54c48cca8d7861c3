"""What the package's two timers share: how timed calls are split over interleaved rounds."""

from __future__ import annotations

__all__ = ["split_repeats"]


def split_repeats(repeats: int, rounds: int) -> list[int]:
    """Timed calls per round, ``repeats`` in all: ``split_repeats(100, 3) == [34, 33, 33]``.

    A round gets at least one call, so fewer repeats than rounds time ``rounds`` calls.
    """
    base, extra = divmod(max(repeats, rounds), rounds)
    return [base + (r < extra) for r in range(rounds)]
