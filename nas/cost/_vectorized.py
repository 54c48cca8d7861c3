"""Scoring many architectures at once: a cost model compiled into one small array per layer slot.

For a cost that is a sum over layers (lookup tables, and analytic models whose layers do not
share the on-chip memory: a model's ``additive`` attribute says so), the cost of each layer
slot is a function of the few parameters that decide it, tabulated once
(:class:`~nas.space.LayerSlots`).
Scoring N architectures is then one gather per slot over an ``(N, P)`` array of choice indices:
no Python per architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas._errors import NasConfigError
from nas.cost._base import CostModel
from nas.space import Architecture, Layer, LayerSlots, SearchSpace

__all__ = ["VectorizedCost", "is_additive"]


def is_additive(model: CostModel) -> bool:
    """Whether ``model``'s estimate of a model is its overhead plus the sum of its layers'
    estimates as models of their own (``model.additive``; False when it does not say)."""
    return bool(getattr(model, "additive", False))


class VectorizedCost:
    """``model``'s latency and energy for many architectures of ``space`` at once.

    Exact (to rounding) for an additive model (:func:`is_additive`); for another, each layer is
    priced as a model of its own, which :meth:`bounds` may still use as a range estimate.

    Args:
        space: The search space.
        model: Its cost model (a lookup table is bound to ``space`` for its in-model correction).
        slots: The space's :class:`~nas.space.LayerSlots`, when the caller has them already.

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

    def __init__(
        self, space: SearchSpace, model: CostModel | str, slots: LayerSlots | None = None
    ) -> None:
        from nas.cost._registry import as_cost_model
        from nas.cost._table import LookupTable

        model = as_cost_model(model)  # (a device's name, or a table's or profile's path)
        if isinstance(model, LookupTable) and model.space is None:
            model = model.bind(space)  # its in-model correction for this space
        self.space = space
        self.model = model
        self.exact = is_additive(model)
        self.layer_slots = slots if slots is not None else LayerSlots(space)
        self.parameters = self.layer_slots.parameters
        self.names = self.layer_slots.names
        base = model.estimate([])
        self.overhead = (base.latency_ms, base.energy_mj)
        alone: dict[Layer, tuple[float, float]] = {}  # latency and energy: one estimate

        def cost(layer: Layer) -> tuple[float, float]:
            if layer not in alone:
                est = model.estimate([layer])
                alone[layer] = (est.latency_ms - base.latency_ms, est.energy_mj - base.energy_mj)
            return alone[layer]

        self.values = {
            "latency_ms": self.layer_slots.tabulate(
                lambda x: cost(x)[0], constant=base.latency_ms
            ),
            "energy_mj": self.layer_slots.tabulate(lambda x: cost(x)[1], constant=base.energy_mj),
        }

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(N, P)`` choice indices of architectures (inactive parameters map to index 0).

        For a model that skips unread layers these are the codes of ``space.graph_pruned(a)``.
        """
        if getattr(self.model, "skips_unread", False):
            archs = [self.space.graph_pruned(a) for a in archs]
        return self.layer_slots.encode(archs)

    def bounds(self, which: str) -> tuple[float, float]:
        """(lowest, highest) ``latency_ms`` or ``energy_mj`` any architecture could have
        (:meth:`~nas.space.SlotValues.sum_bounds`)."""
        if which not in self.values:
            raise NasConfigError(f"unknown quantity {which!r}", allowed=list(self.values))
        return self.values[which].sum_bounds()

    def latency_ms(self, codes: np.ndarray) -> np.ndarray:
        """Latency of each row of ``codes`` (from :meth:`encode` or drawn directly)."""
        return self.values["latency_ms"].sum(self._checked(codes))

    def energy_mj(self, codes: np.ndarray) -> np.ndarray:
        """Energy of each row of ``codes`` (from :meth:`encode` or drawn directly)."""
        return self.values["energy_mj"].sum(self._checked(codes))

    def _checked(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` as an ``(N, P)`` integer array of choice indices in range; anything else
        (architectures not encoded, a negative index numpy would wrap round) is refused."""
        if isinstance(codes, (list, tuple)) and codes and isinstance(codes[0], Architecture):
            raise NasConfigError("codes: architectures, not codes; pass encode(archs)")
        array = np.asarray(codes)
        sizes = np.array([len(self.parameters[n]) for n in self.names])
        if array.ndim != 2 or array.shape[1] != len(sizes) or array.dtype.kind not in "iu":
            raise NasConfigError(
                f"codes: expected an (N, {len(sizes)}) integer array of choice indices (encode() "
                f"makes one), got shape {array.shape} of dtype {array.dtype}"
            )
        bad = (array < 0) | (array >= sizes)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise NasConfigError(
                f"codes[{row}, {col}]: {int(array[row, col])} is not an index of parameter "
                f"'{self.names[col]}' (0..{sizes[col] - 1})"
            )
        return array
