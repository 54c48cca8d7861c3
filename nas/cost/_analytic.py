"""Analytic (roofline) device model: latency and energy from MACs and memory traffic.

Per layer ``l`` with ``M_l`` MACs and ``B_l`` bytes moved (input + output activations + weights
at the device's bit width, plus, for a block such as an MBConv, its inner tensors written and
read back once each: the device runs the block's convolutions one after another)::

    latency_l = max(M_l / (peak_macs_per_s * efficiency), B_l / memory_bandwidth) + overhead
    energy_l  = M_l * e_mac(bits) + B_l * (e_sram if B_l fits in on-chip SRAM else e_dram)
    e_mac(bits) = mac_pj_at_8bit * (bits / 8) ** 2          # multiplier energy ~ bit width^2

(Horowitz, "Computing's energy problem", ISSCC 2014: 8-bit multiply 0.2 pJ, 32-bit 3.1 pJ,
32-bit DRAM read 640 pJ, 32-bit read of an 8 KB SRAM 5 pJ, all at 45 nm.) The device constants
live in ``latency_tables/<device>.yaml`` with their sources; nothing is hard-coded here.

Accelerators (NPUs, dataflow ASICs) need a few more facts, all optional keys of the device file
whose defaults reproduce the plain roofline above:

* ``macs_per_cycle`` and ``clock_hz`` instead of ``peak_macs_per_s`` (their product).
* ``depthwise_efficiency``: fraction of the peak reached by depthwise convolutions (and by
  pooling on the MAC array), which have no input-channel reduction to fill the array
  (Ethos-U55: 1/8 of the dense rate in Arm's Vela performance model).
* ``array_input_channels`` / ``array_output_channels``: the channel granularity of the MAC array;
  a dense layer with ``C`` input channels uses ``C / roundup(C, array_input_channels)`` of it.
* ``pool_on_mac_array``: ``none`` (pooling costs only its memory traffic: CPU/GPU vector units),
  ``depthwise`` (a kxk pool runs on the MAC array like a depthwise kxk conv, k^2 MACs per output)
  or ``dense`` (lowered to a dense kxk convolution with C x C x k x k constant weights, on an
  engine whose dataflow supports only dense convolution).
* ``free_identity``: identity and zero edges are aliased or removed by the graph compiler and
  cost nothing.
* ``spill: partial`` with ``sram_bandwidth_bytes_per_s`` and ``weights_on_chip``: the on-chip
  SRAM holds what fits and only the overflow goes off chip::

      W_res = min(W_model, sram) if weights_on_chip else 0      # weights pinned across runs
      budget = sram - W_res                                      # left for activations
      off_l = W_l * (1 - W_res / W_model) + max(0, A_l - budget) # bytes over the off-chip bus
      on_l  = W_l * W_res / W_model + min(A_l, budget)
      latency_l = max(compute_l, off_l / memory_bandwidth, on_l / sram_bandwidth) + overhead
      energy_l  = MACs_l * e_mac + off_l * e_dram + on_l * e_sram

  The default, ``spill: all``, charges every byte of a layer at DRAM bandwidth and all of them
  at DRAM energy once the layer's working set exceeds ``sram_bytes`` (a cache that thrashes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nas._config import Node, load_yaml
from nas._errors import NasConfigError
from nas.cost._base import CostEstimate
from nas.space import Layer

__all__ = ["AnalyticDevice"]

log = logging.getLogger(__name__)

_PJ_TO_MJ = 1e-9  # 1 pJ = 1e-12 J = 1e-9 mJ
POOL_MODES = ("none", "depthwise", "dense")
SPILL_MODES = ("all", "partial")


@dataclass(frozen=True)
class _Work:
    """A layer's work split by how the MAC array executes it."""

    dense_macs: float  # convolutions and linear layers with an input-channel reduction
    depthwise_macs: float  # depthwise convs and pooling windows run on the MAC array
    weight_elems: float  # parameters plus weights a lowering adds (dense-lowered pooling)


