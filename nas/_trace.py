"""Inputs for tracing a model of this package with ``torch.export`` (and the ONNX exporter).

Every model maps ``x`` of shape ``(N, C, H, W)`` to logits (``nas.space.Network.forward``). It is
traced on a batch of two copies of one example, since a batch of one would specialize the batch
dimension, and the batch dimension is declared dynamic. The other dimensions stay those of the
example: :func:`check_images` refuses one the model was not built for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas._errors import NasConfigError
from nas._quiet import quiet_third_party

__all__ = ["check_images", "export_program", "trace_inputs"]

_MAX_BATCH = 1 << 16


def trace_inputs(
    example: torch.Tensor, *, min_batch: int = 1
) -> tuple[tuple[torch.Tensor], dict[str, Any]]:
    """``(args, dynamic_shapes)`` for ``torch.export.export`` or ``torch.onnx.export``."""
    batch = torch.export.Dim("batch", min=min_batch, max=_MAX_BATCH)
    x = example[:1].expand(2, *example.shape[1:]).contiguous()  # (2, C, H, W)
    return (x,), {"x": {0: batch}}


def export_program(
    model: nn.Module, example: torch.Tensor, *, min_batch: int = 1
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in its current train/eval mode, batch dimension dynamic."""
    args, dynamic_shapes = trace_inputs(example, min_batch=min_batch)
    with quiet_third_party():
        return torch.export.export(model, args, dynamic_shapes=dynamic_shapes)


def check_images(images: object, model: nn.Module, *, name: str, any_size: bool = False) -> None:
    """Raise a one-line error unless ``images`` is a non-empty float ``(N, C, H, W)`` tensor with
    the channel count of ``model``'s first convolution and, unless ``any_size``, the
    ``(C, H, W)`` of a model a space built (``input_shape``): a graph traced on them holds
    their size, and the model's own inputs would then fail in it."""
    if not isinstance(images, torch.Tensor):
        kind = type(images).__module__.split(".")[0] + "." + type(images).__name__
        raise NasConfigError(
            f"{name}: expected a torch.Tensor of float images (N, C, H, W), got {kind}; convert "
            "it with torch.as_tensor(x, dtype=torch.float32)"
        )
    if images.ndim != 4 or images.shape[0] == 0 or not images.is_floating_point():
        raise NasConfigError(
            f"{name}: expected at least one float image (N, C, H, W), got shape "
            f"{tuple(images.shape)} of dtype {images.dtype}"
        )
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and images.shape[1] != first.in_channels:
        raise NasConfigError(
            f"{name}: images have {images.shape[1]} channels but the model's first convolution "
            f"takes {first.in_channels}; pass images of the data the model was trained on"
        )
    takes = getattr(model, "input_shape", None)  # (a model a space built)
    if takes is not None and not any_size and tuple(images.shape[1:]) != tuple(takes):
        # it runs on other sizes (global pooling), but a traced graph holds the size it saw
        raise NasConfigError(
            f"{name}: images are {'x'.join(map(str, images.shape[1:]))} but the model takes "
            f"{'x'.join(map(str, takes))} (its space's input); pass images of the data the "
            "model was trained on, at that size"
        )
