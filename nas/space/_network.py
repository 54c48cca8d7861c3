"""The model every space builds: stem -> body -> head -> global pool -> dropout -> classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Network"]


class Network(nn.Module):
    """stem -> body (stages, or cells and reduction blocks) -> head -> pool -> classifier.

    Maps ``(N, C, H, W)`` images to ``(N, num_classes)`` logits; ``input_shape`` is the
    ``(C, H, W)`` of its space (set by :meth:`nas.space.SearchSpace.build`): it runs on other
    sizes too (global pooling), but a graph traced, quantized or exported holds that one.
    """

    input_shape: tuple[int, ...] | None = None

    def __init__(
        self,
        stem: nn.Module,
        body: Sequence[nn.Module],
        head: nn.Module,
        width: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.body = nn.Sequential(*body)
        self.head = head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.head(self.body(self.stem(x)))
        return self.classifier(self.dropout(self.pool(x).flatten(1)))
