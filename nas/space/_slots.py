"""Per-layer quantities of many architectures at once, tabulated per layer slot.

A space's layers sit in slots (:meth:`SearchSpace.layer_slots`), each decided by a few
parameters. Any quantity of one layer (its parameters, its MACs, its latency on a device) is then
a function of those parameters only, and can be tabulated once over their (few) combinations.
A sum (or maximum) over an architecture's layers becomes one gather per slot over an ``(N, P)``
array of choice indices: no Python per architecture.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nas.space._architecture import Architecture
from nas.space._layers import Layer
from nas.space._space import SearchSpace

__all__ = ["LayerSlots", "SlotValues"]


@dataclass(frozen=True, eq=False)
class SlotValues:
    """One per-layer quantity of a space: per slot, an array indexed by the slot's parameters.

    Attributes:
        constant: Added to every architecture's sum (a model's fixed overhead); the start of
            its maximum.
        tables: ``(columns, values)`` per slot in model order: the slot's parameter columns
            (indices into :attr:`LayerSlots.names`) and the value of its layer for each
            combination of their choices (0 where no layer sits there).
    """

    constant: float
    tables: tuple[tuple[tuple[int, ...], np.ndarray], ...]

    def _gathered(self, codes: np.ndarray) -> list[np.ndarray | float]:
        return [
            values[tuple(codes[:, c] for c in columns)] if columns else float(values)
            for columns, values in self.tables
        ]

    def sum(self, codes: np.ndarray) -> np.ndarray:
        """``constant`` plus the slots' values of each row of ``codes``, added in slot order."""
        codes = np.asarray(codes)
        total = np.full(len(codes), self.constant)
        for values in self._gathered(codes):
            total += values
        return total

    def max(self, codes: np.ndarray) -> np.ndarray:
        """The largest of ``constant`` and the slots' values, per row of ``codes``."""
        codes = np.asarray(codes)
        peak = np.full(len(codes), self.constant)
        for values in self._gathered(codes):
            np.maximum(peak, values, out=peak)
        return peak

    def sum_bounds(self) -> tuple[float, float]:
        """(lowest, highest) sum any architecture could have: the constant plus each slot's
        lowest (highest) value. Slots sharing a parameter may not reach both ends at once, so
        these bound the range; they need not be attained."""
        low = self.constant + sum(float(np.min(v)) for _, v in self.tables)
        return low, self.constant + sum(float(np.max(v)) for _, v in self.tables)


class LayerSlots:
    """The layer every combination of a slot's parameters puts in each slot of ``space``.

    Example:
        >>> from nas.space import load_space
        >>> space = load_space("mobilenet_small")
        >>> slots = LayerSlots(space)
        >>> macs = slots.tabulate(lambda layer: layer.macs)
        >>> archs = [space.random(i) for i in range(3)]
        >>> exact = [sum(x.macs for x in space.layers(a)) for a in archs]
        >>> macs.sum(slots.encode(archs)).tolist() == exact
        True
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.parameters = space.parameters()
        self.names = list(self.parameters)
        first = {k: c[0] for k, c in self.parameters.items()}
        built: dict[Architecture, dict[str, Layer]] = {}
        slots: list[tuple[tuple[int, ...], np.ndarray]] = []
        for name, params in space.layer_slots().items():
            dims = tuple(len(self.parameters[p]) for p in params)
            layers = np.full(dims, None, dtype=object)
            for idx in itertools.product(*(range(d) for d in dims)):
                choices = dict(first)
                choices.update(
                    {p: self.parameters[p][i] for p, i in zip(params, idx, strict=True)}
                )
                arch = space.from_choices(choices)
                if arch not in built:
                    built[arch] = {x.name: x for x in space.layers(arch)}
                layers[idx] = built[arch].get(name)
            slots.append((tuple(self.names.index(p) for p in params), layers))
        self._slots = tuple(slots)

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(N, P)`` choice indices of ``archs`` in :attr:`names` order
        (:meth:`SearchSpace.encode`)."""
        return self.space.encode(archs)

    def tabulate(self, value: Callable[[Layer], float], *, constant: float = 0.0) -> SlotValues:
        """``value`` of the layer in every slot for every combination (0 where none sits)."""
        tables = []
        for columns, layers in self._slots:
            values = np.zeros(layers.shape)
            for idx, layer in np.ndenumerate(layers):
                if layer is not None:
                    values[idx] = value(layer)
            tables.append((columns, values))
        return SlotValues(float(constant), tuple(tables))
