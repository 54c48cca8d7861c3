"""The one error type users see for bad input, and its formatting."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["NasConfigError", "nearest", "raised_in_user_code"]

_PACKAGE = Path(__file__).resolve().parent


def raised_in_user_code(exc: BaseException) -> str | None:
    """``file.py:line`` of the innermost frame of ``exc`` in the user's own code (a module of
    ops: not this package, not torch, not the import machinery); None when there is none."""
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if "importlib" in frame.filename or "/torch/" in frame.filename:
            continue
        if path.resolve().is_relative_to(_PACKAGE):
            continue
        return f"{path.name}:{frame.lineno}"
    return None


def nearest(value: object, allowed: Iterable[object]) -> str | None:
    """The allowed value closest to ``value``: by size for numbers, else by spelling; None when
    nothing is close."""
    allowed = list(allowed)
    if isinstance(value, bool):  # YAML's false/true/no/yes for a choice of words
        words = ("always", "on", "yes", "true") if value else ("never", "off", "no", "false")
        said = {str(a).casefold(): str(a) for a in allowed}
        return next((said[w] for w in words if w in said), None)
    numbers = [a for a in allowed if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if numbers and len(numbers) == len(allowed):
        try:
            x = float(str(value))
        except ValueError:
            return None
        return str(min(numbers, key=lambda a: (abs(a - x), a)))
    names = [str(a) for a in allowed]
    same = [n for n in names if n.casefold() == str(value).casefold()]
    if same:  # CIFAR10 for cifar10
        return same[0]
    matches = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    return matches[0] if matches else None


class NasConfigError(ValueError):
    """Bad user input: a search space, experiment, architecture or table that does not validate.

    The message is one line shaped
    ``FILE:LINE: KEY: what is wrong; what is allowed (did you mean X?)`` so that the CLI can
    print it unchanged and exit with status 2.

    Args:
        message: What is wrong and how to fix it.
        file: The file the bad value came from, if any.
        line: 1-based line of the bad value in ``file``, if known.
        key: Dotted path of the bad key (``stages[1].width``), if any.
        allowed: The values that would have been accepted; listed and used for a suggestion.
        value: The bad value, used to suggest the nearest allowed one.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        allowed: Iterable[object] | None = None,
        value: object = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        raw = list(allowed) if allowed is not None else None
        self.allowed = [str(a) for a in raw] if raw is not None else None
        text = message
        if raw is not None and self.allowed is not None:
            text += f"; choose one of {', '.join(self.allowed)}"
            guess = nearest(value, raw) if value is not None else None
            if guess is not None and guess != str(value):
                numeric = all(isinstance(a, (int, float)) for a in raw)  # 40, not '40'
                text += f" (did you mean {guess if numeric else repr(guess)}?)"
        self.reason = text  # the message without its location, for re-raising elsewhere
        where = ""
        if self.file is not None:
            where = self.file + (f":{line}" if line is not None else "") + ": "
        if key:
            where += f"{key}: "
        super().__init__(where + text)
