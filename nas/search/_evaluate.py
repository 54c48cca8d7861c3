"""Evaluating one architecture: free metrics first, training only when it can matter."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.cost import CostEstimate, CostModel, VectorizedCost, charged_layers, is_additive
from nas.search._experiment import Constraint
from nas.space import Architecture, LayerSlots, SearchSpace, SlotValues
from nas.train import SplitData, TrainConfig, TrainResult, train_and_evaluate

__all__ = ["Evaluator", "WORST"]

#: value a trained objective gets when the candidate was never trained (cheap constraint violated)
WORST = {"error": 1.0, "accuracy": 0.0}


@dataclass(frozen=True)
class Evaluator:
    """Computes the metrics of architectures of one space for one experiment.

    Free metrics (params, MACs, peak memory, per-device latency and energy) come from the layer
    table and the cost models; ``error``/``accuracy`` come from real training on ``data``.
    """

    space: SearchSpace
    cost_models: dict[str, CostModel]
    train_config: TrainConfig
    data: SplitData | None = None

    def free_metrics(self, arch: Architecture) -> dict[str, float]:
        """Every metric that needs no training: static counts and all devices' costs."""
        layers = self.space.layers(arch)
        params = sum(layer.params for layer in layers)
        out: dict[str, float] = {
            "params": float(params),
            "macs": float(sum(layer.macs for layer in layers)),
            "peak_mem_bytes": float(4 * (params + self.space.peak_activation_elems(layers))),
        }
        for device, model in self.cost_models.items():
            est = model.estimate(charged_layers(self.space, model, arch, layers))
            out[f"latency_ms@{device}"] = est.latency_ms
            out[f"energy_mj@{device}"] = est.energy_mj
        return out

    def free_metrics_many(self, archs: Sequence[Architecture], names: Sequence[str]) -> np.ndarray:
        """``(len(archs), len(names))`` values of free metrics: :meth:`free_metrics` for a pool
        of candidates, tabulated per layer slot (~100x faster). Costs of a device whose model
        is not additive (:func:`nas.cost.is_additive`) are computed one architecture at a time.
        """
        return self._many.metrics(archs, names)

    @functools.cached_property
    def _many(self) -> _ManyMetrics:
        return _ManyMetrics(self)

    def train(
        self, arch: Architecture, *, progress: Callable[[int, int, float], None] | None = None
    ) -> tuple[Any, TrainResult]:
        """Build ``arch`` (seeded), train it on the experiment's data; returns (model, result)."""
        if self.data is None:
            raise RuntimeError("this experiment has no training objective and no data")
        model = self.space.build(arch, seed=self.train_config.seed)
        result = train_and_evaluate(model, self.data, self.train_config, progress=progress)
        return model, result


class _ManyMetrics:
    """The tables behind :meth:`Evaluator.free_metrics_many`, built on first use."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        space = evaluator.space
        self.slots = LayerSlots(space)
        self.static: dict[str, SlotValues] = {
            "params": self.slots.tabulate(lambda layer: layer.params),
            "macs": self.slots.tabulate(lambda layer: layer.macs),
        }
        # a space's peak is the largest of its layers' (``SearchSpace.peak_activation_elems``)
        self.peak_elems = self.slots.tabulate(lambda layer: space.peak_activation_elems([layer]))
        self.costs = {
            device: VectorizedCost(space, model, self.slots)
            for device, model in evaluator.cost_models.items()
            if is_additive(model)
        }

    def metrics(self, archs: Sequence[Architecture], names: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(archs), len(names)))
        codes: dict[str, np.ndarray] = {}  # "": of all layers; a device: of those it charges
        exact: dict[str, list[CostEstimate]] = {}  # devices whose model is not additive

        def encoded(device: str = "") -> np.ndarray:
            cost = self.costs.get(device)
            key = device if cost is not None and getattr(cost.model, "skips_unread", False) else ""
            if key not in codes:
                codes[key] = cost.encode(archs) if cost and key else self.slots.encode(archs)
            return codes[key]

        for column, name in enumerate(names):
            quantity, _, device = name.partition("@")
            if name == "peak_mem_bytes":
                codes_all = encoded()
                elems = self.static["params"].sum(codes_all) + self.peak_elems.max(codes_all)
                out[:, column] = 4 * elems
            elif name in self.static:
                out[:, column] = self.static[name].sum(encoded())
            elif device in self.costs:
                out[:, column] = self.costs[device].values[quantity].sum(encoded(device))
            else:  # the layers share state (on-chip memory): one architecture at a time
                if device not in exact:
                    model = self.evaluator.cost_models[device]
                    space = self.evaluator.space
                    exact[device] = [
                        model.estimate(charged_layers(space, model, a)) for a in archs
                    ]
                out[:, column] = [getattr(e, quantity) for e in exact[device]]
        return out


def trained_metrics(result: TrainResult) -> dict[str, float]:
    return {"accuracy": result.val_accuracy, "error": 1.0 - result.val_accuracy}


def violations(constraints: Sequence[Constraint], metrics: dict[str, float]) -> dict[str, float]:
    """Optuna constraint values (> 0 violated) of the constraints whose metric is known."""
    return {
        str(c): c.violation(metrics[c.metric.name])
        for c in constraints
        if c.metric.name in metrics and math.isfinite(metrics[c.metric.name])
    }