def _split_work(layer: Layer, pool_mode: str) -> _Work:
    """Dense and depthwise MACs of ``layer`` from its op and shapes.

    They add up to ``layer.macs`` except for pooling run on the MAC array, whose window
    operations (``depthwise``) or lowered dense convolution (``dense``) are added.
    """
    op = layer.op
    cin = layer.in_shape[0]
    cout, hout, wout = layer.out_shape
    k = op.kernel or 1
    depthwise = 0
    if op.type == "mbconv":
        depthwise = cin * (op.expansion or 1) * k * k * hout * wout
    elif op.type == "dwsep":
        depthwise = cin * k * k * hout * wout
    elif op.type == "conv" and (op.groups or 1) > 1 and op.groups == cin == cout:
        depthwise = layer.macs
    elif op.type in ("avgpool", "maxpool"):
        window = cout * k * k * hout * wout  # (C, H, W) outputs x k^2 window elements
        if pool_mode == "depthwise":
            return _Work(layer.macs, window, layer.params)
        if pool_mode == "dense":
            return _Work(layer.macs + window * cout, 0, layer.params + cout * cout * k * k)
        return _Work(layer.macs, 0, layer.params)
    depthwise = min(depthwise, layer.macs)
    return _Work(layer.macs - depthwise, depthwise, layer.params)


