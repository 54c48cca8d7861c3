"""The ``compress:`` section of an experiment: which compressions run after fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas._config import Node, check_field_types
from nas._errors import NasConfigError
from nas.compress._measure import LatencyConfig
from nas.compress._quantize import QuantizeConfig

__all__ = ["CompressConfig", "PruneConfig"]


def _fraction(node: Node, off: str) -> float:
    """A fraction strictly between 0 and 1; ``off`` says how to switch the technique off
    instead (0 would build a copy of the model that is compressed in name only)."""
    try:
        return node.as_float(gt=0.0, lt=1.0)
    except NasConfigError as exc:
        raise node.error(f"{exc.reason} ({off})") from None


@dataclass(frozen=True)
class PruneConfig:
    """Structured (channel) pruning.

    Args:
        ratio: Fraction of prunable channels asked to be removed, in (0, 1); what is removed
            depends on ``round_to`` too (a group narrower than it is left whole).
        round_to: Channel counts are kept multiples of this (SIMD width: 8 fp32 lanes of
            AVX2, 16 of AVX-512), >= 1.
        epochs: Fine-tuning epochs that recover accuracy after pruning, >= 0.
    """

    ratio: float = 0.3
    round_to: int = 8
    epochs: int = 10

    def __post_init__(self) -> None:
        check_field_types(self)
        if not 0.0 < self.ratio < 1.0 or self.round_to < 1 or self.epochs < 0:
            raise NasConfigError(
                "`0 < ratio < 1`, `round_to >= 1` and `epochs >= 0` must hold, but got "
                f"ratio={self.ratio}, round_to={self.round_to}, epochs={self.epochs}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "round_to": self.round_to, "epochs": self.epochs}


@dataclass(frozen=True)
class CompressConfig:
    """Compressions applied to every fine-tuned model, each variant measured.

    Args:
        prune: Structured pruning (a smaller dense model), or None.
        sparsity: Unstructured magnitude sparsity of conv/linear weights in (0, 1), for size;
            None for none.
        sparse_epochs: Epochs of the fine-tune under the sparsity mask; None for a third of
            the fine-tune's epochs (at least 1).
        quantize: INT8 quantization of the float model (and of the pruned one), or None.
        latency: How end-to-end latency is timed.

    Example:
        >>> CompressConfig().prune.ratio
        0.3
    """

    prune: PruneConfig | None = PruneConfig()
    sparsity: float | None = 0.5
    quantize: QuantizeConfig | None = QuantizeConfig()
    latency: LatencyConfig = LatencyConfig()
    sparse_epochs: int | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise NasConfigError(f"`0 < sparsity < 1` must hold, but got {self.sparsity}")
        if self.sparse_epochs is not None and self.sparse_epochs < 1:
            raise NasConfigError(f"`sparse_epochs >= 1` must hold, but got {self.sparse_epochs}")

    def sparse_epochs_for(self, finetune_epochs: int) -> int:
        """The epochs of the fine-tune under the sparsity mask, for a fine-tune of
        ``finetune_epochs``."""
        return self.sparse_epochs or max(1, finetune_epochs // 3)

    @classmethod
    def from_node(cls, node: Node) -> CompressConfig:
        """Read a ``compress:`` mapping; ``prune: null`` (etc.) switches a technique off."""

        def section(key: str) -> Node | None:
            child = node.get(key, {})
            return None if child.value is None or child.value is False else child

        prune_node = section("prune")
        prune = None
        if prune_node is not None:
            prune = PruneConfig(
                ratio=_fraction(prune_node.get("ratio", 0.3), "prune: null turns pruning off"),
                round_to=prune_node.get("round_to", 8).as_int(min=1),
                epochs=prune_node.get("epochs", 10).as_int(min=0),
            )
            prune_node.done()
        sparsity_node = node.get("sparsity", 0.5)
        sparsity = (
            None
            if sparsity_node.value is None
            else _fraction(sparsity_node, "sparsity: null turns it off")
        )
        epochs_node = node.get("sparse_epochs", None)
        sparse_epochs = None if epochs_node.value is None else epochs_node.as_int(min=1)
        quantize_node = section("quantize")
        quantize = None if quantize_node is None else QuantizeConfig.from_node(quantize_node)
        latency_node = node.get("latency", {})
        latency = LatencyConfig(
            threads=latency_node.get("threads", 1).as_int(min=1),
            warmup=latency_node.get("warmup", 50).as_int(min=0),
            repeats=latency_node.get("repeats", 600).as_int(min=1),
            rounds=latency_node.get("rounds", 6).as_int(min=1),
            spin_up_s=latency_node.get("spin_up_s", 1.0).as_float(min=0.0),
        )
        latency_node.done()
        config = cls(
            prune=prune,
            sparsity=sparsity,
            quantize=quantize,
            latency=latency,
            sparse_epochs=sparse_epochs,
        )
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "prune": None if self.prune is None else self.prune.to_dict(),
            "sparsity": self.sparsity,
            "quantize": None if self.quantize is None else self.quantize.to_dict(),
            "latency": self.latency.to_dict(),
            # (only when set: the settings of runs made before the key stay as they were)
            **({} if self.sparse_epochs is None else {"sparse_epochs": self.sparse_epochs}),
        }
