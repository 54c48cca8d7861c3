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

from nas._errors import NasConfigError
from nas.export import load_architecture
from nas.space import Architecture, SearchSpace, list_spaces, load_space

__all__ = [
    "Architecture",
    "NasConfigError",
    "SearchSpace",
    "list_spaces",
    "load_architecture",
    "load_space",
]

__version__ = "0.1.0"
