"""INT8 quantization: torchao's PT2E flow (post-training, or quantization-aware training).

The model is captured with ``torch.export``, annotated by torchao's ``X86InductorQuantizer``
(activations uint8 asymmetric per tensor, weights int8 symmetric per output channel, the
configuration Intel's x86 backend ships), calibrated on real images, and converted to a graph of
``quantize -> int8 op -> dequantize`` patterns. That graph is a reference program: it runs
anywhere PyTorch runs, and it exports to an ONNX QDQ model that ONNX Runtime executes with
real int8 kernels (``nas.export.export_onnx``). PT2E replaces the deprecated eager-mode and FX
quantization APIs of ``torch.ao.quantization`` (torchao docs, "PyTorch 2 Export Quantization").

The models are deployed with ONNX Runtime, so one thing differs from the x86 recipe: a residual
``conv -> add`` is annotated as an int8 convolution whose output is quantized, then an add of two
quantized inputs. The x86 recipe leaves that convolution's output in float for Inductor's fused
conv+add kernel, which ONNX Runtime does not have: it ran those convolutions in float, beside
transposes to and from its int8 layout. Now they become ``QLinearConv`` + ``QLinearAdd``
(measured on two 224x224 MBConv models: 1.19x and 1.01x faster than FP32 before, 1.67x and
1.35x after). A linear layer that ends its pattern (the classifier) also gets a quantized
output: the x86 recipe leaves the logits in float, and ONNX Runtime then runs the classifier as
a float ``Gemm`` that dequantizes its weights on every call (0.44 ms of a 5.3 ms 224x224 MBConv
model, 1280 -> 1000 classes) where a ``QGemm`` reads int8 weights. Quantization-aware training
keeps the x86 recipe.

``quantize_onnx`` is the other post-training path: ONNX Runtime's own static quantizer applied to
the exported FP32 model. It also quantizes squeeze-and-excitation gates, which stay in float
here.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._config import Node, check_field_types
from nas._errors import NasConfigError
from nas._io import atomic_path
from nas._quiet import quiet_third_party
from nas._trace import check_images, export_program

__all__ = [
    "QUANTIZE_TOOLS",
    "QuantizeConfig",
    "check_calibration",
    "quantize_int8",
    "quantize_onnx",
]

logger = logging.getLogger(__name__)


QUANTIZE_TOOLS = ("pt2e", "onnxruntime")


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize to INT8.

    Args:
        calibration: Training images the observers see (post-training quantization), >= 1.
        qat: Quantization-aware training after calibration: fine-tune with fake quantization
            for ``qat_epochs``, for when PTQ alone loses too much accuracy.
        qat_epochs: Epochs of quantization-aware training, >= 1.
        qat_lr: Peak learning rate of quantization-aware training (SGD, cosine), > 0.
        max_drop: PTQ accuracy loss (a fraction, 0.01 = 1 point) above which ``qat: auto``
            switches to quantization-aware training.
        tool: What quantizes after training: ``pt2e`` (torchao's PT2E flow with the x86
            quantizer; its ONNX export and Inductor both run the result) or ``onnxruntime``
            (ONNX Runtime's static quantizer on the FP32 ONNX model, measured against PT2E in
            docs/benchmarks.md).
            Quantization-aware training always uses PT2E.

    Example:
        >>> QuantizeConfig(calibration=128).qat
        'auto'
    """

    calibration: int = 256
    qat: str = "auto"
    qat_epochs: int = 3
    qat_lr: float = 0.005
    max_drop: float = 0.01
    tool: str = "pt2e"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.calibration < 1:
            raise NasConfigError(f"`calibration >= 1` must hold, but got {self.calibration}")
        if self.qat not in ("auto", "always", "never"):
            raise NasConfigError(
                f"unknown qat mode {self.qat!r}",
                allowed=("auto", "always", "never"),
                value=self.qat,
            )
        if self.tool not in QUANTIZE_TOOLS:
            raise NasConfigError(
                f"unknown quantize tool {self.tool!r}", allowed=QUANTIZE_TOOLS, value=self.tool
            )
        if self.qat_epochs < 1 or not self.qat_lr > 0 or not 0 <= self.max_drop < 1:
            raise NasConfigError(
                "`qat_epochs >= 1`, `qat_lr > 0` and `0 <= max_drop < 1` must hold, but got "
                f"qat_epochs={self.qat_epochs}, qat_lr={self.qat_lr}, max_drop={self.max_drop}"
            )

    @classmethod
    def from_node(cls, node: Node) -> QuantizeConfig:
        """Read a ``quantize:`` mapping (keys as the fields; all optional)."""
        config = cls(
            calibration=node.get("calibration", 256).as_int(min=1),
            qat=node.get("qat", "auto").as_choice(("auto", "always", "never")),
            qat_epochs=node.get("qat_epochs", 3).as_int(min=1),
            qat_lr=node.get("qat_lr", 0.005).as_float(gt=0.0),
            max_drop=node.get("max_drop", 0.01).as_float(min=0.0, lt=1.0),
            tool=node.get("tool", "pt2e").as_choice(QUANTIZE_TOOLS),
        )
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration,
            "qat": self.qat,
            "qat_epochs": self.qat_epochs,
            "qat_lr": self.qat_lr,
            "max_drop": self.max_drop,
            "tool": self.tool,
        }


