"""Compressing a found model, every variant measured: structured channel pruning (a smaller dense
model, stored as shape overrides in ``arch.json``), unstructured magnitude sparsity, and INT8
quantization (torchao PT2E, or ONNX Runtime's static quantizer; run by ONNX Runtime)."""

from nas.compress._config import CompressConfig, PruneConfig
from nas.compress._measure import (
    LatencyConfig,
    Measurement,
    deflated_size,
    nonzero_params,
    summarize,
    time_interleaved,
)
from nas.compress._prune import (
    apply_shape_overrides,
    make_sparsity_permanent,
    prune_structured,
    prune_unstructured,
    shape_overrides,
    sparsity_of,
)
from nas.compress._quantize import (
    QuantizeConfig,
    check_calibration,
    quantize_int8,
    quantize_onnx,
)

__all__ = [
    "CompressConfig",
    "LatencyConfig",
    "Measurement",
    "PruneConfig",
    "QuantizeConfig",
    "apply_shape_overrides",
    "check_calibration",
    "deflated_size",
    "make_sparsity_permanent",
    "nonzero_params",
    "prune_structured",
    "prune_unstructured",
    "quantize_int8",
    "quantize_onnx",
    "shape_overrides",
    "sparsity_of",
    "summarize",
    "time_interleaved",
]
