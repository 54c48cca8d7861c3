from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (external benchmark data, see ../shared/data/INDEX.md)")
    return path


#: a 27-architecture cell space on 1x8x8 inputs: quick to build, train and profile in tests
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