def check_calibration(images: torch.Tensor, input_shape: tuple[int, ...], *, source: str) -> None:
    """Raise a one-line error when ``images`` is not a float ``(N, *input_shape)`` batch."""
    if images.ndim != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
        raise NasConfigError(
            f"{source}: calibration images have shape {tuple(images.shape)} but the model takes "
            f"(N, {', '.join(map(str, input_shape))}); pass images of the data the model was "
            "trained on"
        )
    if images.shape[0] == 0 or not images.is_floating_point():
        raise NasConfigError(
            f"{source}: calibration needs at least one float image, got "
            f"{images.shape[0]} of dtype {images.dtype}"
        )


def _check_batch_size(batch_size: object) -> None:
    """Refuse a calibration batch size other than an integer >= 1 (0 failed in ``range``)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise NasConfigError(f"batch_size: expected an integer >= 1, got {batch_size!r}")


def capture(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` graph of ``model`` in eval mode with a dynamic batch dimension."""
    return export_program(model.eval(), example).module()


def quantize_int8(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    train: Callable[[nn.Module], None] | None = None,
    batch_size: int = 64,
) -> torch.fx.GraphModule:
    """An INT8 copy of ``model`` (``model`` itself is left as it is).

    Args:
        model: A float model in eval mode, mapping ``(N, C, H, W)`` to logits.
        calibration: Float images ``(N, C, H, W)`` from the training distribution.
        train: When given, quantization-aware training: the fake-quantized graph (``.train()``
            and ``.eval()`` work on it) is passed to ``train`` before conversion.
        batch_size: Calibration batch size.

    Returns:
        The converted PT2E graph module; its ``quantize``/``dequantize`` nodes export to ONNX
        ``QuantizeLinear``/``DequantizeLinear``.
    """
    with quiet_third_party():
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import (
            convert_pt2e,
            prepare_pt2e,
            prepare_qat_pt2e,
        )

    check_images(calibration, model, name="calibration")
    _check_batch_size(batch_size)
    qat = train is not None
    with quiet_third_party():
        quantizer = _quantizer(qat)
    float_copy = _float_copy(model)
    with quiet_third_party():
        if qat:
            graph = _capture_for_training(float_copy, calibration)
            prepared = prepare_qat_pt2e(graph, quantizer)
        else:
            prepared = prepare_pt2e(capture(float_copy, calibration), quantizer)
    allow_exported_model_train_eval(prepared)
    if not qat:
        _mark_eval(prepared)
    prepared.eval()
    with torch.no_grad():
        for start in range(0, calibration.shape[0], batch_size):
            prepared(calibration[start : start + batch_size])
    if train is not None:
        train(prepared)
        prepared.eval()
    with quiet_third_party(), contextlib.nullcontext() if qat else _no_qat_bn_folding():
        converted = convert_pt2e(prepared)
    allow_exported_model_train_eval(converted)
    _mark_eval(converted)  # converted from an eval-mode graph
    logger.info("quantized to int8 (%s)", "QAT" if qat else "PTQ")
    return converted


@contextlib.contextmanager
def _no_qat_bn_folding() -> Iterator[None]:
    """Skip ``convert_pt2e``'s search for quantization-aware training's conv + batch norm
    patterns during a post-training conversion.

    ``convert_pt2e`` runs that search on any graph holding a batch norm: it exports about 100
    pattern graphs, 10-20 s on 2 cores. After post-training ``prepare_pt2e`` of a graph
    captured in eval mode, every conv + batch norm pair is folded already, so a batch norm
    that is left stands alone (a cell's output norm) and the search finds nothing: the
    converted graph is the same without it (a test compares them). The search is torchao's
    private ``_fold_conv_bn_qat``; without that name, it runs.
    """
    from torchao.quantization.pt2e import quantize_pt2e

    search = getattr(quantize_pt2e, "_fold_conv_bn_qat", None)
    if search is None:
        yield
        return
    quantize_pt2e._fold_conv_bn_qat = lambda graph: graph  # type: ignore[attr-defined]
    try:
        yield
    finally:
        quantize_pt2e._fold_conv_bn_qat = search  # type: ignore[attr-defined]


def _mark_eval(graph: torch.fx.GraphModule) -> None:
    """Tell torchao that ``graph`` is in eval mode already (captured in eval mode: eval batch
    norm, no dropout), so that ``graph.eval()`` does not search it for training-mode patterns,
    which takes 0.4-0.9 s a call. The flag is torchao's private attribute; without it, the
    search runs."""
    from torchao.quantization.pt2e import export_utils

    flag = getattr(export_utils, "_EXPORTED_TRAINING_ATTR", None)
    if isinstance(flag, str):
        setattr(graph, flag, False)


