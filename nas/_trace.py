"""Inputs for tracing a model of this package with ``torch.export`` (and the ONNX exporter).

Every model maps ``x`` of shape ``(N, C, H, W)`` to logits (``nas.space.Network.forward``). It is
traced on a batch of two copies of one example, since a batch of one would specialize the batch
dimension, and the batch dimension is declared dynamic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas._quiet import quiet_third_party

__all__ = ["export_program", "trace_inputs"]

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
