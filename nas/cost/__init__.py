"""Hardware cost models: latency and energy of an architecture on a device."""

from nas.cost._analytic import AnalyticDevice
from nas.cost._base import CostEstimate, CostModel, charged_layers
from nas.cost._registry import builtin_table_dir, for_space, list_devices, load_cost_model
from nas.cost._table import POOR_FIT, LookupTable, TableEntry, entry_from_layer
from nas.cost._vectorized import VectorizedCost, is_additive

__all__ = [
    "POOR_FIT",
    "AnalyticDevice",
    "CostEstimate",
    "CostModel",
    "LookupTable",
    "TableEntry",
    "VectorizedCost",
    "builtin_table_dir",
    "charged_layers",
    "entry_from_layer",
    "for_space",
    "is_additive",
    "list_devices",
    "load_cost_model",
]
