"""Training stage: load and split a dataset, train a candidate briefly, score it on validation,
and fine-tune the chosen architectures with the full budget."""

from __future__ import annotations

from nas.train._data import DataConfig, SplitData, describe_split, load_data
from nas.train._finetune import (
    DistillConfig,
    FinetuneConfig,
    FinetuneDivergedError,
    FinetuneResult,
    evaluate,
    finetune,
    warmup_cosine,
)
from nas.train._trainer import TrainConfig, TrainResult, train_and_evaluate

__all__ = [
    "DataConfig",
    "DistillConfig",
    "FinetuneConfig",
    "FinetuneDivergedError",
    "FinetuneResult",
    "SplitData",
    "TrainConfig",
    "TrainResult",
    "describe_split",
    "evaluate",
    "finetune",
    "load_data",
    "train_and_evaluate",
    "warmup_cosine",
]
