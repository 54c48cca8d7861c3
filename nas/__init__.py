"""nas: hardware-aware neural architecture search.

Write a search space in a small YAML DSL, name objectives such as ``error``, ``params`` and
``latency_ms@cpu``, and search for the Pareto-optimal architectures with Optuna.

Example:
    >>> import nas
    >>> space = nas.load_space("nasbench201")
    >>> space.size()
    15625
    >>> arch = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    ...                    "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    >>> space.describe(arch).params  # NAS-Bench-201 reports 1.531546 M for this cell
    1531546
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nas._errors import NasConfigError

if TYPE_CHECKING:
    from nas.export import load_architecture
    from nas.space import Architecture, SearchSpace, list_spaces, load_space

#: names imported on first use, so that ``nas --help`` and light commands do not load torch
_LAZY = {
    "Architecture": "nas.space",
    "SearchSpace": "nas.space",
    "list_spaces": "nas.space",
    "load_space": "nas.space",
    "load_architecture": "nas.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Architecture",
    "NasConfigError",
    "SearchSpace",
    "list_spaces",
    "load_architecture",
    "load_space",
]

__version__ = "0.1.0"
