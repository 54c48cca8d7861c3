"""Free metrics of a candidate pool, tabulated per layer slot, equal the per-architecture ones."""

from __future__ import annotations

import numpy as np
import pytest

from nas.cost import for_space, is_additive, load_cost_model
from nas.cost._calibrate import calibrate
from nas.search._evaluate import Evaluator
from nas.space import list_spaces, load_space
from nas.train import TrainConfig

STATIC = ["params", "macs", "peak_mem_bytes"]


def _compare(evaluator: Evaluator, names: list[str], n: int = 30) -> None:
    rng = np.random.default_rng(0)
    archs = [evaluator.space.random(rng) for _ in range(n)]
    many = evaluator.free_metrics_many(archs, names)
    one = np.array([[evaluator.free_metrics(a)[k] for k in names] for a in archs])
    np.testing.assert_allclose(many, one, rtol=1e-9)  # NaN (energy unknown) where it is NaN
    assert np.isfinite(one[:, : len(STATIC)]).all() and one.shape == (n, len(names))


@pytest.mark.parametrize("space_name", list_spaces())
def test_pool_metrics_equal_per_architecture_metrics(space_name):
    """Every built-in space and analytic profile, the Edge TPU's included: its weights share the
    SRAM across the model (not additive), and its costs come one architecture at a time."""
    space = load_space(space_name)
    devices = ["cpu", "gpu", "edge-tpu", "ethos-u55"]
    if space_name in ("mobilenet_small", "mbconv_imagenet"):
        devices.append("cpu-x86")  # the measured table, with its in-model correction
    models = {d: for_space(load_cost_model(d), space) for d in devices}
    assert not is_additive(models["edge-tpu"]) and is_additive(models["cpu"])
    names = STATIC + [f"{q}@{d}" for d in devices for q in ("latency_ms", "energy_mj")]
    _compare(Evaluator(space, models, TrainConfig()), names)


def test_pool_metrics_of_a_table_that_skips_unread_layers():
    """A calibrated latency-only table of a graph runtime: costs of the pruned graph, energy
    NaN, while params and MACs still count every layer."""
    space = load_space("nasbench201")
    prior = load_cost_model("cpu")
    rng = np.random.default_rng(1)
    measured = [
        (a, 1.0 + prior.estimate(space.layers(a)).latency_ms)
        for a in (space.random(rng) for _ in range(10))
    ]
    table = calibrate(space, measured, prior, device="graph", unread="skipped").table
    assert table.skips_unread
    names = [*STATIC, "latency_ms@graph", "energy_mj@graph", "latency_ms@cpu"]
    _compare(Evaluator(space, {"graph": table, "cpu": prior}, TrainConfig()), names)
