from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_SPACE


@pytest.fixture
def tiny_experiment(tmp_path: Path):
    """Write a tiny space and an experiment on 400 digits; returns a writer taking extra YAML."""
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)

    def write(extra: str = "", *, n_trials: int = 6, objectives: str = "[error, params]") -> Path:
        path = tmp_path / "exp.yaml"
        path.write_text(
            f"""
name: tiny
space: tiny.yaml
data: {{dataset: digits, limit: 400, seed: 0}}
train: {{epochs: 1, batch_size: 64, lr: 0.01, seed: 0}}
objectives: {objectives}
search: {{sampler: tpe, n_trials: {n_trials}, seed: 0}}
{extra}
"""
        )
        return path

    return write
