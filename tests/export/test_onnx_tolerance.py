"""The float export check scales with the logits: float32 rounding errs in proportion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.export._onnx import export_onnx


class _Loud(nn.Module):
    """A correct model whose logits are ~1e7 (a diverged fine-tune's), so ONNX Runtime's
    float32 arithmetic differs from PyTorch's by far more than 1e-4 in absolute terms."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1)) * 3e6 + 1e7


def test_large_logits_are_checked_relative_to_their_magnitude(tmp_path):
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    report = export_onnx(_Loud(), x, tmp_path / "m.onnx")
    assert report["max_abs_diff"] > 1e-4  # absolute 1e-4 would have called this export wrong
    assert report["argmax_agreement"] == 1.0


def test_an_explicit_absolute_tolerance_still_applies(tmp_path):
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError, match=r"outputs differ from PyTorch's by .* \(> 1.00e-04\)"):
        export_onnx(_Loud(), x, tmp_path / "m.onnx", atol=1e-4)
