"""Evaluating one architecture: free metrics first, training only when it can matter."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nas.cost import CostModel, charged_layers
from nas.search._experiment import Constraint
from nas.space import Architecture, SearchSpace
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

    def train(
        self, arch: Architecture, *, progress: Callable[[int, int, float], None] | None = None
    ) -> tuple[Any, TrainResult]:
        """Build ``arch`` (seeded), train it on the experiment's data; returns (model, result)."""
        if self.data is None:
            raise RuntimeError("this experiment has no training objective and no data")
        model = self.space.build(arch, seed=self.train_config.seed)
        result = train_and_evaluate(model, self.data, self.train_config, progress=progress)
        return model, result


def trained_metrics(result: TrainResult) -> dict[str, float]:
    return {"accuracy": result.val_accuracy, "error": 1.0 - result.val_accuracy}


def violations(constraints: Sequence[Constraint], metrics: dict[str, float]) -> dict[str, float]:
    """Optuna constraint values (> 0 violated) of the constraints whose metric is known."""
    return {
        str(c): c.violation(metrics[c.metric.name])
        for c in constraints
        if c.metric.name in metrics and math.isfinite(metrics[c.metric.name])
    }
