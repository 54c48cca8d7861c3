"""ONNX export (``torch.onnx`` dynamo exporter) and running ONNX models with ONNX Runtime.

A float model exports to a float ONNX graph; a PT2E INT8 graph (``nas.compress.quantize_int8``)
exports to a QDQ graph, which ONNX Runtime's graph optimizer fuses into int8 kernels
(``QLinearConv``, ``QGemm``, ...; ONNX Runtime docs, "Quantize ONNX models"). Each export is
checked by running it in ONNX Runtime against the PyTorch program it came from.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nas._errors import NasConfigError
from nas._io import atomic_path
from nas._quiet import quiet_third_party
from nas._trace import check_images, trace_inputs

__all__ = ["OnnxModule", "export_onnx", "onnx_session", "optimized_graph"]

logger = logging.getLogger(__name__)

# A float export must match PyTorch to 1e-4 relative to max(1, max |logit|): float32 rounding
# (and a reordered sum) errs in proportion to the magnitude of what it adds, so logits of 4e6
# differ by ~1e2 in a correct export.
FP32_RTOL = 1e-4


def onnx_session(
    path: str | Path, *, threads: int | None = 1, optimized_to: str | Path | None = None
) -> Any:
    """An ONNX Runtime CPU session of ``path`` with all graph optimizations (int8 fusion);
    ``optimized_to`` also saves the optimized graph there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise NasConfigError(f"{path}: ONNX Runtime cannot load the model ({exc})") from None


def optimized_graph(path: str | Path) -> Any:
    """The ``onnx.GraphProto`` ONNX Runtime runs for ``path`` after its graph optimizations
    (fusions such as QuantizeLinear/DequantizeLinear around a Conv into QLinearConv)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "optimized.onnx"
        onnx_session(path, optimized_to=target)
        return onnx.load(str(target)).graph


class OnnxModule(nn.Module):
    """An ONNX model run by ONNX Runtime behind the ``nn.Module`` call interface (inference only).

    Example:
        >>> m = OnnxModule("export/0123456789ab/model_int8.onnx")  # doctest: +SKIP
        >>> m(torch.zeros(1, 1, 8, 8)).shape  # doctest: +SKIP
        torch.Size([1, 10])
    """

    def __init__(self, path: str | Path, *, threads: int | None = 1) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.eval()  # inference only: it has no training mode

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:  # (N, C, H, W) -> logits
        if isinstance(x, np.ndarray):
            array = np.ascontiguousarray(x, dtype=np.float32)
        else:
            array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.run_numpy(array))


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` is a PT2E graph holding quantize ops (``quantize_int8``'s output)."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    return any("quantize_per" in str(node.target) for node in model.graph.nodes)


def _strip_debug_metadata(path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Drop the exporter's per-node debug metadata (Python stack traces with this machine's
    file paths, FX node text, module scopes): it names the exporting user's folders in a file
    meant to be shared, and is most of a small model's file (0.5-2 KB per node). ``metadata``
    goes into the model's own ``metadata_props`` (what an ONNX user reads beside the graph)."""
    import onnx

    model = onnx.load(str(path))
    if metadata:
        onnx.helper.set_model_props(model, dict(metadata))

    def strip(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    strip(attr.g)
                for sub in attr.graphs:
                    strip(sub)

    strip(model.graph)
    for function in model.functions:
        for node in function.node:
            del node.metadata_props[:]
    # the batch dimension named 'batch' however it was traced (from a torch.export program the
    # exporter names it by its symbol, 's77'): the input's first dimension, wherever it is used
    first = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    symbol = first[0].dim_param if first else ""
    if symbol and symbol != "batch":
        for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param == symbol:
                    dim.dim_param = "batch"
    onnx.save(model, str(path))


@contextlib.contextmanager
def _in_eval(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode, a float model put back in training mode after if it was in it
    (a PT2E graph's mode is not switched back: its train() is not a module's)."""
    training = model.training and not is_quantized(model)
    model.eval()
    try:
        yield
    finally:
        if training:
            model.train()


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    *,
    check: torch.Tensor | None = None,
    atol: float | None | Literal["auto"] = "auto",
    metadata: Mapping[str, str] | None = None,
    program: torch.export.ExportedProgram | None = None,
) -> dict[str, float]:
    """Export ``model`` to ``path`` (dynamic batch), atomically, and check it in ONNX Runtime.

    Args:
        model: A float ``nn.Module`` or a PT2E graph module (INT8 QDQ export).
        example: An input batch ``(N, C, H, W)`` (its values do not matter).
        path: The ``.onnx`` file to write.
        check: Inputs to compare ONNX Runtime's outputs on against ``model``'s (default:
            ``example``).
        atol: Largest absolute difference of the logits allowed; ``None`` checks only that the
            predicted classes mostly agree (INT8 graphs round differently in ONNX Runtime's
            fused kernels than in PyTorch's reference ops). ``"auto"``: for float models
            ``FP32_RTOL`` (1e-4) times ``max(1, max |logit|)`` of PyTorch's outputs, ``None``
            for quantized graphs.
        metadata: Key-value strings for the model's ``metadata_props`` (the architecture and
            its input recipe, so the file says what it is when it travels alone).
        program: ``model`` already traced by :func:`nas._trace.export_program` (for its
            ``model.pt2``): exported from instead of tracing ``model`` again.

    Returns:
        ``{"max_abs_diff": ..., "argmax_agreement": ...}`` of ONNX Runtime against PyTorch.

    Raises:
        RuntimeError: The exported graph's outputs differ beyond ``atol``.
    """
    path = Path(path)
    if not isinstance(model, nn.Module):
        raise NasConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not is_quantized(model):
        check_images(example, model, name="example")  # (torch's own error says little)
    if atol not in ("auto", None) and not (
        isinstance(atol, (int, float)) and not isinstance(atol, bool) and 0 <= atol < math.inf
    ):
        raise NasConfigError(f"atol: expected a number >= 0, None or 'auto', got {atol!r}")
    relative = atol == "auto" and not is_quantized(model)
    if atol == "auto":
        atol = None
    args, dynamic_shapes = trace_inputs(example)
    with _in_eval(model), atomic_path(path, suffix=".onnx") as tmp:
        # the exporter prints its progress, and logs about ops of packages that are absent
        with contextlib.redirect_stdout(io.StringIO()), quiet_third_party():
            traced = {"dynamic_shapes": dynamic_shapes} if program is None else {}
            torch.onnx.export(
                model if program is None else program,
                args,
                str(tmp),
                dynamo=True,
                **traced,
                input_names=["x"],
                output_names=["logits"],
                external_data=False,
                verbose=False,
            )
        _strip_debug_metadata(tmp, metadata)
        inputs = example if check is None else check
        with torch.no_grad():
            expected = model(inputs).float().numpy()
        got = OnnxModule(tmp, threads=None).run_numpy(inputs.float().numpy())
        diff = float(np.max(np.abs(got - expected)))
        agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
        scale = ""
        if relative:
            largest = float(np.max(np.abs(expected))) if expected.size else 0.0
            atol = FP32_RTOL * max(1.0, largest)
            scale = f", {FP32_RTOL:.0e} of the largest |logit| {largest:.3g}"
        if atol is not None and not diff <= atol:
            raise RuntimeError(
                f"ONNX Runtime's outputs differ from PyTorch's by {diff:.2e} (> {atol:.2e}"
                f"{scale}) for {path.name}; the export is wrong"
            )
    logger.info("wrote %s (max |diff| %.2e vs PyTorch)", path, diff)
    return {"max_abs_diff": diff, "argmax_agreement": agreement}
