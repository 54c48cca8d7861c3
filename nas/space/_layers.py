"""Per-layer view of an architecture: what cost models and ``describe`` read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nas.space._ops import OpSpec, profile_layer

__all__ = ["Layer", "LayerTable"]

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Layer:
    """One layer of a built architecture, with its shapes and its counted size and work.

    Attributes:
        name: Position in the model (``stages.2.1``, ``cells.4.2<-0``).
        label: The op's name in the search space (``nor_conv_3x3``, ``k5_e6``).
        op: The parsed op.
        in_shape: Input ``(C, H, W)`` at batch 1.
        out_shape: Output ``(C, H, W)`` at batch 1.
        stride: Spatial stride of the layer.
        params: Parameter count.
        macs: Multiply-accumulates at batch 1 (convolutions and linear layers).
        hidden_elems: Activation elements produced inside the layer and consumed inside it
            (an MBConv's expanded and depthwise outputs; see ``LayerProfile``), at batch 1.
        peak_elems: Most activation elements alive at once while the layer runs, at batch 1
            (see ``LayerProfile``); 0 means its input plus output.
    """

    name: str
    label: str
    op: OpSpec
    in_shape: Shape
    out_shape: Shape
    stride: int
    params: int
    macs: int
    hidden_elems: int = 0
    peak_elems: int = 0

    @classmethod
    def profiled(
        cls, name: str, label: str, op: OpSpec, in_shape: Shape, stride: int, cout: int
    ) -> Layer:
        """The layer ``op`` makes of a ``(C, H, W)`` input, counted by :func:`profile_layer`."""
        prof = profile_layer(op, in_shape, cout, stride)
        return cls(
            name,
            label,
            op,
            in_shape,
            prof.out_shape,
            stride,
            prof.params,
            prof.macs,
            prof.hidden_elems,
            prof.peak_elems,
        )

    @property
    def signature(self) -> str:
        """Canonical key of this layer's work, independent of where it sits in the model.

        ``{op}-in:{C}x{H}x{W}-out:{C}x{H}x{W}-s{stride}``, the key lookup tables use.
        """
        cin, hin, win = self.in_shape
        cout, hout, wout = self.out_shape
        return f"{self.op.name}-in:{cin}x{hin}x{win}-out:{cout}x{hout}x{wout}-s{self.stride}"

    @property
    def activation_elems(self) -> int:
        """Input plus output activation elements at batch 1."""
        return math.prod(self.in_shape) + math.prod(self.out_shape)

    @property
    def live_elems(self) -> int:
        """Most activation elements alive at once while the layer runs, at batch 1: its input
        and output, more inside a block (an MBConv's expanded tensors)."""
        return max(self.activation_elems, self.peak_elems)


@dataclass(frozen=True)
class LayerTable:
    """The layers of one architecture with totals; ``str()`` renders an aligned table."""

    arch_id: str
    string: str
    layers: tuple[Layer, ...]
    peak_activation_elems: int

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def peak_mem_bytes(self) -> int:
        """fp32 weights plus the largest set of activations alive at once, at batch 1."""
        return 4 * (self.params + self.peak_activation_elems)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": layer.name,
                "op": layer.label,
                "in_shape": "x".join(map(str, layer.in_shape)),
                "out_shape": "x".join(map(str, layer.out_shape)),
                "stride": layer.stride,
                "params": layer.params,
                "macs": layer.macs,
            }
            for layer in self.layers
        ]

    def to_frame(self) -> Any:
        """The rows as a :class:`pandas.DataFrame`."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def __str__(self) -> str:
        rows = self.rows()
        cols = ["layer", "op", "in_shape", "out_shape", "stride", "params", "macs"]
        cells = [
            [str(r[c]) if c not in ("params", "macs") else f"{r[c]:,}" for c in cols] for r in rows
        ]
        total = ["total", "", "", "", "", f"{self.params:,}", f"{self.macs:,}"]
        widths = [
            max(len(c), *(len(row[i]) for row in cells + [total])) for i, c in enumerate(cols)
        ]
        numeric = {"stride", "params", "macs"}

        def fmt(row: list[str]) -> str:
            return "  ".join(
                v.rjust(w) if c in numeric else v.ljust(w)
                for v, w, c in zip(row, widths, cols, strict=True)
            ).rstrip()

        lines = [f"architecture {self.arch_id}: {self.string}", fmt(cols)]
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(row) for row in cells]
        lines.append("  ".join("-" * w for w in widths))
        lines.append(fmt(total))
        lines.append(
            f"peak memory (fp32 weights + live activations, batch 1): "
            f"{self.peak_mem_bytes:,} bytes"
        )
        return "\n".join(lines)
