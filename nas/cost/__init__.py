"""Hardware cost models: latency and energy of an architecture on a device."""

from nas.cost._analytic import AnalyticDevice
from nas.cost._base import CostEstimate, CostModel
from nas.cost._registry import builtin_table_dir, list_devices, load_cost_model

__all__ = [
    "AnalyticDevice",
    "CostEstimate",
    "CostModel",
    "builtin_table_dir",
    "list_devices",
    "load_cost_model",
]
