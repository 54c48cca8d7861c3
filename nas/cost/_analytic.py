"""Analytic (roofline) device model: latency and energy from MACs and memory traffic.

Per layer ``l`` with ``M_l`` MACs and ``B_l`` bytes moved (input + output activations + weights
at the device's bit width)::

    latency_l = max(M_l / (peak_macs_per_s * efficiency), B_l / memory_bandwidth) + overhead
    energy_l  = M_l * e_mac(bits) + B_l * (e_sram if B_l fits in on-chip SRAM else e_dram)
    e_mac(bits) = mac_pj_at_8bit * (bits / 8) ** 2          # multiplier energy ~ bit width^2

(Horowitz, "Computing's energy problem", ISSCC 2014: 8-bit multiply 0.2 pJ, 32-bit 3.1 pJ,
32-bit DRAM read 640 pJ, 32-bit read of an 8 KB SRAM 5 pJ, all at 45 nm.) The device constants
live in ``latency_tables/<device>.yaml`` with their sources; nothing is hard-coded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas._config import Node, load_yaml
from nas.cost._base import CostEstimate
from nas.space import Layer

__all__ = ["AnalyticDevice"]

_PJ_TO_MJ = 1e-9  # 1 pJ = 1e-12 J = 1e-9 mJ


@dataclass(frozen=True)
class AnalyticDevice:
    """Roofline latency and compute + memory energy for one device (a :class:`CostModel`).

    Attributes:
        name: Device name used in metric names.
        peak_macs_per_s: Peak multiply-accumulates per second at ``bits``.
        efficiency: Fraction of the peak reached by real convolution kernels (0..1].
        memory_bandwidth_bytes_per_s: DRAM bandwidth.
        layer_overhead_ms: Fixed cost per layer (kernel launch, dispatch).
        bits: Bit width of weights and activations.
        mac_pj_at_8bit: Energy of one 8-bit MAC in picojoules.
        dram_pj_per_byte: Energy of moving one byte to or from DRAM.
        sram_pj_per_byte: Energy of moving one byte to or from on-chip SRAM.
        sram_bytes: On-chip SRAM/cache size; a layer whose working set spills pays DRAM energy.
        static_power_w: Power drawn regardless of work, charged for the latency.
        sources: Where each constant comes from.
    """

    name: str
    peak_macs_per_s: float
    efficiency: float
    memory_bandwidth_bytes_per_s: float
    layer_overhead_ms: float
    bits: int
    mac_pj_at_8bit: float
    dram_pj_per_byte: float
    sram_pj_per_byte: float
    sram_bytes: int
    static_power_w: float = 0.0
    description: str = ""
    sources: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        return self.name

    @property
    def mac_pj(self) -> float:
        """Energy of one MAC at this device's bit width (quadratic in the width)."""
        return self.mac_pj_at_8bit * (self.bits / 8) ** 2

    def layer_cost(self, layer: Layer) -> tuple[float, float]:
        """(latency_ms, energy_mj) of one layer."""
        nbytes = (layer.activation_elems + layer.params) * self.bits / 8
        compute_s = layer.macs / (self.peak_macs_per_s * self.efficiency)
        memory_s = nbytes / self.memory_bandwidth_bytes_per_s
        latency_ms = max(compute_s, memory_s) * 1e3 + self.layer_overhead_ms
        per_byte = self.sram_pj_per_byte if nbytes <= self.sram_bytes else self.dram_pj_per_byte
        energy_mj = (layer.macs * self.mac_pj + nbytes * per_byte) * _PJ_TO_MJ
        energy_mj += self.static_power_w * latency_ms  # W * ms = mJ
        return latency_ms, energy_mj

    def estimate(self, layers: Sequence[Layer]) -> CostEstimate:
        latency = energy = 0.0
        for layer in layers:
            lat, en = self.layer_cost(layer)
            latency += lat
            energy += en
        return CostEstimate(latency_ms=latency, energy_mj=energy, kind="analytic")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sources"] = list(self.sources)
        return out

    @classmethod
    def from_node(cls, node: Node) -> AnalyticDevice:
        """Read the ``analytic:`` section of a device file."""
        positive = {"min": 1e-12}
        out = cls(
            name=node.get("device").as_str(),
            peak_macs_per_s=node.get("peak_macs_per_s").as_float(**positive),
            efficiency=node.get("efficiency", 1.0).as_float(min=1e-6, max=1.0),
            memory_bandwidth_bytes_per_s=node.get("memory_bandwidth_bytes_per_s").as_float(
                **positive
            ),
            layer_overhead_ms=node.get("layer_overhead_ms", 0.0).as_float(min=0.0),
            bits=node.get("bits", 32).as_int(min=1, max=64),
            mac_pj_at_8bit=node.get("mac_pj_at_8bit").as_float(min=0.0),
            dram_pj_per_byte=node.get("dram_pj_per_byte").as_float(min=0.0),
            sram_pj_per_byte=node.get("sram_pj_per_byte").as_float(min=0.0),
            sram_bytes=node.get("sram_bytes").as_int(min=0),
            static_power_w=node.get("static_power_w", 0.0).as_float(min=0.0),
            description=node.get("description", "").value or "",
            sources=tuple(s.as_str() for s in node.get("sources", []).list(nonempty=False)),
        )
        node.get("kind")
        node.done()
        return out

    @classmethod
    def from_yaml(cls, path: str | Path) -> AnalyticDevice:
        return cls.from_node(load_yaml(path))
