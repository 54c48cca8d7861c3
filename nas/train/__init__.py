"""Training stage: load and split a dataset, train a candidate briefly, score it on validation."""

from __future__ import annotations

from nas.train._data import DataConfig, SplitData, load_data
from nas.train._trainer import TrainConfig, TrainResult, train_and_evaluate

__all__ = [
    "DataConfig",
    "SplitData",
    "TrainConfig",
    "TrainResult",
    "load_data",
    "train_and_evaluate",
]