def _quantizer(qat: bool) -> Any:
    """torchao's x86 quantizer, with residual adds annotated for ONNX Runtime (module docstring).

    The change overrides two pattern methods of ``X86InductorQuantizer`` and uses its helpers,
    which are private: on a torchao without them, the plain x86 recipe is used.
    """
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config(is_qat=qat)
    needed = (
        "_annotate_conv_node_helper",
        "_annotate_conv2d_binary",
        "_annotate_conv2d_binary_unary",
        "_annotate_linear_node_helper",
    )
    helpers = (
        "_X86InductorQuantizationAnnotation",
        "QUANT_ANNOTATION_KEY",
        "_skip_annotate",
        "get_input_act_qspec",
        "get_output_act_qspec",
    )
    if (
        qat
        or not all(hasattr(x86.X86InductorQuantizer, n) for n in needed)
        or not all(hasattr(x86, n) for n in helpers)
    ):
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(config)
        return quantizer

    conv2d = torch.ops.aten.conv2d.default
    adds = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)

    class OnnxRuntimeQuantizer(x86.X86InductorQuantizer):
        def _annotate_linear_node_helper(
            self, linear_node: torch.fx.Node, annotate_output: bool, config: Any
        ) -> None:
            super()._annotate_linear_node_helper(linear_node, annotate_output, config)
            if config is not None and annotate_output:
                # a linear ending its pattern (the classifier): quantized output, a QGemm
                annotation = linear_node.meta[x86.QUANT_ANNOTATION_KEY]
                annotation.output_qspec = x86.get_output_act_qspec(config)

        def _annotate_conv2d_binary_unary(
            self, gm: Any, config: Any, filter_fn: Any = None
        ) -> None:
            pass  # conv -> add -> relu: the add is annotated below, the relu after it as usual

        def _annotate_conv2d_binary(self, gm: Any, config: Any, filter_fn: Any = None) -> None:
            if config is None:
                super()._annotate_conv2d_binary(gm, config, filter_fn)
                return
            for node in gm.graph.nodes:
                if node.op != "call_function" or node.target not in adds:
                    continue
                inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
                convs = [
                    a
                    for a in inputs
                    if a.op == "call_function" and a.target == conv2d and len(a.users) == 1
                ]
                # the filter wants exactly one conv/linear among the nodes it is shown
                if (
                    len(inputs) != 2
                    or not convs
                    or x86._skip_annotate([convs[0], node], filter_fn)
                ):
                    continue
                for conv in convs:
                    if x86.QUANT_ANNOTATION_KEY not in conv.meta:
                        self._annotate_conv_node_helper(conv, True, config)
                node.meta[x86.QUANT_ANNOTATION_KEY] = x86._X86InductorQuantizationAnnotation(
                    input_qspec_map={a: x86.get_input_act_qspec(config) for a in inputs},
                    _annotated=True,
                    _is_output_of_quantized_pattern=True,
                )

    quantizer = OnnxRuntimeQuantizer()
    quantizer.set_global(config)
    return quantizer


def _float_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).float().eval()


def _capture_for_training(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """A training-mode capture (batch norm kept trainable) for quantization-aware training;
    batches of one are excluded, as batch norm cannot train on them."""
    return export_program(model.train(), example, min_batch=2).module()


def quantize_onnx(
    fp32: str | Path, out: str | Path, calibration: torch.Tensor, *, batch_size: int = 64
) -> Path:
    """INT8 QDQ copy of the FP32 ONNX model ``fp32`` by ONNX Runtime's static quantizer.

    Per-channel int8 weights, uint8 activations with min/max ranges from ``calibration``
    (float images ``(N, C, H, W)`` from the training distribution), written atomically to ``out``.
    """
    with quiet_third_party():
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

    import onnx

    if not Path(fp32).is_file():
        raise NasConfigError(f"{fp32}: no such ONNX file (the FP32 model to quantize)")
    _check_batch_size(batch_size)
    graph = onnx.load(str(fp32), load_external_data=False).graph
    name = graph.input[0].name
    dims = graph.input[0].type.tensor_type.shape.dim
    takes = tuple(d.dim_value for d in dims[1:])  # (C, H, W); 0 where not fixed
    check_images(calibration, nn.Identity(), name="calibration")  # a float (N, C, H, W) batch
    if any(t and t != n for t, n in zip(takes, calibration.shape[1:], strict=False)):
        raise NasConfigError(
            f"calibration: images of shape {tuple(calibration.shape)}, but {Path(fp32).name} "
            f"takes (N, {', '.join(str(t or '?') for t in takes)}); pass images of the data the "
            "model was trained on"
        )
    images = calibration.detach().to("cpu", torch.float32).numpy()

    class Batches(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._starts = iter(range(0, len(images), batch_size))

        def get_next(self) -> dict[str, Any] | None:
            start = next(self._starts, None)
            return None if start is None else {name: images[start : start + batch_size]}

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, quiet_third_party():
        ready = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(fp32), str(ready))
        with atomic_path(out, suffix=".onnx") as target:
            quantize_static(
                str(ready),
                str(target),
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    logger.info("quantized %s to int8 with ONNX Runtime", fp32)
    return out