def _is_identity(layer: Layer) -> bool:
    """A zero edge, or a skip that keeps shape: no work a compiled graph would run."""
    if layer.op.type == "zero":
        return True
    return layer.op.type == "skip" and layer.in_shape == layer.out_shape and layer.stride == 1


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class AnalyticDevice:
    """Roofline latency and compute + memory energy for one device (a :class:`CostModel`).

    Attributes:
        name: Device name used in metric names.
        peak_macs_per_s: Peak multiply-accumulates per second at ``bits``.
        efficiency: Fraction of the peak reached by real convolution kernels (0..1].
        memory_bandwidth_bytes_per_s: DRAM (off-chip) bandwidth.
        layer_overhead_ms: Fixed cost per layer (kernel launch, dispatch).
        bits: Bit width of weights and activations.
        mac_pj_at_8bit: Energy of one 8-bit MAC in picojoules.
        dram_pj_per_byte: Energy of moving one byte to or from DRAM.
        sram_pj_per_byte: Energy of moving one byte to or from on-chip SRAM.
        sram_bytes: On-chip SRAM/cache size; a layer whose working set spills pays DRAM energy.
        static_power_w: Power drawn regardless of work, charged for the latency.
        depthwise_efficiency: Fraction of the peak reached by depthwise work; None: as dense.
        array_input_channels: Input-channel granularity of the MAC array (1: none).
        array_output_channels: Output-channel granularity of the MAC array (1: none).
        pool_on_mac_array: How pooling executes: ``none``, ``depthwise`` or ``dense``.
        free_identity: Identity and zero edges cost nothing (aliased by the compiler).
        spill: ``all`` (a spilling layer pays DRAM for every byte) or ``partial`` (only the
            part of the working set that does not fit in SRAM goes off chip).
        sram_bandwidth_bytes_per_s: On-chip bandwidth under ``spill: partial``; None: unlimited.
        weights_on_chip: The model's weights stay pinned in SRAM across inferences (as far as
            they fit) instead of streaming from off-chip memory each run.
        description: One line about the device.
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
    depthwise_efficiency: float | None = None
    array_input_channels: int = 1
    array_output_channels: int = 1
    pool_on_mac_array: str = "none"
    free_identity: bool = False
    spill: str = "all"
    sram_bandwidth_bytes_per_s: float | None = None
    weights_on_chip: bool = False
    description: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("pool_on_mac_array", self.pool_on_mac_array, POOL_MODES),
            ("spill", self.spill, SPILL_MODES),
        ):
            if value not in allowed:
                raise NasConfigError(
                    f"device '{self.name}': unknown {key} {value!r}", allowed=allowed, value=value
                )
        if self.weights_on_chip and self.spill != "partial":
            raise NasConfigError(
                f"device '{self.name}': weights_on_chip needs spill: partial (got spill: "
                f"{self.spill}); pinned weights only make sense when SRAM is split by use"
            )

    @property
    def device(self) -> str:
        return self.name

    @property
    def additive(self) -> bool:
        """Whether a model's estimate is the sum of its layers' (see
        :func:`nas.cost.is_additive`): not when the weights share the SRAM across the model
        (``weights_on_chip``), since how much of each layer's stays resident depends on all."""
        return not self.weights_on_chip

    @property
    def mac_pj(self) -> float:
        """Energy of one MAC at this device's bit width (quadratic in the width)."""
        return self.mac_pj_at_8bit * (self.bits / 8) ** 2

    def _utilization(self, layer: Layer) -> float:
        """Fraction of the MAC array a dense layer fills, from its channel counts.

        A block (MBConv) is judged by its input and output widths, not its hidden width.
        """
        cin, cout = layer.in_shape[0], layer.out_shape[0]
        return (cin / _round_up(cin, self.array_input_channels)) * (
            cout / _round_up(cout, self.array_output_channels)
        )

    def _residency(self, layers: Sequence[Layer]) -> tuple[float, float]:
        """(fraction of each layer's weights read on chip, SRAM bytes left for activations)."""
        if not self.weights_on_chip:
            return 0.0, float(self.sram_bytes)
        nbits = self.bits / 8
        total = sum(_split_work(lay, self.pool_on_mac_array).weight_elems for lay in layers)
        total *= nbits
        if total <= 0:
            return 1.0, float(self.sram_bytes)
        resident = min(total, float(self.sram_bytes))
        return resident / total, self.sram_bytes - resident

    def layer_cost(
        self,
        layer: Layer,
        *,
        resident_fraction: float | None = None,
        activation_budget_bytes: float | None = None,
    ) -> tuple[float, float]:
        """(latency_ms, energy_mj) of one layer.

        ``resident_fraction`` and ``activation_budget_bytes`` describe how the SRAM is shared
        by the whole model (see :meth:`estimate`); by default the layer is costed as a model of
        its own.
        """
        if resident_fraction is None or activation_budget_bytes is None:
            resident_fraction, activation_budget_bytes = self._residency([layer])
        if self.free_identity and _is_identity(layer):
            return 0.0, 0.0
        nbits = self.bits / 8
        work = _split_work(layer, self.pool_on_mac_array)
        rate = self.peak_macs_per_s * self.efficiency
        dw_rate = self.peak_macs_per_s * (
            self.efficiency if self.depthwise_efficiency is None else self.depthwise_efficiency
        )
        compute_s = 0.0
        if work.dense_macs:
            compute_s += work.dense_macs / (rate * self._utilization(layer))
        if work.depthwise_macs:
            compute_s += work.depthwise_macs / dw_rate
        weight_bytes = work.weight_elems * nbits
        # a block's inner tensors (an MBConv's expanded and depthwise outputs) are written by one
        # of its convolutions and read by the next: they cross the memory hierarchy twice
        act_bytes = (layer.activation_elems + 2 * layer.hidden_elems) * nbits
        if self.spill == "all":
            nbytes = act_bytes + weight_bytes
            memory_s = nbytes / self.memory_bandwidth_bytes_per_s
            per_byte = (
                self.sram_pj_per_byte if nbytes <= self.sram_bytes else self.dram_pj_per_byte
            )
            memory_pj = nbytes * per_byte
        else:
            act_off = max(0.0, act_bytes - activation_budget_bytes)
            off_chip = weight_bytes * (1.0 - resident_fraction) + act_off
            on_chip = weight_bytes * resident_fraction + act_bytes - act_off
            memory_s = off_chip / self.memory_bandwidth_bytes_per_s
            if self.sram_bandwidth_bytes_per_s is not None:
                memory_s = max(memory_s, on_chip / self.sram_bandwidth_bytes_per_s)
            memory_pj = off_chip * self.dram_pj_per_byte + on_chip * self.sram_pj_per_byte
        latency_ms = max(compute_s, memory_s) * 1e3 + self.layer_overhead_ms
        macs = work.dense_macs + work.depthwise_macs
        energy_mj = (macs * self.mac_pj + memory_pj) * _PJ_TO_MJ
        energy_mj += self.static_power_w * latency_ms  # W * ms = mJ
        return latency_ms, energy_mj

    def estimate(self, layers: Sequence[Layer]) -> CostEstimate:
        resident, budget = self._residency(layers)
        latency = energy = 0.0
        for layer in layers:
            lat, en = self.layer_cost(
                layer, resident_fraction=resident, activation_budget_bytes=budget
            )
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
        positive = {"gt": 0}
        per_cycle = [key for key in ("macs_per_cycle", "clock_hz") if node.has(key)]
        if per_cycle and node.has("peak_macs_per_s"):
            raise node.get(per_cycle[0]).error(
                "give either peak_macs_per_s or macs_per_cycle with clock_hz, not both"
            )
        if per_cycle:  # e.g. 168 PEs x 200 MHz
            peak = node.get("macs_per_cycle").as_float(**positive)
            peak *= node.get("clock_hz").as_float(**positive)
        else:
            peak = node.get("peak_macs_per_s").as_float(**positive)
        dw = node.get("depthwise_efficiency", None)
        sram_bw = node.get("sram_bandwidth_bytes_per_s", None)
        if not node.has("bits"):
            raise node.error(
                "missing required key 'bits': the width the device computes at (8 for an int8 "
                "NPU, 16, 32 for fp32); it sets bytes moved per value and scales the energy "
                "per MAC by (bits/8)^2"
            )
        _check_scale(node)
        _check_energy(node)
        try:
            out = cls(
                name=node.get("device").as_str(),
                peak_macs_per_s=peak,
                efficiency=node.get("efficiency", 1.0).as_float(gt=0, max=1.0),
                memory_bandwidth_bytes_per_s=node.get("memory_bandwidth_bytes_per_s").as_float(
                    **positive
                ),
                layer_overhead_ms=node.get("layer_overhead_ms", 0.0).as_float(min=0.0),
                bits=node.get("bits").as_int(min=1, max=64),
                mac_pj_at_8bit=node.get("mac_pj_at_8bit").as_float(gt=0.0),
                dram_pj_per_byte=node.get("dram_pj_per_byte").as_float(gt=0.0),
                sram_pj_per_byte=node.get("sram_pj_per_byte").as_float(gt=0.0),
                sram_bytes=node.get("sram_bytes").as_int(min=0),
                static_power_w=node.get("static_power_w", 0.0).as_float(min=0.0),
                depthwise_efficiency=None if dw.value is None else dw.as_float(gt=0, max=1.0),
                array_input_channels=node.get("array_input_channels", 1).as_int(min=1),
                array_output_channels=node.get("array_output_channels", 1).as_int(min=1),
                pool_on_mac_array=node.get("pool_on_mac_array", "none").as_choice(POOL_MODES),
                free_identity=node.get("free_identity", False).as_bool(),
                spill=node.get("spill", "all").as_choice(SPILL_MODES),
                sram_bandwidth_bytes_per_s=None
                if sram_bw.value is None
                else sram_bw.as_float(**positive),
                weights_on_chip=node.get("weights_on_chip", False).as_bool(),
                description=node.get("description", "").value or "",
                sources=tuple(s.as_str() for s in node.get("sources", []).list(nonempty=False)),
            )
        except NasConfigError as exc:
            if exc.file is not None:
                raise
            raise node.error(exc.reason) from None
        node.get("kind")
        node.done()
        return out

    @classmethod
    def from_yaml(cls, path: str | Path) -> AnalyticDevice:
        return cls.from_node(load_yaml(path))


