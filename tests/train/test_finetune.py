"""Contracts of nas.train._finetune: schedule, decay groups, determinism, exact resume,
distillation, divergence, checkpoints and config parsing."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nas._config import Node
from nas._errors import NasConfigError
from nas.train import (
    DistillConfig,
    FinetuneConfig,
    FinetuneDivergedError,
    FinetuneResult,
    SplitData,
    evaluate,
    finetune,
    warmup_cosine,
)
from nas.train._finetune import CHECKPOINT_NAME, _param_groups

# 96 train examples in batches of 32: 3 steps per epoch.
# One thread: the tests stay quick on a busy 2-core machine (idle OpenMP threads spin).
_QUICK = FinetuneConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=1.0, threads=1)


@pytest.fixture(scope="module")
def data() -> SplitData:
    """Four classes of 1x8x8 noise, told apart by the sign of the top and left half means."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + 2 * (x[:, 0, :, :4].mean((1, 2)) > 0).long()
    return SplitData(x[:96], y[:96], x[96:], y[96:], 4, (1, 8, 8), "quadrants")


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.2),  # consumes the global RNG: resume must restore it
        nn.Linear(4 * 8 * 8, 4),
    )


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_time(result: FinetuneResult) -> dict[str, Any]:
    """The result but its timings, and which call trained each epoch (``run``)."""
    out = result.to_dict()
    del out["train_seconds"], out["images_per_second"]
    out["history"] = [{k: v for k, v in h.items() if k != "run"} for h in out["history"]]
    return out


# -- schedule and parameter groups -------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "factor"),
    [(0, 0.25), (1, 0.5), (3, 1.0), (4, 1.0), (8, 0.5), (12, 0.0), (99, 0.0)],
)
def test_warmup_then_cosine(step: int, factor: float) -> None:
    assert warmup_cosine(step, warmup_steps=4, total_steps=12) == pytest.approx(factor)


