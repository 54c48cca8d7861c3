"""The cost-model interface: per-device latency and energy of an architecture's layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from nas._errors import NasConfigError
from nas.space import Architecture, Layer, SearchSpace

__all__ = ["CostEstimate", "CostModel", "charged_layers"]


@dataclass(frozen=True)
class CostEstimate:
    """Predicted cost of running one architecture once at batch 1 on one device.

    Attributes:
        latency_ms: End-to-end latency in milliseconds.
        energy_mj: Energy in millijoules; NaN when the model has no energy values (a
            latency-only imported or calibrated table).
        kind: How the numbers were obtained: ``analytic``, ``measured``, ``imported`` or
            ``calibrated``.
    """

    latency_ms: float
    energy_mj: float
    kind: str

    def __post_init__(self) -> None:
        for name in ("latency_ms", "energy_mj"):
            value = getattr(self, name)
            if name == "energy_mj" and math.isnan(value):
                continue  # unknown: the model holds latency only
            if not math.isfinite(value) or value < 0:
                raise NasConfigError(f"cost estimate {name} must be finite and >= 0, got {value}")

    def to_dict(self) -> dict[str, float | str]:
        return {"latency_ms": self.latency_ms, "energy_mj": self.energy_mj, "kind": self.kind}


@runtime_checkable
class CostModel(Protocol):
    """Predicts latency and energy of a model on one device from its layers.

    Contract: ``estimate`` is a pure function of the layers (same layers, same estimate), it is
    safe to call from several threads, and it raises :class:`NasConfigError` for a layer it
    cannot cost rather than returning a silent zero. Units are milliseconds and millijoules at
    batch 1.

    Optional attributes: ``additive`` (True when an estimate is ``estimate([])`` plus each
    layer's ``estimate([layer]) - estimate([])``: the search then prices thousands of
    candidates per call, see :class:`nas.cost.VectorizedCost`) and ``skips_unread`` (see
    :func:`charged_layers`).
    """

    @property
    def device(self) -> str:
        """The device name used in metric names (``latency_ms@<device>``)."""
        ...

    def estimate(self, layers: Sequence[Layer]) -> CostEstimate:
        """Latency and energy of running ``layers`` once, in order, at batch 1."""
        ...


def charged_layers(
    space: SearchSpace,
    model: CostModel,
    arch: Architecture,
    layers: Sequence[Layer] | None = None,
) -> Sequence[Layer]:
    """The layers of ``arch`` that ``model`` charges for.

    All of them (``layers``, when the caller has them already), except for a model of a graph
    runtime that drops layers whose output nothing reads (``model.skips_unread``, e.g. a table
    calibrated with ``--unread-layers skipped``): then those of ``space.graph_pruned(arch)``.
    """
    if getattr(model, "skips_unread", False):
        return space.layers(space.graph_pruned(arch))
    return space.layers(arch) if layers is None else layers
