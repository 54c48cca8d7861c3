"""Full-budget fine-tuning after the search: resumable, optionally distilled from a teacher.

:func:`finetune` trains a model in place with label-smoothed cross-entropy (plus, when
configured, knowledge distillation from a teacher), a per-step learning rate that warms up
linearly and then decays on a cosine, and no weight decay on biases and norm parameters. It
scores the validation split after every epoch and writes a checkpoint atomically every
``checkpoint_every`` epochs, so a run that is killed resumes from its last checkpoint and ends
with exactly the weights an uninterrupted run would have (same machine, same thread count).

Unlike the short proxy runs of :mod:`nas.train._trainer`, which record a NaN as a failed trial,
a diverging fine-tune raises :class:`FinetuneDivergedError`: at this stage a NaN is a mistake in
the config to fix, not a result to keep.

Checkpoint format (``checkpoint_dir/checkpoint.pt``, read with ``torch.load(path,
weights_only=True)``; only tensors, primitives, dicts and lists)::

    format           1
    config           FinetuneConfig.to_dict() of the run that wrote it
    data             {"name", "train_examples", "val_examples", "num_classes", "input_shape"}
    epoch            epochs completed (== config.epochs once finished)
    model            model.state_dict()
    optimizer        optimizer.state_dict()
    scheduler        the LambdaLR state_dict()
    scaler           GradScaler.state_dict() (fp16 on CUDA), else None
    generator        batch-shuffling torch.Generator state, uint8 tensor
    rng_cpu          global CPU RNG state (dropout), uint8 tensor
    rng_cuda         the CUDA device's RNG state when training on CUDA, else None
    history          one dict per epoch: epoch, train_loss, val_loss, val_accuracy, lr
    train_seconds    training wall time summed over all calls, without evaluation
    images           training images processed over all calls
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas._config import Node, check_field_types
from nas._errors import NasConfigError
from nas._io import atomic_write_bytes, read_json_object
from nas._timing import fixed_threads
from nas.train._data import SplitData, _known_fields
from nas.train._trainer import _SGD_MOMENTUM, OPTIMIZERS, _forked_rng, check_training_args

__all__ = [
    "CHECKPOINT_NAME",
    "DistillConfig",
    "FinetuneConfig",
    "FinetuneDivergedError",
    "FinetuneResult",
    "evaluate",
    "finetune",
    "warmup_cosine",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
_CHECKPOINT_FORMAT = 1
# Fields that change how fast a run goes or how often it saves, never what it computes: a
# checkpoint resumes under a config that differs only in these. (A different thread count can
# still change float rounding on CPU; the result is then valid but not bit-identical.)
_RESUME_INSENSITIVE = ("threads", "checkpoint_every")
MAX_TEMPERATURE = 100.0  # distillation temperatures in use are 1-20 (Hinton et al., 2015)
# A loss above this many times the cross-entropy of a chance-level guess (ln of the number of
# classes) has exploded: the weights left are useless even where the loss is still finite
# (lr 1e4 on digits: loss 7e6, accuracy 0.10).
_EXPLODED = 1e3
_EVAL_BATCH = 1024  # evaluation keeps no activations for backward, so batches can be larger


def _check(checks: Sequence[tuple[bool, str, str]]) -> None:
    for ok, rule, got in checks:
        if not ok:
            raise NasConfigError(f"`{rule}` must hold, but got {got}")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a teacher during fine-tuning.

    The loss is ``(1 - weight) * CE + weight * T^2 * KL(softmax(t / T) || softmax(s / T))``
    with the label-smoothed cross-entropy ``CE``, student logits ``s``, teacher logits ``t`` and
    ``T = temperature`` (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network").

    Args:
        teacher: ``best`` (the most accurate Pareto member, chosen by the caller) or the path
            of an ``arch.json``; :func:`finetune` itself takes the teacher as a module.
        temperature: Softmax temperature ``T`` of both distributions, in (0, 100]; typical
            values are 1-20 (Hinton et al. use 1-20). The loss scales the soft term by ``T^2``,
            so a huge ``T`` only makes a loss that overflows.
        weight: Weight of the distillation term in [0, 1]; 0 trains on labels only.

    Example:
        >>> DistillConfig(temperature=2.0).weight
        0.5
    """

    teacher: str = "best"
    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self) -> None:
        check_field_types(self)
        if not isinstance(self.teacher, str) or not self.teacher:
            raise NasConfigError(
                f"`teacher` must be 'best' or the path of an arch.json, but got "
                f"teacher={self.teacher!r}"
            )
        _check(
            (
                (
                    math.isfinite(self.temperature) and 0 < self.temperature <= MAX_TEMPERATURE,
                    f"0 < temperature <= {MAX_TEMPERATURE:g}",
                    f"temperature={self.temperature}",
                ),
                (0.0 <= self.weight <= 1.0, "0 <= weight <= 1", f"weight={self.weight}"),
            )
        )

    @classmethod
    def from_node(cls, node: Node, base_dir: Path | None = None) -> DistillConfig:
        """Read a ``distill:`` mapping; keys ``teacher``, ``temperature``, ``weight``, all
        optional; unknown keys are rejected. A teacher path is resolved against ``base_dir``
        (the experiment file's folder) and must be an ``arch.json`` that names trained
        weights."""
        teacher_node = node.get("teacher", "best")
        teacher = teacher_node.as_str()
        if teacher != "best":
            teacher = str(_teacher_file(teacher_node, base_dir))
        config = cls(
            teacher=teacher,
            temperature=_temperature(node.get("temperature", 4.0)),
            weight=node.get("weight", 0.5).as_float(min=0.0, max=1.0),
        )
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        """Rebuild a config written by :meth:`to_dict`."""
        return cls(**_known_fields(cls, data))


