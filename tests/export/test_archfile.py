"""arch.json files: self-contained, validated, and loadable with weights in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import nas
from nas import NasConfigError
from nas.export import read_architecture_file, write_architecture_file
from nas.space import load_space


@pytest.fixture
def saved(tmp_path):
    space = load_space("mobilenet_small")
    arch = space.random(4)
    model = space.build(arch, seed=1).eval()
    weights = tmp_path / "w" / "model.safetensors"
    weights.parent.mkdir()
    save_file(model.state_dict(), str(weights))
    path = write_architecture_file(
        tmp_path / "arch.json", space, arch, metrics={"error": 0.1}, weights=weights
    )
    return path, model, space, arch


def test_round_trip_with_weights(saved):
    path, model, space, arch = saved
    loaded = nas.load_architecture(path)
    assert loaded.architecture == arch
    x = torch.randn(3, *space.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    doc = json.loads(path.read_text())
    assert doc["string"] == space.format(arch) and doc["metrics"] == {"error": 0.1}


def test_fresh_process_reproduces_outputs(saved, tmp_path):
    path, model, space, _ = saved
    x = torch.randn(2, *space.input_shape)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    code = (
        "import sys, nas, torch; from safetensors.torch import load_file, save_file;"
        "m = nas.load_architecture(sys.argv[1]); x = load_file(sys.argv[2])['x'];"
        "save_file({'y': m(x).detach()}, sys.argv[3])"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(path),
            str(tmp_path / "x.safetensors"),
            str(tmp_path / "y.safetensors"),
        ],
        check=True,
    )
    from safetensors.torch import load_file

    with torch.no_grad():
        assert torch.allclose(load_file(str(tmp_path / "y.safetensors"))["y"], model(x))


def test_mismatched_weights_name_what_differs(saved, tmp_path):
    path, _, space, _ = saved
    other = space.build(space.random(99))
    save_file(other.state_dict(), str(tmp_path / "w" / "model.safetensors"))
    with pytest.raises(NasConfigError, match="weights do not match architecture"):
        nas.load_architecture(path)
    assert nas.load_architecture(path, weights=False) is not None


def test_edited_space_spec_is_detected(saved):
    path, *_ = saved
    doc = json.loads(path.read_text())
    doc["space_spec"]["num_classes"] = 11
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError, match="space_spec hashes to"):
        read_architecture_file(path)


def test_not_json(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{oops")
    with pytest.raises(NasConfigError, match=r"a\.json:1: not valid JSON"):
        nas.load_architecture(bad)