def test_schedule_without_warmup_and_all_warmup() -> None:
    assert warmup_cosine(0, warmup_steps=0, total_steps=10) == 1.0
    assert warmup_cosine(5, warmup_steps=0, total_steps=10) == pytest.approx(0.5)
    assert [warmup_cosine(s, warmup_steps=2, total_steps=2) for s in range(3)] == [0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        warmup_cosine(0, warmup_steps=3, total_steps=2)


def test_history_lr_follows_the_schedule(data: SplitData) -> None:
    # 3 steps per epoch, 9 in all, 3 of warm-up; history holds each epoch's last-step lr.
    result = finetune(_net(), data, _QUICK)
    lrs = [h["lr"] for h in result.history]
    expected = [0.05 * warmup_cosine(s, warmup_steps=3, total_steps=9) for s in (2, 5, 8)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == pytest.approx(0.05)  # warm-up ends at the peak


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = _net()
    groups = _param_groups(list(model.parameters()), 5e-4)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert all(p.ndim <= 1 for p in groups[1]["params"])
    # conv weight, linear weight | conv bias, bn weight, bn bias, linear bias
    assert [len(g["params"]) for g in groups] == [2, 4]


def test_checkpointed_optimizer_has_the_two_decay_groups(data: SplitData, tmp_path: Path) -> None:
    finetune(_net(), data, replace(_QUICK, epochs=1), checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(5e-4, 2), (0.0, 4)]
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in groups)


# -- training ----------------------------------------------------------------------------------


def test_finetune_learns_and_reports(data: SplitData) -> None:
    calls: list[dict[str, Any]] = []
    model = _net()
    result = finetune(model, data, replace(_QUICK, epochs=6, batch_size=16), progress=calls.append)
    assert result.epochs_run == 6 and result.resumed_from_epoch == 0
    assert [c["epoch"] for c in calls] == [1, 2, 3, 4, 5, 6]
    assert set(calls[0]) == {
        "epoch",
        "epochs",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "lr",
        "run",
        "images_per_second",
        "saved",
    }
    assert not any(c["saved"] for c in calls)  # no checkpoint_dir: nothing saved
    assert calls[-1]["train_loss"] < calls[0]["train_loss"]
    assert result.val_accuracy > 0.5  # 4 classes: chance is 0.25
    assert (result.val_accuracy, result.val_loss) == evaluate(model, data.x_val, data.y_val)
    assert result.images_per_second > 0 and result.train_seconds > 0
    assert not model.training


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_finetune_is_deterministic(data: SplitData, optimizer: str) -> None:
    config = replace(_QUICK, epochs=2, optimizer=optimizer, lr=0.01)
    rng, threads = torch.random.get_rng_state(), torch.get_num_threads()
    a, b = _net(), _net()
    result_a = finetune(a, data, config)
    result_b = finetune(b, data, config)
    assert _same_weights(a, b) and _without_time(result_a) == _without_time(result_b)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    c = _net()
    finetune(c, data, replace(config, seed=1))
    assert not _same_weights(a, c)


class _Interrupt:
    """A progress callback that stops the run like Ctrl-C after ``after`` epochs."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, report: dict[str, Any]) -> None:
        if report.get("epoch") == self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_ends_with_the_uninterrupted_weights(
    data: SplitData, tmp_path: Path, optimizer: str
) -> None:
    config = replace(_QUICK, optimizer=optimizer, lr=0.01)
    straight = _net()
    expected = finetune(straight, data, config, checkpoint_dir=tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt):
        finetune(_net(), data, config, checkpoint_dir=tmp_path / "cut", progress=_Interrupt(1))
    assert torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)["epoch"] == 1
    resumed = _net(seed=7)  # other initial weights: everything must come from the checkpoint
    calls: list[dict[str, Any]] = []
    result = finetune(
        resumed, data, config, checkpoint_dir=tmp_path / "cut", progress=calls.append
    )

    assert _same_weights(straight, resumed)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 3
    checkpoint = tmp_path / "cut" / CHECKPOINT_NAME
    assert calls[0] == {"resumed_after": 1, "epochs": 3, "checkpoint": checkpoint}
    assert [c["epoch"] for c in calls[1:]] == [2, 3]
    assert _without_time(result) == {**_without_time(expected), "resumed_from_epoch": 1}
    # the card says where it went on (a finished rerun said resumed_from_epoch: 3)
    assert [h["run"] for h in result.history] == [1, 2, 2] and result.resumed_after == (1,)
    assert expected.resumed_after == ()
    again = finetune(_net(), data, config, checkpoint_dir=tmp_path / "cut")
    assert again.resumed_from_epoch == 3 and again.resumed_after == (1,)


def test_checkpoint_file_format(data: SplitData, tmp_path: Path) -> None:
    config = replace(_QUICK, checkpoint_every=2)
    seen: list[int | None] = []

    def spy(report: dict[str, Any]) -> None:
        path = tmp_path / CHECKPOINT_NAME
        seen.append(torch.load(path, weights_only=True)["epoch"] if path.exists() else None)

    model = _net()
    finetune(model, data, config, checkpoint_dir=tmp_path, progress=spy)
    assert seen == [None, 2, 3]  # every 2nd epoch, and the last
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no temp files
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["format"] == 1 and state["epoch"] == 3
    assert FinetuneConfig.from_dict(state["config"]) == config
    assert state["data"] == {
        "name": "quadrants",
        "train_examples": 96,
        "val_examples": 32,
        "num_classes": 4,
        "input_shape": [1, 8, 8],
    }
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    assert state["generator"].dtype == torch.uint8 and state["rng_cuda"] is None
    assert state["scaler"] is None and state["images"] == 3 * 96
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]


def test_finished_checkpoint_returns_without_training(data: SplitData, tmp_path: Path) -> None:
    trained = _net()
    first = finetune(trained, data, _QUICK, checkpoint_dir=tmp_path)
    calls: list[dict[str, Any]] = []
    again = _net(seed=3)
    # Another thread count (and checkpoint_every) does not change the result: still resumable.
    config = replace(_QUICK, threads=2, checkpoint_every=5)
    result = finetune(again, data, config, checkpoint_dir=tmp_path, progress=calls.append)
    # one event, no epoch: it says the checkpoint's run was finished (the CLI says so)
    assert calls == [{"resumed_after": 3, "epochs": 3, "checkpoint": tmp_path / "checkpoint.pt"}]
    assert _same_weights(trained, again) and not again.training
    assert result.resumed_from_epoch == 3
    assert result.train_seconds == first.train_seconds
    assert _without_time(result) == {**_without_time(first), "resumed_from_epoch": 3}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"lr": 0.1}, r"different fine-tuning config \(lr: 0.05 in the checkpoint, 0.1 now\)"),
        (
            {"distill": DistillConfig(weight=0.3)},
            r"different fine-tuning config \(distill: None in",
        ),
    ],
)
def test_checkpoint_of_another_config_is_refused(
    data: SplitData, tmp_path: Path, change: dict[str, Any], match: str
) -> None:
    finetune(_net(), data, replace(_QUICK, epochs=1, warmup_epochs=0), checkpoint_dir=tmp_path)
    config = replace(_QUICK, epochs=1, warmup_epochs=0, **change)
    teacher = _net(1) if config.distill is not None else None
    with pytest.raises(NasConfigError, match=match + r".*delete .* to start over, or fine-tune"):
        finetune(_net(), data, config, teacher=teacher, checkpoint_dir=tmp_path)


def test_checkpoint_of_other_data_or_model_or_garbage_is_refused(
    data: SplitData, tmp_path: Path
) -> None:
    config = replace(_QUICK, epochs=1)
    finetune(_net(), data, config, checkpoint_dir=tmp_path)
    fewer = SplitData(
        data.x_train[:64], data.y_train[:64], data.x_val, data.y_val, 4, (1, 8, 8), "quadrants"
    )
    with pytest.raises(NasConfigError, match="different data \\(train_examples: 96 in the"):
        finetune(_net(), fewer, config, checkpoint_dir=tmp_path)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(NasConfigError, match="does not fit this model.*delete"):
        finetune(other, data, config, checkpoint_dir=tmp_path)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(NasConfigError, match="cannot read the checkpoint.*delete"):
        finetune(_net(), data, config, checkpoint_dir=tmp_path)


# -- distillation ------------------------------------------------------------------------------


def test_distillation_needs_a_teacher_and_only_with_distill(data: SplitData) -> None:
    with pytest.raises(ValueError, match="needs a teacher module: pass teacher="):
        finetune(_net(), data, replace(_QUICK, distill=DistillConfig()))
    with pytest.raises(ValueError, match="config.distill is None"):
        finetune(_net(), data, _QUICK, teacher=_net(1))


def test_distillation_changes_training(data: SplitData) -> None:
    teacher = _net(1)
    finetune(teacher, data, replace(_QUICK, epochs=4, batch_size=16))
    teacher.train()  # finetune must put it in eval mode itself

    plain, zero, distilled = _net(), _net(), _net()
    base = finetune(plain, data, _QUICK)
    zero_weight = replace(_QUICK, distill=DistillConfig(weight=0.0))
    finetune(zero, data, zero_weight, teacher=teacher)
    assert _same_weights(plain, zero)  # weight 0 is plain training, bit for bit
    assert not teacher.training

    config = replace(_QUICK, distill=DistillConfig(temperature=2.0, weight=0.9))
    result = finetune(distilled, data, config, teacher=teacher)
    assert not _same_weights(plain, distilled)
    assert result.train_loss != base.train_loss

    def disagreement(student: nn.Module) -> float:
        with torch.no_grad():
            t = teacher(data.x_train).log_softmax(1)
            s = student(data.x_train).log_softmax(1)
        return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))

    assert disagreement(distilled) < disagreement(plain)


def test_teacher_with_wrong_output_is_refused(data: SplitData) -> None:
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ValueError, match=r"teacher must map \(B, 1, 8, 8\).*\(B, 4\) logits"):
        finetune(_net(), data, replace(_QUICK, distill=DistillConfig()), teacher=teacher)


# -- failure -----------------------------------------------------------------------------------


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("nan")


def test_divergence_raises_and_keeps_no_checkpoint(data: SplitData, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    with pytest.raises(FinetuneDivergedError, match="diverged in epoch 1.*lower 'lr'") as info:
        finetune(_NaNModel(), data, _QUICK, checkpoint_dir=tmp_path, progress=calls.append)
    assert info.value.epoch == 1 and isinstance(info.value, RuntimeError)
    assert calls == [] and not (tmp_path / CHECKPOINT_NAME).exists()


def test_huge_lr_diverges(data: SplitData) -> None:
    with pytest.raises(FinetuneDivergedError, match="diverged"):
        finetune(_net(), data, replace(_QUICK, batch_size=16, lr=1e8, warmup_epochs=0))


def test_model_without_parameters_is_rejected(data: SplitData) -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        finetune(nn.Flatten(), data, _QUICK)


# -- evaluate ----------------------------------------------------------------------------------


def test_evaluate_counts_and_restores_mode(data: SplitData) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))  # always predicts class 3
    model.train()
    accuracy, loss = evaluate(model, data.x_val, data.y_val, batch_size=5)
    assert accuracy == pytest.approx(float((data.y_val == 3).float().mean()))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(data.x_val), data.y_val)
    assert loss == pytest.approx(float(expected))
    assert model.training
    assert evaluate(model, data.x_val, data.y_val) == pytest.approx((accuracy, loss))
    with pytest.raises(ValueError, match="x must be"):
        evaluate(model, data.x_val[:0], data.y_val[:0])


# -- configs and result ------------------------------------------------------------------------


def test_config_from_node(tmp_path: Path) -> None:
    teacher = tmp_path / "runs" / "a" / "arch.json"
    teacher.parent.mkdir(parents=True)
    teacher.write_text('{"weights": "weights.safetensors"}')
    node = Node(
        {
            "epochs": 40,
            "batch_size": 128,
            "lr": "1e-3",  # PyYAML reads 1e-3 as a string (YAML 1.1)
            "optimizer": "adamw",
            "weight_decay": 0.05,
            "warmup_epochs": 2.5,
            "label_smoothing": 0.0,
            "seed": 3,
            "threads": 4,
            "amp": False,
            "channels_last": False,
            "checkpoint_every": 5,
            "distill": {"teacher": "runs/a/arch.json", "temperature": 2, "weight": 0.7},
        },
        file="exp.yaml",
    )
    assert FinetuneConfig.from_node(node, tmp_path) == FinetuneConfig(
        epochs=40,
        batch_size=128,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=0.05,
        warmup_epochs=2.5,
        label_smoothing=0.0,
        seed=3,
        threads=4,
        amp=False,
        channels_last=False,
        checkpoint_every=5,
        distill=DistillConfig(teacher=str(teacher), temperature=2.0, weight=0.7),
    )
    assert FinetuneConfig.from_node(Node({}, file="exp.yaml")) == FinetuneConfig()
    assert FinetuneConfig.from_node(Node({"distill": {}})).distill == DistillConfig()
    assert FinetuneConfig.from_node(Node({"distill": None})).distill is None


def test_a_teacher_is_an_export_folder_or_its_arch_json_never_its_int8_twin(tmp_path: Path):
    folder = tmp_path / "final" / "abc"
    folder.mkdir(parents=True)
    (folder / "arch.json").write_text('{"weights": "model.safetensors"}')
    (folder / "model_int8.json").write_text('{"onnx": "model_int8.onnx", "precision": "int8"}')

    def teacher(name: str) -> str | None:
        node = Node({"distill": {"teacher": name}}, file="exp.yaml")
        distill = FinetuneConfig.from_node(node, tmp_path).distill
        return None if distill is None else distill.teacher

    assert teacher("final/abc") == str(folder / "arch.json")
    with pytest.raises(NasConfigError, match=r"is an INT8 variant.*name that float model, .*arch"):
        teacher("final/abc/model_int8.json")
    with pytest.raises(NasConfigError, match=r"final/abd does not exist"):
        teacher("final/abd")
    (tmp_path / "final" / "empty").mkdir()
    with pytest.raises(NasConfigError, match=r"final/empty holds no arch.json"):
        teacher("final/empty")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"epoch": 3}, r"exp.yaml: epoch: unknown key 'epoch'.*did you mean 'epochs'"),
        ({"optimizer": "sgdm"}, "optimizer: unknown value 'sgdm'.*did you mean 'sgd'"),
        ({"warmup_epochs": -1}, "warmup_epochs: expected a number >= 0"),
        ({"epochs": 2, "warmup_epochs": 3}, r"exp.yaml: `0 <= warmup_epochs <= epochs`"),
        ({"amp": "yes"}, "amp: expected true or false"),
        ({"checkpoint_every": 0}, "checkpoint_every: expected an integer >= 1"),
        ({"distill": {"temp": 2}}, r"distill.temp: unknown key 'temp'.*'temperature'"),
        ({"distill": {"weight": 1.5}}, "distill.weight: expected a number <= 1"),
        ({"distill": {"temperature": 0}}, "distill.temperature: expected a number > 0"),
        ({"distill": {"teacher": ""}}, "distill.teacher: expected a non-empty string"),
        ({"distill": True}, "distill: expected a mapping"),
    ],
)
def test_config_from_node_errors(value: dict[str, Any], match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        FinetuneConfig.from_node(Node(value, file="exp.yaml"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"`epochs >= 1` must hold, but got epochs=0"),
        ({"lr": float("nan")}, "lr > 0"),
        ({"weight_decay": -1.0}, "weight_decay >= 0"),
        ({"warmup_epochs": 31.0}, r"warmup_epochs <= epochs`.*warmup_epochs=31.0, epochs=30"),
        ({"label_smoothing": 1.0}, "label_smoothing < 1"),
        ({"checkpoint_every": 0}, "checkpoint_every >= 1"),
        ({"optimizer": "adamm"}, "did you mean 'adam'"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        FinetuneConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"teacher": ""}, "teacher` must be 'best' or the path"),
        ({"temperature": 0.0}, r"`0 < temperature <= 100` must hold, but got temperature=0.0"),
        ({"weight": -0.1}, r"`0 <= weight <= 1` must hold, but got weight=-0.1"),
    ],
)
def test_distill_config_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        DistillConfig(**kwargs)


def test_configs_and_result_round_trip() -> None:
    distill = DistillConfig(teacher="a/arch.json", temperature=3.0, weight=0.25)
    assert DistillConfig.from_dict(distill.to_dict()) == distill
    for config in (FinetuneConfig(), FinetuneConfig(epochs=2, threads=2, distill=distill)):
        assert FinetuneConfig.from_dict(config.to_dict()) == config
    assert FinetuneConfig(distill=distill).to_dict()["distill"] == distill.to_dict()
    with pytest.raises(NasConfigError, match="unknown key 'epoch'.*did you mean 'epochs'"):
        FinetuneConfig.from_dict({"epoch": 3})
    history = ({"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_accuracy": 0.7, "lr": 0.1},)
    result = FinetuneResult(0.7, 0.8, 0.9, 1, 2.0, 48.0, 0, history)
    assert FinetuneResult.from_dict(result.to_dict()) == result
    assert isinstance(result.to_dict()["history"], list)
    with pytest.raises(ValueError, match="one entry per epoch"):
        FinetuneResult(0.7, 0.8, 0.9, 2, 2.0, 48.0, 0, history)
    with pytest.raises(ValueError, match="resumed_from_epoch <= epochs_run"):
        FinetuneResult(0.7, 0.8, 0.9, 1, 2.0, 48.0, 2, history)


def test_result_fields_are_finite(data: SplitData) -> None:
    result = finetune(_net(), data, replace(_QUICK, epochs=1))
    assert all(math.isfinite(v) for v in (result.val_loss, result.train_loss))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_channels_last_and_resume(data: SplitData, tmp_path: Path) -> None:
    config = replace(_QUICK, amp=True, channels_last=True)
    with pytest.raises(KeyboardInterrupt):
        finetune(_net().cuda(), data, config, checkpoint_dir=tmp_path, progress=_Interrupt(1))
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["rng_cuda"] is not None
    assert (state["scaler"] is None) == torch.cuda.is_bf16_supported()  # fp16 needs loss scaling
    model = _net(seed=7).cuda()
    result = finetune(model, data, config, checkpoint_dir=tmp_path)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 3
    assert math.isfinite(result.val_loss) and 0.0 <= result.val_accuracy <= 1.0
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


class _HugeModel(nn.Module):
    """Finite but exploded logits (lr 1e4 on digits: loss 7e6, accuracy 0.10)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * 1e7


def test_an_exploded_but_finite_loss_is_divergence(data: SplitData) -> None:
    with pytest.raises(
        FinetuneDivergedError, match=r"diverged in epoch 1: the loss exploded"
    ) as e:
        finetune(_HugeModel(), data, _QUICK)
    assert "lower 'lr'" in str(e.value) and "lower 'lr'" not in e.value.detail


def test_a_temperature_past_100_is_refused_at_load() -> None:
    node = Node({"distill": {"temperature": 1e20}}, file="exp.yaml")
    with pytest.raises(
        NasConfigError,
        match=r"distill.temperature: temperature 1e\+20 is too "
        r"high.*\(0, 100\], typical values are 1-20",
    ):
        FinetuneConfig.from_node(node)
    with pytest.raises(NasConfigError, match=r"`0 < temperature <= 100` must hold"):
        DistillConfig(temperature=101.0)
    assert DistillConfig(temperature=100.0).temperature == 100.0


def test_arguments_of_another_kind_are_named_before_training(data: SplitData) -> None:
    """finetune(model, data, TrainConfig()) failed with "'TrainConfig' object has no attribute
    'distill'"; a model for 3 channels with torch's error 14 frames deep; evaluate() on numpy
    arrays with "'numpy.ndarray' object has no attribute 'to'"."""
    from nas.train import TrainConfig, train_and_evaluate

    three = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(256, 4))
    for call, message in (
        (lambda: finetune(_net(), data, TrainConfig()), r"^config: finetune takes a Finetune"),
        (lambda: train_and_evaluate(_net(), None, TrainConfig()), r"^data: expected a SplitData"),
        (lambda: finetune(three, data, _QUICK), r"^data 'quadrants': images have 1 channels but"),
        (
            lambda: evaluate(_net(), data.x_val.numpy(), data.y_val),
            r"^x: expected a torch\.Tensor",
        ),
        (lambda: evaluate(_net(), data.x_val, data.y_val.float()), r"^y: expected int64 class"),
    ):
        with pytest.raises(NasConfigError, match=message):
            call()
