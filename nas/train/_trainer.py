"""Seeded, short training runs that score a candidate architecture on a validation split.

:func:`train_and_evaluate` trains a model in place with cross-entropy and a per-step cosine
learning-rate schedule, then measures validation accuracy. It is deterministic for a given model
initialization, data and :class:`TrainConfig` (on the same machine and thread count), and it never
raises on divergence: a NaN or infinite loss ends the run with ``diverged=True`` so that a search
can record the trial as failed and move on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas._config import Node, check_field_types
from nas._errors import NasConfigError
from nas._timing import fixed_threads
from nas.train._data import SplitData

__all__ = ["OPTIMIZERS", "TrainConfig", "TrainResult", "train_and_evaluate"]

logger = logging.getLogger(__name__)

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
_SGD_MOMENTUM = 0.9  # Nesterov momentum, the usual CNN default (Sutskever et al., 2013)
_EVAL_BATCH = 1024  # evaluation keeps no activations for backward, so batches can be larger


@dataclass(frozen=True)
class TrainConfig:
    """How to train one candidate.

    Args:
        epochs: Passes over the train split, >= 1.
        batch_size: Examples per optimizer step, >= 1.
        lr: Peak learning rate, > 0; decays to 0 on a cosine over all steps.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        weight_decay: L2 penalty (decoupled for ``adamw``), >= 0.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        seed: Seed of batch shuffling and of any randomness inside the model (dropout).
        threads: Torch intra-op threads during the call (restored afterwards); None keeps the
            current setting.
        max_seconds: Stop training once this much wall time has passed (the result says
            ``stopped_early``); None for no limit. A time limit makes runs non-deterministic.

    Example:
        >>> TrainConfig(epochs=3, optimizer="sgd").lr
        0.01
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        checks = (
            (self.epochs >= 1, "epochs >= 1", f"epochs={self.epochs}"),
            (self.batch_size >= 1, "batch_size >= 1", f"batch_size={self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, "lr > 0", f"lr={self.lr}"),
            (self.weight_decay >= 0, "weight_decay >= 0", f"weight_decay={self.weight_decay}"),
            (
                0 <= self.label_smoothing < 1,
                "0 <= label_smoothing < 1",
                f"label_smoothing={self.label_smoothing}",
            ),
            (self.threads is None or self.threads >= 1, "threads >= 1", f"threads={self.threads}"),
            (
                self.max_seconds is None or self.max_seconds > 0,
                "max_seconds > 0",
                f"max_seconds={self.max_seconds}",
            ),
        )
        for ok, rule, got in checks:
            if not ok:
                raise NasConfigError(f"`{rule}` must hold, but got {got}")
        if self.optimizer not in OPTIMIZERS:
            raise NasConfigError(
                f"unknown optimizer {self.optimizer!r}", allowed=OPTIMIZERS, value=self.optimizer
            )

    @classmethod
    def from_node(cls, node: Node) -> TrainConfig:
        """Read a ``train:`` mapping; every key is optional and unknown keys are rejected.

        Keys: ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``weight_decay``,
        ``label_smoothing``, ``seed``, ``threads``, ``max_seconds``. Numbers may be written
        ``1e-3``: PyYAML reads that (YAML 1.1) as a string, so such strings are accepted here.
        """
        threads = node.get("threads", None)
        max_seconds = node.get("max_seconds", None)
        config = cls(
            epochs=node.get("epochs", 5).as_int(min=1),
            batch_size=node.get("batch_size", 64).as_int(min=1),
            lr=node.get("lr", 0.01).as_float(gt=0.0),
            optimizer=node.get("optimizer", "adam").as_choice(OPTIMIZERS),
            weight_decay=node.get("weight_decay", 0.0).as_float(min=0.0),
            label_smoothing=node.get("label_smoothing", 0.0).as_float(min=0.0, lt=1.0),
            seed=node.get("seed", 0).as_int(min=0),
            threads=None if threads.value is None else threads.as_int(min=1),
            max_seconds=None if max_seconds.value is None else max_seconds.as_float(gt=0.0),
        )
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config written by :meth:`to_dict`."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise NasConfigError(f"unknown key '{key}'", allowed=names, value=key)
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one :func:`train_and_evaluate` call.

    Args:
        val_accuracy: Top-1 accuracy on the validation split, a fraction in [0, 1]; NaN when
            the run diverged.
        val_loss: Mean cross-entropy (without label smoothing) on the validation split.
        train_loss: Mean training loss of the last epoch that ran (the non-finite value that
            stopped the run when it diverged).
        epochs_run: Epochs that ran, the last one possibly partial (divergence or time limit).
        train_seconds: Wall time of the training loop, without the final evaluation.
        diverged: The loss became NaN or infinite.
        stopped_early: Training stopped at ``max_seconds`` before all epochs ran.
    """

    val_accuracy: float
    val_loss: float
    train_loss: float
    epochs_run: int
    train_seconds: float
    diverged: bool
    stopped_early: bool

    def __post_init__(self) -> None:
        if not (math.isnan(self.val_accuracy) or 0.0 <= self.val_accuracy <= 1.0):
            raise ValueError(f"`0 <= val_accuracy <= 1` must hold, but got {self.val_accuracy=}")
        if math.isnan(self.val_accuracy) and not self.diverged:
            raise ValueError("val_accuracy may be NaN only when diverged is True")
        if self.epochs_run < 0 or self.train_seconds < 0:
            raise ValueError(
                f"`epochs_run >= 0` and `train_seconds >= 0` must hold, but got "
                f"{self.epochs_run=}, {self.train_seconds=}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (NaN stays ``float('nan')``); :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        """Rebuild a result written by :meth:`to_dict`."""
        return cls(**data)


def check_training_args(
    model: object, data: object, config: object, expected: type, *, function: str
) -> None:
    """Refuse arguments that would fail deep in torch: a model that is no module, data that
    is no :class:`SplitData`, another function's config, or a model whose first convolution
    takes another channel count (or whose space another input shape) than the data has."""
    from nas._trace import check_images

    if not isinstance(model, nn.Module):
        raise NasConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, SplitData):
        raise NasConfigError(
            f"data: expected a SplitData (nas.train.load_data), got {type(data).__name__}"
        )
    if not isinstance(config, expected):
        raise NasConfigError(
            f"config: {function} takes a {expected.__name__}, got {type(config).__name__}"
        )
    check_images(data.x_train[:1], model, name=f"data '{data.name}'")


def train_and_evaluate(
    model: nn.Module,
    data: SplitData,
    config: TrainConfig,
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.x_train`` and score it on ``data.x_val``.

    The model trains on the device of its parameters and is left in eval mode. The global torch
    RNG state and thread count are restored on return, so the call has no side effects beyond
    the model's weights.

    Args:
        model: Maps ``(B, *data.input_shape)`` float32 to ``(B, data.num_classes)`` logits.
        data: The split to train and evaluate on.
        config: Optimizer, schedule, epochs and seeds.
        progress: Called as ``progress(epoch, epochs, train_loss)`` after each epoch (1-based),
            for a progress bar.

    Returns:
        Validation accuracy and loss, the last epoch's train loss, and how the run ended.

    Raises:
        ValueError: The model has no trainable parameters.
        NasConfigError: Arguments of another kind, or data the model does not take
            (:func:`check_training_args`).
    """
    check_training_args(model, data, config, TrainConfig, function="train_and_evaluate")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; nothing to train")
    device = params[0].device
    with fixed_threads(config.threads), _forked_rng(device):
        torch.manual_seed(config.seed)
        result = _run(model, params, data, config, device, progress)
    logger.info(
        "trained %d epoch(s) in %.2f s: val_accuracy=%.4f val_loss=%.4f%s%s",
        result.epochs_run,
        result.train_seconds,
        result.val_accuracy,
        result.val_loss,
        " (diverged)" if result.diverged else "",
        " (stopped at max_seconds)" if result.stopped_early else "",
    )
    return result


def _run(
    model: nn.Module,
    params: list[nn.Parameter],
    data: SplitData,
    config: TrainConfig,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None,
) -> TrainResult:
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    n_train = x_train.shape[0]
    bs = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / bs)
    # A last batch of one example would crash BatchNorm in train mode; fold it away instead.
    if n_train % bs == 1 and steps_per_epoch > 1:
        steps_per_epoch -= 1
    total_steps = steps_per_epoch * config.epochs
    optimizer = _optimizer(params, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )
    generator = torch.Generator().manual_seed(config.seed)

    model.train()
    start = time.perf_counter()
    train_loss = float("nan")
    epochs_run = 0
    stopped_early = False
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(n_train, generator=generator).to(device)
        loss_sum, seen = 0.0, 0
        epochs_run = epoch
        for step in range(steps_per_epoch):
            idx = order[step * bs : (step + 1) * bs]
            logits = model(x_train[idx])  # (B, num_classes)
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=config.label_smoothing)
            loss_value = float(loss.item())
            if not math.isfinite(loss_value):
                seconds = time.perf_counter() - start
                logger.warning(
                    "loss became %s at epoch %d step %d (lr=%.3g); stopping",
                    loss_value,
                    epoch,
                    step,
                    schedule.get_last_lr()[0],
                )
                model.eval()
                return TrainResult(
                    val_accuracy=float("nan"),
                    val_loss=float("nan"),
                    train_loss=loss_value,
                    epochs_run=epoch,
                    train_seconds=seconds,
                    diverged=True,
                    stopped_early=False,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss_value * idx.shape[0]
            seen += idx.shape[0]
            if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                stopped_early = epoch < config.epochs or step < steps_per_epoch - 1
                break
        train_loss = loss_sum / seen
        if progress is not None:
            progress(epoch, config.epochs, train_loss)
        if stopped_early:
            logger.info("max_seconds=%s reached during epoch %d", config.max_seconds, epoch)
            break
    train_seconds = time.perf_counter() - start

    val_accuracy, val_loss = _evaluate(model, data, device)
    diverged = not math.isfinite(val_loss)
    return TrainResult(
        val_accuracy=float("nan") if diverged else val_accuracy,
        val_loss=val_loss,
        train_loss=train_loss,
        epochs_run=epochs_run,
        train_seconds=train_seconds,
        diverged=diverged,
        stopped_early=stopped_early,
    )


@torch.no_grad()
def _evaluate(model: nn.Module, data: SplitData, device: torch.device) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy on the validation split, in eval mode."""
    model.eval()
    correct, loss_sum = 0, 0.0
    n_val = data.x_val.shape[0]
    for start in range(0, n_val, _EVAL_BATCH):
        x = data.x_val[start : start + _EVAL_BATCH].to(device)
        y = data.y_val[start : start + _EVAL_BATCH].to(device)
        logits = model(x)  # (B, num_classes)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum").item())
        correct += int((logits.argmax(dim=1) == y).sum().item())
    return correct / n_val, loss_sum / n_val


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=_SGD_MOMENTUM,
        nesterov=True,
        weight_decay=config.weight_decay,
    )


@contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Seed freely inside; the caller's global RNG state comes back afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
