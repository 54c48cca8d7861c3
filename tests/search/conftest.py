from __future__ import annotations

from pathlib import Path

import pytest

TINY_SPACE = """
name: tiny_cell
type: cell
input: {channels: 1, height: 8, width: 8}
num_classes: 10
ops: {none: zero, skip_connect: skip, nor_conv_3x3: rcb_k3}
cell: {nodes: 3, ops: [none, skip_connect, nor_conv_3x3]}
stem: {op: conv_k3_linear, width: 8}
stages:
  - {cells: 1, width: 8}
head: {op: bnact_relu}
"""


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
