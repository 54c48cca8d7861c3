"""Contracts of nas.train._trainer: real learning, determinism, divergence, config parsing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas._config import Node
from nas._errors import NasConfigError
from nas.train import (
    DataConfig,
    SplitData,
    TrainConfig,
    TrainResult,
    load_data,
    train_and_evaluate,
)


@pytest.fixture(scope="module")
def digits() -> SplitData:
    return load_data(DataConfig("digits"))


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 32, 4, 4)
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(32 * 4 * 4, 10),
    )


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("nan")


def _without_time(result: TrainResult) -> dict:
    return {k: v for k, v in result.to_dict().items() if k != "train_seconds"}


def test_small_cnn_learns_digits(digits: SplitData) -> None:
    result = train_and_evaluate(_cnn(), digits, TrainConfig(epochs=4, threads=2))
    assert result.val_accuracy > 0.8
    assert not result.diverged and not result.stopped_early
    assert result.epochs_run == 4 and result.train_seconds > 0
    assert math.isfinite(result.val_loss) and result.train_loss < 1.0


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_training_is_deterministic(digits: SplitData, optimizer: str) -> None:
    config = TrainConfig(epochs=2, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01)
    model_a, model_b = _cnn(), _cnn()
    a = train_and_evaluate(model_a, digits, config)
    b = train_and_evaluate(model_b, digits, config)
    assert _without_time(a) == _without_time(b)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = train_and_evaluate(_cnn(), digits, TrainConfig(epochs=2, optimizer=optimizer, seed=1))
    assert _without_time(c) != _without_time(a)


def test_call_restores_global_rng_and_threads(digits: SplitData) -> None:
    threads = torch.get_num_threads()
    model = _cnn()
    state = torch.random.get_rng_state()
    train_and_evaluate(model, digits, TrainConfig(epochs=1, threads=1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert not model.training


def test_huge_lr_diverges_without_raising(digits: SplitData) -> None:
    result = train_and_evaluate(_cnn(), digits, TrainConfig(epochs=3, lr=1e6, optimizer="sgd"))
    assert result.diverged
    assert math.isnan(result.val_accuracy) and math.isnan(result.val_loss)
    assert result.epochs_run == 1


def test_nan_model_diverges_at_once(digits: SplitData) -> None:
    calls: list[tuple[int, int, float]] = []
    result = train_and_evaluate(
        _NaNModel(), digits, TrainConfig(epochs=3), progress=lambda *a: calls.append(a)
    )
    assert result.diverged and math.isnan(result.val_accuracy) and result.epochs_run == 1
    assert calls == []


def test_progress_called_once_per_epoch(digits: SplitData) -> None:
    calls: list[tuple[int, int, float]] = []
    result = train_and_evaluate(
        _cnn(), digits, TrainConfig(epochs=3), progress=lambda *a: calls.append(a)
    )
    assert [(epoch, total) for epoch, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2] == pytest.approx(result.train_loss)
    assert calls[-1][2] < calls[0][2]


def test_max_seconds_stops_early(digits: SplitData) -> None:
    calls: list[tuple[int, int, float]] = []
    config = TrainConfig(epochs=50, max_seconds=1e-6)
    result = train_and_evaluate(_cnn(), digits, config, progress=lambda *a: calls.append(a))
    assert result.stopped_early and not result.diverged
    assert result.epochs_run == 1 and len(calls) == 1
    assert 0.0 <= result.val_accuracy <= 1.0


def test_single_example_last_batch_with_batchnorm() -> None:
    # 65 examples with batch_size 64 would leave a batch of 1, which BatchNorm cannot train on.
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(65, 1, 4, 4, generator=g), torch.arange(65) % 2
    data = SplitData(x, y, x[:8], y[:8], num_classes=2, input_shape=(1, 4, 4), name="tiny")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    result = train_and_evaluate(model, data, TrainConfig(epochs=2, batch_size=64))
    assert not result.diverged and result.epochs_run == 2


def test_model_without_parameters_is_rejected(digits: SplitData) -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_and_evaluate(nn.Flatten(), digits, TrainConfig(epochs=1))


# -- TrainConfig / TrainResult -----------------------------------------------------------------


def test_config_from_node() -> None:
    node = Node(
        {
            "epochs": 3,
            "batch_size": 32,
            "lr": "1e-3",  # PyYAML reads 1e-3 as a string (YAML 1.1)
            "optimizer": "sgd",
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "seed": 4,
            "threads": 2,
            "max_seconds": 30,
        },
        file="exp.yaml",
    )
    assert TrainConfig.from_node(node) == TrainConfig(
        epochs=3,
        batch_size=32,
        lr=1e-3,
        optimizer="sgd",
        weight_decay=5e-4,
        label_smoothing=0.1,
        seed=4,
        threads=2,
        max_seconds=30.0,
    )
    assert TrainConfig.from_node(Node({}, file="exp.yaml")) == TrainConfig()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"epoch": 3}, r"exp.yaml: epoch: unknown key 'epoch'.*did you mean 'epochs'"),
        ({"optimizer": "adamm"}, "optimizer: unknown value 'adamm'.*did you mean 'adam'"),
        ({"epochs": 0}, "epochs: expected an integer >= 1"),
        ({"lr": 0}, "lr: expected a number > 0"),
        ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
        ({"label_smoothing": 1.0}, "label_smoothing: expected a number < 1"),
        ({"max_seconds": -1}, "max_seconds: expected a number > 0"),
    ],
)
def test_config_from_node_errors(value: dict, match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        TrainConfig.from_node(Node(value, file="exp.yaml"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs >= 1"),
        ({"lr": -1.0}, "lr > 0"),
        ({"optimizer": "sgdd"}, "did you mean 'sgd'"),
        ({"threads": 0}, "threads >= 1"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        TrainConfig(**kwargs)


def test_config_and_result_round_trip() -> None:
    config = TrainConfig(epochs=2, optimizer="adamw", threads=3, max_seconds=1.5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    result = TrainResult(0.9, 0.3, 0.2, 2, 1.5, diverged=False, stopped_early=True)
    assert TrainResult.from_dict(result.to_dict()) == result
    with pytest.raises(ValueError, match="NaN only when diverged"):
        TrainResult(float("nan"), 0.3, 0.2, 2, 1.5, diverged=False, stopped_early=False)