def _temperature(node: Node) -> float:
    """``distill.temperature``, in (0, MAX_TEMPERATURE]."""
    value = node.as_float(gt=0.0)
    if value > MAX_TEMPERATURE:
        raise node.error(
            f"temperature {value:g} is too high: the distillation term grows as T^2 and the "
            f"fine-tune diverges; expected a number in (0, {MAX_TEMPERATURE:g}], typical values "
            "are 1-20 (e.g. temperature: 4)"
        )
    return value


def _teacher_file(node: Node, base_dir: Path | None) -> Path:
    """The teacher ``arch.json`` a config names, checked to exist and to carry trained weights."""
    path = node.path_value(base_dir)
    fix = "name a finished model's arch.json (e.g. runs/NAME/final/<arch_id>/arch.json) or 'best'"
    if path.is_dir() and (path / "arch.json").is_file():  # an export folder
        path = path / "arch.json"
    if not path.is_file():
        where = "holds no arch.json" if path.is_dir() else "does not exist"
        raise node.error(f"teacher {path} {where}; {fix}")
    try:
        doc = read_json_object(path)
    except NasConfigError as exc:
        raise node.error(f"teacher {exc}; {fix}") from None
    if doc.get("precision") == "int8":
        raise node.error(
            f"teacher {path} is an INT8 variant, a coarser copy of a float model; name that "
            f"float model, {path.parent / 'arch.json'}"
        )
    if not doc.get("weights"):
        raise node.error(
            f"teacher {path} names no trained weights, so it would teach a random model; {fix}"
        )
    return path


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune a chosen architecture with the full training budget.

    Args:
        epochs: Passes over the train split, >= 1.
        batch_size: Examples per optimizer step, >= 1.
        lr: Peak learning rate, > 0, reached at the end of the warm-up.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        weight_decay: L2 penalty (decoupled for ``adamw``), >= 0, applied to weights with two or
            more dimensions only: never to biases and norm scales/shifts.
        warmup_epochs: Epochs (may be fractional) of linear warm-up from ``lr / warmup_steps``
            to ``lr``, per step; the remaining steps decay to 0 on a cosine. In [0, epochs].
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        seed: Seed of batch shuffling and of any randomness inside the model (dropout).
        threads: Torch intra-op threads during the call (restored afterwards); None keeps the
            current setting.
        amp: Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling);
            ignored on CPU.
        channels_last: NHWC memory layout for the model and its inputs on CUDA; ignored on CPU.
        checkpoint_every: Write a checkpoint every this many epochs (and after the last), >= 1.
        distill: Knowledge distillation from a teacher, or None to train on labels only.

    Example:
        >>> FinetuneConfig(epochs=10, distill=DistillConfig()).distill.temperature
        4.0
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int | None = None
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 1
    distill: DistillConfig | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        _check(
            (
                (self.epochs >= 1, "epochs >= 1", f"epochs={self.epochs}"),
                (self.batch_size >= 1, "batch_size >= 1", f"batch_size={self.batch_size}"),
                (math.isfinite(self.lr) and self.lr > 0, "lr > 0", f"lr={self.lr}"),
                (
                    self.weight_decay >= 0,
                    "weight_decay >= 0",
                    f"weight_decay={self.weight_decay}",
                ),
                (
                    0 <= self.warmup_epochs <= self.epochs,
                    "0 <= warmup_epochs <= epochs",
                    f"warmup_epochs={self.warmup_epochs}, epochs={self.epochs}",
                ),
                (
                    0 <= self.label_smoothing < 1,
                    "0 <= label_smoothing < 1",
                    f"label_smoothing={self.label_smoothing}",
                ),
                (
                    self.threads is None or self.threads >= 1,
                    "threads >= 1",
                    f"threads={self.threads}",
                ),
                (
                    self.checkpoint_every >= 1,
                    "checkpoint_every >= 1",
                    f"checkpoint_every={self.checkpoint_every}",
                ),
            )
        )
        if self.optimizer not in OPTIMIZERS:
            raise NasConfigError(
                f"unknown optimizer {self.optimizer!r}", allowed=OPTIMIZERS, value=self.optimizer
            )

    @classmethod
    def from_node(cls, node: Node, base_dir: Path | None = None) -> FinetuneConfig:
        """Read a ``finetune:`` mapping; every key is optional and unknown keys are rejected.

        Keys: ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``weight_decay``,
        ``warmup_epochs``, ``label_smoothing``, ``seed``, ``threads``, ``amp``,
        ``channels_last``, ``checkpoint_every`` and ``distill`` (a mapping read by
        :meth:`DistillConfig.from_node`; absent or null for none). Numbers may be written
        ``1e-3``, which PyYAML reads (YAML 1.1) as a string.
        """
        threads = node.get("threads", None)
        distill_node = node.get("distill", None)
        distill = (
            None if distill_node.value is None else DistillConfig.from_node(distill_node, base_dir)
        )
        try:
            config = cls(
                epochs=node.get("epochs", 30).as_int(min=1),
                batch_size=node.get("batch_size", 64).as_int(min=1),
                lr=node.get("lr", 0.05).as_float(gt=0.0),
                optimizer=node.get("optimizer", "sgd").as_choice(OPTIMIZERS),
                weight_decay=node.get("weight_decay", 5e-4).as_float(min=0.0),
                warmup_epochs=node.get("warmup_epochs", 1.0).as_float(min=0.0),
                label_smoothing=node.get("label_smoothing", 0.1).as_float(min=0.0, lt=1.0),
                seed=node.get("seed", 0).as_int(min=0),
                threads=None if threads.value is None else threads.as_int(min=1),
                amp=node.get("amp", True).as_bool(),
                channels_last=node.get("channels_last", True).as_bool(),
                checkpoint_every=node.get("checkpoint_every", 1).as_int(min=1),
                distill=distill,
            )
        except NasConfigError as exc:
            if exc.file is not None:
                raise
            raise node.error(exc.reason) from None  # a cross-field rule: locate it at the mapping
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``distill`` nested); :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Rebuild a config written by :meth:`to_dict`."""
        fields = _known_fields(cls, data)
        if isinstance(fields.get("distill"), dict):
            fields["distill"] = DistillConfig.from_dict(fields["distill"])
        return cls(**fields)


@dataclass(frozen=True)
class FinetuneResult:
    """The outcome of a :func:`finetune` call, counted over all the calls of a resumed run.

    Args:
        val_accuracy: Top-1 accuracy on the validation split after the last epoch, in [0, 1].
        val_loss: Mean cross-entropy (without label smoothing) on the validation split.
        train_loss: Mean training loss (as optimized, distillation included) of the last epoch.
        epochs_run: Epochs completed in total, those before a resume included.
        train_seconds: Wall time of the training loops of all calls, without evaluation.
        images_per_second: Training throughput, images processed / ``train_seconds``.
        resumed_from_epoch: Epochs a checkpoint already held when the call started; 0 when
            fresh, ``epochs_run`` when the checkpoint had finished.
        history: One dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``,
            ``lr`` (the learning rate of the epoch's last step), ``run`` (1 for the first call,
            one more for each call that resumed: :attr:`resumed_after`).
    """

    val_accuracy: float
    val_loss: float
    train_loss: float
    epochs_run: int
    train_seconds: float
    images_per_second: float
    resumed_from_epoch: int
    history: tuple[dict[str, Any], ...]

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_accuracy <= 1.0:
            raise ValueError(f"`0 <= val_accuracy <= 1` must hold, but got {self.val_accuracy=}")
        if not 0 <= self.resumed_from_epoch <= self.epochs_run:
            raise ValueError(
                f"`0 <= resumed_from_epoch <= epochs_run` must hold, but got "
                f"{self.resumed_from_epoch=}, {self.epochs_run=}"
            )
        if self.train_seconds < 0 or self.images_per_second < 0:
            raise ValueError(
                f"`train_seconds >= 0` and `images_per_second >= 0` must hold, but got "
                f"{self.train_seconds=}, {self.images_per_second=}"
            )
        if len(self.history) != self.epochs_run:
            raise ValueError(
                f"history must hold one entry per epoch, but got {len(self.history)} entries "
                f"for {self.epochs_run=}"
            )

    @property
    def resumed_after(self) -> tuple[int, ...]:
        """The epochs after which a later call went on (an interrupted fine-tune resumed),
        from ``history``; empty when one call trained every epoch."""
        runs = [int(h.get("run", 1)) for h in self.history]
        return tuple(i for i in range(1, len(runs)) if runs[i] != runs[i - 1])

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``history`` a list); :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        out["history"] = [dict(h) for h in self.history]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneResult:
        """Rebuild a result written by :meth:`to_dict`."""
        fields = _known_fields(cls, data)
        fields["history"] = tuple(dict(h) for h in fields.get("history", ()))
        return cls(**fields)


class FinetuneDivergedError(RuntimeError):
    """The fine-tune diverged during :func:`finetune`: a loss became NaN or infinite, exploded
    (over ``_EXPLODED`` times a chance-level guess's), or a weight became NaN or infinite.

    The model's weights are then unusable; a checkpoint written before, if any, is untouched.

    Args:
        message: What happened and how to fix it.
        epoch: The 1-based epoch that diverged.
        detail: What happened, without the fix (callers that know which config keys the run
            came from name those instead); defaults to ``message``.
    """

    def __init__(self, message: str, *, epoch: int, detail: str | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.detail = detail if detail is not None else message


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0-based).

    Steps ``0 .. warmup_steps - 1`` ramp linearly from ``1 / warmup_steps`` up to 1 (Goyal et
    al., 2017, "Accurate, Large Minibatch SGD", sec. 2.2; starting above 0 so no step is wasted);
    the remaining steps follow a half cosine from 1 at ``warmup_steps`` down to 0 at
    ``total_steps`` (Loshchilov & Hutter, 2017, "SGDR", without restarts).

    Args:
        step: Optimizer steps taken so far; steps past ``total_steps`` give 0.
        warmup_steps: Length of the linear warm-up, in [0, total_steps].
        total_steps: Steps of the whole run, >= 1.

    Returns:
        The factor in [0, 1] that multiplies the peak learning rate.

    Example:
        >>> [round(warmup_cosine(s, warmup_steps=2, total_steps=6), 3) for s in range(7)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if not 0 <= warmup_steps <= total_steps or total_steps < 1:
        raise ValueError(
            f"`0 <= warmup_steps <= total_steps` and `total_steps >= 1` must hold, but got "
            f"{warmup_steps=}, {total_steps=}"
        )
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:
        return 1.0
    progress = min(step - warmup_steps, decay_steps) / decay_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = _EVAL_BATCH
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``(x, y)``.

    The model runs in eval mode on the device of its parameters (its train/eval mode is restored
    afterwards), in float32, ``batch_size`` examples at a time.

    Args:
        model: Maps ``(B, *x.shape[1:])`` float32 to ``(B, num_classes)`` logits.
        x: Inputs, ``(N, ...)`` with N >= 1.
        y: Integer labels, ``(N,)``.
        batch_size: Examples per forward pass, >= 1.

    Returns:
        ``(accuracy, loss)``: the fraction of correct argmax predictions in [0, 1], and the mean
        cross-entropy without label smoothing.

    Raises:
        ValueError: Empty or mismatched inputs, or ``batch_size < 1``.

    Example:
        >>> model = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2)), model.bias.zero_()
        >>> evaluate(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))[0]
        0.5
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise NasConfigError(
                f"{name}: expected a torch.Tensor, got {type(value).__name__}; convert it with "
                f"torch.as_tensor({name})"
            )
    if y.dtype != torch.int64:
        raise NasConfigError(f"y: expected int64 class labels, got {y.dtype}; pass y.long()")
    n = int(x.shape[0])
    if n == 0 or tuple(y.shape) != (n,):
        raise ValueError(
            f"x must be (N, ...) with N >= 1 and y (N,), but got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size >= 1` must hold, but got {batch_size=}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.int64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            logits = model(xb).float()  # (B, num_classes)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    return int(correct.item()) / n, float(loss_sum.item()) / n


def finetune(
    model: nn.Module,
    data: SplitData,
    config: FinetuneConfig,
    *,
    teacher: nn.Module | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place on ``data.x_train``, scoring ``data.x_val`` every epoch.

    The model trains on the device of its parameters and is left in eval mode. The global torch
    RNG state and thread count are restored on return. With ``checkpoint_dir``, a checkpoint of
    the same config and data there is resumed (a finished one only loads its weights into
    ``model`` and returns its result), and a new one is written atomically every
    ``config.checkpoint_every`` epochs and after the last; see the module docstring for the
    format.

    With ``config.distill``, the teacher (in eval mode, without gradients) scores the train split
    once before the first epoch: there is no data augmentation, so its logits never change.

    Args:
        model: Maps ``(B, *data.input_shape)`` float32 to ``(B, data.num_classes)`` logits.
        data: The split to train and evaluate on.
        config: Optimizer, schedule, epochs, seeds, precision and distillation.
        teacher: The trained teacher module, required exactly when ``config.distill`` is set;
            it may live on another device than ``model``.
        checkpoint_dir: Folder for ``checkpoint.pt`` (created when missing), or None to keep
            no checkpoint.
        progress: Called after each epoch (and its checkpoint) with a dict of ``epoch``
            (1-based), ``epochs``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``lr`` and
            ``images_per_second`` (of that epoch); and once before the first epoch of a resumed
            run with ``resumed_after`` (epochs the checkpoint held), ``epochs`` and
            ``checkpoint`` (its path).

    Returns:
        The last epoch's validation accuracy and loss, throughput and the per-epoch history.

    Raises:
        ValueError: The model has no trainable parameters, or the teacher is missing (or given
            without ``config.distill``).
        NasConfigError: The checkpoint in ``checkpoint_dir`` is unreadable, or was written for a
            different config, data or model.
        FinetuneDivergedError: The training or validation loss became NaN or infinite.
    """
    check_training_args(model, data, config, FinetuneConfig, function="finetune")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; nothing to fine-tune")
    if config.distill is not None and teacher is None:
        raise ValueError(
            f"config.distill is set (teacher {config.distill.teacher!r}), so finetune needs a "
            f"teacher module: pass teacher=<the trained teacher> or set distill to None"
        )
    if config.distill is None and teacher is not None:
        raise ValueError(
            "a teacher was passed but config.distill is None; set distill (e.g. "
            "DistillConfig()) to distill from it, or pass teacher=None"
        )
    device = params[0].device
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME
    with fixed_threads(config.threads), _forked_rng(device):
        torch.manual_seed(config.seed)
        result = _run(model, params, data, config, device, teacher, path, progress)
    logger.info(
        "fine-tuned %d epoch(s)%s in %.1f s (%.0f images/s): val_accuracy=%.4f val_loss=%.4f",
        result.epochs_run,
        f" (resumed after {result.resumed_from_epoch})" if result.resumed_from_epoch else "",
        result.train_seconds,
        result.images_per_second,
        result.val_accuracy,
        result.val_loss,
    )
    return result


# -- the run -----------------------------------------------------------------------------------


@dataclass
class _Loop:
    """The mutable pieces of a run that a checkpoint must capture for an exact resume."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator  # batch shuffling; the global RNG drives dropout
    device: torch.device

    def state(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "rng_cpu": torch.random.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Everything but the model's weights, which :func:`_load_model` loads first."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.random.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state["rng_cuda"] is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)


def _run(
    model: nn.Module,
    params: list[nn.Parameter],
    data: SplitData,
    config: FinetuneConfig,
    device: torch.device,
    teacher: nn.Module | None,
    path: Path | None,
    progress: Callable[[dict[str, Any]], None] | None,
) -> FinetuneResult:
    n_train = int(data.x_train.shape[0])
    bs = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / bs)
    # A last batch of one example would crash BatchNorm in train mode; fold it away instead.
    if n_train % bs == 1 and steps_per_epoch > 1:
        steps_per_epoch -= 1
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = min(total_steps, round(config.warmup_epochs * steps_per_epoch))

    amp_dtype = _amp_dtype(config, device)
    channels_last = device.type == "cuda" and config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented
    optimizer = _optimizer(_param_groups(params, config.weight_decay), config)
    loop = _Loop(
        model=model,
        optimizer=optimizer,
        schedule=torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup_steps=warmup_steps, total_steps=total_steps),
        ),
        # Loss scaling keeps small fp16 gradients from flushing to zero; bf16 has fp32's range.
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        generator=torch.Generator().manual_seed(config.seed),
        device=device,
    )

    history: list[dict[str, Any]] = []
    train_seconds, images, start_epoch = 0.0, 0, 0
    state = None if path is None else _read_checkpoint(path, config, data)
    if path is not None and state is not None:
        _load_model(model, state["model"], path)
        start_epoch = int(state["epoch"])
        history = [dict(h) for h in state["history"]]
        train_seconds, images = float(state["train_seconds"]), int(state["images"])
        if progress is not None:
            progress({"resumed_after": start_epoch, "epochs": config.epochs, "checkpoint": path})
        if start_epoch >= config.epochs:
            logger.info("%s holds a finished run of %d epochs; not training", path, start_epoch)
            model.eval()
            return _result(history, train_seconds, images, resumed_from=start_epoch)
        loop.restore(state)
        logger.info("resuming %s after epoch %d of %d", path, start_epoch, config.epochs)

    x_train = data.x_train.to(device).contiguous(memory_format=memory_format)  # (N, C, H, W)
    y_train = data.y_train.to(device)
    x_val = data.x_val.to(device).contiguous(memory_format=memory_format)
    y_val = data.y_val.to(device)
    teacher_logits = None if teacher is None else _teacher_logits(teacher, x_train, data)
    logger.info(
        "fine-tuning %d epochs x %d steps of %d on %s (warm-up %d steps, %s%s)",
        config.epochs,
        steps_per_epoch,
        bs,
        device,
        warmup_steps,
        "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        ", distilled" if teacher_logits is not None else "",
    )

    # which call of a resumed fine-tune trained each epoch (the card says where it resumed)
    run = int(history[-1].get("run", 1)) + 1 if history else 1
    for epoch in range(start_epoch + 1, config.epochs + 1):
        start = time.perf_counter()
        train_loss, lr, seen = _train_epoch(
            loop,
            x_train,
            y_train,
            teacher_logits,
            config,
            bs,
            steps_per_epoch,
            amp_dtype,
            memory_format,
        )
        seconds = time.perf_counter() - start
        val_accuracy, val_loss = evaluate(model, x_val, y_val)
        why = _diverged(model, train_loss, val_loss, data.num_classes)
        if why is not None:
            where = "" if path is None else f" and delete {path.parent}"
            detail = (
                f"fine-tuning diverged in epoch {epoch}: {why} (train_loss={train_loss:.4g}, "
                f"val_loss={val_loss:.4g}, val_accuracy={val_accuracy:.3f} at lr={lr:.3g})"
            )
            raise FinetuneDivergedError(
                f"{detail}; lower 'lr' or raise 'warmup_epochs'{where} to start over",
                epoch=epoch,
                detail=detail,
            )
        train_seconds += seconds
        images += seen
        images_per_second = seen / seconds if seconds > 0 else 0.0
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": lr,
                "run": run,
            }
        )
        logger.info(
            "epoch %d/%d: train_loss=%.4f val_loss=%.4f val_accuracy=%.4f lr=%.3g %.0f images/s",
            epoch,
            config.epochs,
            train_loss,
            val_loss,
            val_accuracy,
            lr,
            images_per_second,
        )
        saved = path is not None and (
            epoch % config.checkpoint_every == 0 or epoch == config.epochs
        )
        if saved:
            _write_checkpoint(
                path,
                {
                    "format": _CHECKPOINT_FORMAT,
                    "config": config.to_dict(),
                    "data": _data_fingerprint(data),
                    "epoch": epoch,
                    **loop.state(),
                    "history": history,
                    "train_seconds": train_seconds,
                    "images": images,
                },
            )
        if progress is not None:
            progress(
                {
                    **history[-1],
                    "epochs": config.epochs,
                    "images_per_second": images_per_second,
                    "saved": saved,  # a checkpoint holds this epoch: a rerun resumes after it
                }
            )
    model.eval()
    return _result(history, train_seconds, images, resumed_from=start_epoch)


def _diverged(model: nn.Module, train_loss: float, val_loss: float, classes: int) -> str | None:
    """Why an epoch's result is unusable (a loss not finite or exploded, a weight not finite),
    or None when it is not."""
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        return "a loss is not finite"
    chance = max(1.0, math.log(max(classes, 2)))  # cross-entropy of a uniform guess
    if max(train_loss, val_loss) > _EXPLODED * chance:
        return f"the loss exploded (over {_EXPLODED:g}x the {chance:.3g} of a chance-level guess)"
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"weight '{name}' holds NaN or infinite values"
    return None


def _train_epoch(
    loop: _Loop,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    config: FinetuneConfig,
    bs: int,
    steps: int,
    amp_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
) -> tuple[float, float, int]:
    """One pass in a fresh shuffle: ``(mean train loss, lr of the last step, images seen)``."""
    model, optimizer, scaler = loop.model, loop.optimizer, loop.scaler
    model.train()
    order = torch.randperm(x_train.shape[0], generator=loop.generator).to(x_train.device)
    autocast = (
        torch.autocast("cuda", dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    # Summed on the device: one host sync per epoch instead of one per step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=x_train.device)
    seen, lr = 0, 0.0
    for step in range(steps):
        idx = order[step * bs : (step + 1) * bs]
        x = x_train[idx].contiguous(memory_format=memory_format)  # (B, C, H, W)
        with autocast:
            logits = model(x)  # (B, num_classes)
        loss = _loss(
            logits.float(),
            y_train[idx],
            None if teacher_logits is None else teacher_logits[idx],
            config,
        )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        lr = float(optimizer.param_groups[0]["lr"])
        loop.schedule.step()
        loss_sum += loss.detach().double() * idx.shape[0]
        seen += int(idx.shape[0])
    return float(loss_sum.item()) / seen, lr, seen  # .item() also waits for the GPU


def _loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    config: FinetuneConfig,
) -> torch.Tensor:
    """Label-smoothed cross-entropy, mixed with the distillation term when configured."""
    ce = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
    distill = config.distill
    if distill is None or teacher_logits is None:
        return ce
    t = distill.temperature
    # Hinton et al., 2015, "Distilling the Knowledge in a Neural Network", sec. 2: soft targets
    # at temperature T; the T^2 factor keeps their gradients on the scale of the hard-label ones
    # as T changes. kl_div(input=log q_student, target=log p_teacher) = KL(p_teacher || q_student).
    kd = F.kl_div(
        F.log_softmax(logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - distill.weight) * ce + distill.weight * (t * t) * kd


@torch.no_grad()
def _teacher_logits(teacher: nn.Module, x_train: torch.Tensor, data: SplitData) -> torch.Tensor:
    """The teacher's float32 ``(N, num_classes)`` logits of the train split, on its device."""
    teacher.eval()
    teacher_device = _device_of(teacher)
    out = []
    for start in range(0, x_train.shape[0], _EVAL_BATCH):
        out.append(teacher(x_train[start : start + _EVAL_BATCH].to(teacher_device)).float())
    logits = torch.cat(out).to(x_train.device)
    if tuple(logits.shape) != (x_train.shape[0], data.num_classes):
        raise ValueError(
            f"the teacher must map (B, {', '.join(map(str, data.input_shape))}) inputs to "
            f"(B, {data.num_classes}) logits, but gave {tuple(logits.shape)} for "
            f"{x_train.shape[0]} inputs"
        )
    return logits


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weights with >= 2 dimensions decay; biases and norm scales/shifts (ndim <= 1) do not.

    Decaying a norm layer's scale only fights the normalization and costs accuracy ("no bias
    decay", He et al., 2019, "Bag of Tricks for Image Classification", sec. 3.1).
    """
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _optimizer(groups: list[dict[str, Any]], config: FinetuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=_SGD_MOMENTUM, nesterov=True)


def _amp_dtype(config: FinetuneConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype on CUDA with ``amp``, else None (fp32)."""
    if device.type != "cuda" or not config.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _result(
    history: list[dict[str, Any]], train_seconds: float, images: int, *, resumed_from: int
) -> FinetuneResult:
    last = history[-1]
    return FinetuneResult(
        val_accuracy=float(last["val_accuracy"]),
        val_loss=float(last["val_loss"]),
        train_loss=float(last["train_loss"]),
        epochs_run=int(last["epoch"]),
        train_seconds=train_seconds,
        images_per_second=images / train_seconds if train_seconds > 0 else 0.0,
        resumed_from_epoch=resumed_from,
        history=tuple(dict(h) for h in history),
    )


# -- checkpoints -------------------------------------------------------------------------------


def _data_fingerprint(data: SplitData) -> dict[str, Any]:
    n_train, n_val = data.sizes
    return {
        "name": data.name,
        "train_examples": n_train,
        "val_examples": n_val,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
    }


def _differences(saved: dict[str, Any], current: dict[str, Any], skip: Sequence[str]) -> str:
    keys = [k for k in dict.fromkeys([*saved, *current]) if k not in skip]
    return "; ".join(
        f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now"
        for k in keys
        if saved.get(k) != current.get(k)
    )


def _read_checkpoint(path: Path, config: FinetuneConfig, data: SplitData) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one, checked against ``config`` and ``data``."""
    if not path.is_file():
        return None
    fix = f"delete {path.parent} to start over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged zip, a pickle that is not weights-only, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise NasConfigError(
            f"cannot read the checkpoint ({type(exc).__name__}: {first}); {fix}", file=path
        ) from None
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise NasConfigError(
            f"not a fine-tuning checkpoint of format {_CHECKPOINT_FORMAT}; {fix}", file=path
        )
    diff = _differences(state["config"], config.to_dict(), _RESUME_INSENSITIVE)
    if diff:
        raise NasConfigError(
            f"the checkpoint was written with a different fine-tuning config ({diff}); "
            f"{fix}, or fine-tune with the same config to resume it",
            file=path,
        )
    diff = _differences(state["data"], _data_fingerprint(data), ())
    if diff:
        raise NasConfigError(
            f"the checkpoint was written for different data ({diff}); {fix}, or fine-tune on "
            f"the same data to resume it",
            file=path,
        )
    return state


def _load_model(model: nn.Module, weights: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        detail = " ".join(str(exc).split())
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise NasConfigError(
            f"the checkpoint does not fit this model ({detail}); delete {path.parent} to start "
            f"over, or fine-tune the architecture it was written for",
            file=path,
        ) from None


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialize in memory, then write beside ``path`` and rename over it: never half a file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    logger.debug("wrote %s (epoch %d)", path, state["epoch"])