#: (key, test of a value no device from a microcontroller NPU up has, what such a value most
#: likely is): possible, so warned of, not refused
_UNLIKELY: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    (
        "layer_overhead_ms",
        lambda v: v >= 1.0,
        "ms per layer is implausibly large (edge accelerators pay microseconds): written in "
        "microseconds? 5 us is 0.005",
    ),
    (
        "sram_bytes",
        lambda v: 0 < v < 4096,
        "bytes of on-chip memory is smaller than any NPU's (MCU-class: 32 KB and up): written "
        "in KB? 512 KB is 524288",
    ),
    (
        "mac_pj_at_8bit",
        lambda v: 0 < v < 1e-3,
        "pJ per 8-bit MAC is below any silicon (0.01-1 pJ): written in nJ? 0.2 pJ is 0.2",
    ),
    (
        "bits",
        lambda v: v > 32,
        "bits is wider than any accelerator computes (8 for int8, 16, 32 for fp32); the "
        "energy per MAC scales with (bits/8)^2",
    ),
)
_PLAUSIBLE_MIN = {
    "memory_bandwidth_bytes_per_s": (1e6, "GB/s or MB/s? the key is in bytes per second (2e9)"),
    "sram_bandwidth_bytes_per_s": (1e6, "GB/s or MB/s? the key is in bytes per second (2e9)"),
    "peak_macs_per_s": (1e6, "GMAC/s or TOPS? the key is in MACs per second (2e12)"),
    "clock_hz": (1e5, "MHz or GHz? the key is in hertz (1e9)"),
}


