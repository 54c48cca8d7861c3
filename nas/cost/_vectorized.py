"""Scoring many architectures at once: a cost model compiled into one small array per layer slot.

A space's layers sit in slots (``space.layer_slots()``), each decided by a few parameters. For a
cost that is a sum over layers (every cost model here: lookup tables and analytic models), the
cost of slot ``s`` is a function of those parameters only, so it can be tabulated once over their
(few) combinations. Scoring N architectures is then one gather per slot over an ``(N, P)`` array
of choice indices: no Python per architecture.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas.cost._base import CostModel
from nas.space import Architecture, SearchSpace

__all__ = ["VectorizedCost"]


@dataclass(frozen=True)
class _Slot:
    columns: tuple[int, ...]  # indices into the parameter list
    latency_ms: np.ndarray  # shaped by the choice counts of those parameters
    energy_mj: np.ndarray


class VectorizedCost:
    """``model``'s latency and energy for many architectures of ``space`` at once.

    Example:
        >>> from nas.cost import load_cost_model
        >>> from nas.space import load_space
        >>> space = load_space("nasbench201")
        >>> fast = VectorizedCost(space, load_cost_model("cpu"))
        >>> archs = [space.random(i) for i in range(3)]
        >>> slow = [load_cost_model("cpu").estimate(space.layers(a)).latency_ms for a in archs]
        >>> bool(np.allclose(fast.latency_ms(fast.encode(archs)), slow))
        True
    """

    def __init__(self, space: SearchSpace, model: CostModel) -> None:
        from nas.cost._table import LookupTable

        if isinstance(model, LookupTable) and model.space is None:
            model = model.bind(space)  # its in-model correction for this space
        self.space = space
        self.model = model
        self.parameters = space.parameters()
        self.names = list(self.parameters)
        base = model.estimate([])
        self.overhead = (base.latency_ms, base.energy_mj)
        first = {k: c[0] for k, c in self.parameters.items()}
        self.slots: list[_Slot] = []
        for name, params in space.layer_slots().items():
            dims = [len(self.parameters[p]) for p in params]
            lat = np.zeros(dims)
            en = np.zeros(dims)
            for idx in itertools.product(*(range(d) for d in dims)):
                choices = dict(first)
                choices.update(
                    {p: self.parameters[p][i] for p, i in zip(params, idx, strict=True)}
                )
                arch = space.from_choices(choices)
                layer = next((x for x in space.layers(arch) if x.name == name), None)
                if layer is not None:
                    est = model.estimate([layer])
                    lat[idx] = est.latency_ms - self.overhead[0]
                    en[idx] = est.energy_mj - self.overhead[1]
            columns = tuple(self.names.index(p) for p in params)
            self.slots.append(_Slot(columns, lat, en))

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(N, P)`` choice indices of architectures (inactive parameters map to index 0).

        For a model that skips unread layers these are the codes of ``space.graph_pruned(a)``.
        """
        if getattr(self.model, "skips_unread", False):
            archs = [self.space.graph_pruned(a) for a in archs]
        index = {k: {v: i for i, v in enumerate(c)} for k, c in self.parameters.items()}
        out = np.zeros((len(archs), len(self.names)), dtype=np.int64)
        for row, arch in enumerate(archs):
            params = self.space.to_params(arch)
            out[row] = [index[k][params[k]] for k in self.names]
        return out

    def _sum(self, codes: np.ndarray, which: str, constant: float) -> np.ndarray:
        total = np.full(len(codes), constant)
        for slot in self.slots:
            values = getattr(slot, which)
            total += values[tuple(codes[:, c] for c in slot.columns)] if slot.columns else values
        return total

    def bounds(self, which: str) -> tuple[float, float]:
        """(lowest, highest) ``latency_ms`` or ``energy_mj`` any architecture could have: the
        overhead plus each slot's cheapest (dearest) choice. Slots sharing a parameter may not
        reach both ends at once, so these bound the space's range; they need not be attained."""
        constant = self.overhead[0] if which == "latency_ms" else self.overhead[1]
        values = [getattr(slot, which) for slot in self.slots]
        low = constant + sum(float(np.min(v)) for v in values)
        return low, constant + sum(float(np.max(v)) for v in values)

    def latency_ms(self, codes: np.ndarray) -> np.ndarray:
        """Latency of each row of ``codes`` (from :meth:`encode` or drawn directly)."""
        return self._sum(np.asarray(codes), "latency_ms", self.overhead[0])

    def energy_mj(self, codes: np.ndarray) -> np.ndarray:
        return self._sum(np.asarray(codes), "energy_mj", self.overhead[1])
