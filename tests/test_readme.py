"""The README's space files and architecture strings are real: each loads and parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nas.space import SearchSpace, load_space

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SPACES = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "\ntype: " in b]


def test_the_readme_shows_both_kinds_of_space():
    assert {re.search(r"\ntype: (\w+)", b)[1] for b in SPACES} == {"chain", "cell"}


@pytest.mark.parametrize("text", SPACES, ids=lambda t: re.search(r"name: (\w+)", t)[1])
def test_each_space_in_the_readme_loads(text, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = SearchSpace.from_yaml(path)
    arch = space.random(0)
    assert space.parse(space.format(arch)) == arch
    if "4,096 cells" in text:  # the size its comment states
        assert space.size() == 4096


@pytest.mark.parametrize(
    ("space", "pattern"),
    [("mobilenet_small", r"`(w24 [^`]+)`"), ("nasbench201", r"`(\|nor_conv_3x3~0\|\+[^`]+)`")],
)
def test_the_readme_arch_strings_parse(space, pattern):
    text = re.search(pattern, README)[1]
    loaded = load_space(space)
    assert loaded.format(loaded.parse(text)) == text