#: the energy constants every profile needs, and a typical figure of each (Horowitz, ISSCC 2014,
#: 45 nm: 0.2 pJ per 8-bit multiply, 10-100 pJ per 64-bit read of 8 KB-1 MB SRAM, 1.3-2.6 nJ
#: per 64-bit DRAM access)
_ENERGY_KEYS = {
    "mac_pj_at_8bit": "0.2 pJ",
    "sram_pj_per_byte": "1.25-12.5 pJ",
    "dram_pj_per_byte": "160-320 pJ",
}


def _check_energy(node: Node) -> None:
    """Refuse an energy constant of 0 (every architecture's energy from it would be free, and
    ``energy_mj@DEVICE`` a column of zeros nobody asked for); warn of DRAM cheaper per byte than
    on-chip SRAM (one of the two in the wrong unit)."""
    for key, typical in _ENERGY_KEYS.items():
        if node.has(key) and node.get(key).value == 0:
            raise node.get(key).error(
                f"0 makes that energy free, and every architecture's energy_mj then leaves it "
                f"out; give the device's figure (typically {typical}, Horowitz ISSCC 2014)"
            )
    dram, sram = (
        node.get(k).value if node.has(k) else None
        for k in ("dram_pj_per_byte", "sram_pj_per_byte")
    )
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (dram, sram))
    if numbers and 0 < dram < sram:  # type: ignore[operator]
        where = node.get("dram_pj_per_byte")
        log.warning(
            "%s:%s: dram_pj_per_byte %g is below sram_pj_per_byte %g: a byte from DRAM costs "
            "10-100x one from on-chip SRAM; is one of them in another unit?",
            where.file,
            where.line,
            dram,
            sram,
        )


def _check_scale(node: Node) -> None:
    """Refuse a rate in the wrong unit (bandwidth in GB/s, peak in TOPS, clock in MHz: every
    prediction off by a factor of a million or more, below any real device); warn of sizes and
    energies that are possible but far more likely another unit (SRAM in KB, overhead in
    microseconds, pJ per MAC in nJ)."""
    for key, (low, meant) in _PLAUSIBLE_MIN.items():
        if not node.has(key):
            continue
        value = node.get(key).value
        if isinstance(value, (int, float)) and 0 < value < low:
            raise node.get(key).error(
                f"{value:g} is below any real device (at least {low:g}): written in {meant}"
            )
    for key in ("efficiency", "depthwise_efficiency"):
        value = node.get(key).value if node.has(key) else None
        if isinstance(value, (int, float)) and 1 < value <= 100:
            raise node.get(key).error(
                f"{value:g} is a percentage? the key is a fraction of the peak, at most 1 "
                f"({value / 100:g} for {value:g}%)"
            )
    for key, test, said in _UNLIKELY:
        value = node.get(key).value if node.has(key) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and test(value):
            where = node.get(key)
            log.warning("%s:%s: %s: %g %s", where.file, where.line, key, value, said)
