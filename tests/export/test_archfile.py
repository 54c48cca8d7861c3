"""arch.json files: self-contained, validated, and loadable with weights in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

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


def test_a_file_without_weights_warns_that_the_model_is_untrained(tmp_path):
    space = load_space("mobilenet_small")
    path = write_architecture_file(tmp_path / "arch.json", space, space.random(4))
    with pytest.warns(UserWarning, match=r"arch\.json names no weights: the model has its seeded"):
        nas.load_architecture(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nas.load_architecture(path, weights=False)  # said so: no warning


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
    with pytest.raises(
        NasConfigError,
        match=r"weights do not match architecture .*another network's: name this architecture's "
        r"weights file, or remove 'weights' from the file",
    ):
        nas.load_architecture(path)
    assert nas.load_architecture(path, weights=False) is not None
    doc = json.loads(path.read_text())
    edited = doc | {"choices": dict(doc["choices"]) | {"s1.width": 999}}
    path.write_text(json.dumps(edited))  # the invalid choice is named, not the arch_id
    with pytest.raises(NasConfigError, match=r"s1.width.* 999"):
        nas.load_architecture(path)
    widths = load_space("mobilenet_small").parameters()["s1.width"]
    other = next(w for w in widths if w != doc["choices"]["s1.width"])
    edited = doc | {"choices": dict(doc["choices"]) | {"s1.width": other}}
    path.write_text(json.dumps(edited))  # a valid edit: the arch_id no longer names it
    with pytest.raises(NasConfigError, match=r"does not match its content .* delete its arch_id"):
        nas.load_architecture(path)


def test_weights_of_an_architecture_with_the_same_tensors_are_refused(tmp_path):
    """Two cells that differ in a pooling edge have the same tensors: shapes cannot tell the
    weights apart, the file's metadata can."""
    space = load_space("nasbench201")
    pool = space.parse(
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
    )
    skip = space.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
    )
    state = space.build(skip, seed=0).state_dict()
    assert state.keys() == space.build(pool).state_dict().keys()
    weights = tmp_path / "skip.safetensors"
    save_file(state, str(weights), metadata={"arch_id": skip.arch_id})
    path = write_architecture_file(tmp_path / "arch.json", space, pool, weights=weights)
    with pytest.raises(
        NasConfigError,
        match=rf"skip.safetensors: the weights of architecture {skip.arch_id} \(the file's "
        rf"metadata\), not of {pool.arch_id} that .*arch.json describes: name {pool.arch_id}'s "
        "weights file",
    ):
        nas.load_architecture(path)
    path = write_architecture_file(tmp_path / "arch.json", space, skip, weights=weights)
    assert nas.load_architecture(path).architecture == skip


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"schema_version": "1"}, r"schema_version: expected the number 1, got the string '1'"),
        ({"schema_version": None}, r"missing key 'schema_version' .* add it, or re-export"),
    ],
)
def test_a_wrong_or_missing_schema_version_says_what_to_write(saved, edit, match):
    path, *_ = saved
    doc = json.loads(path.read_text()) | edit
    path.write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))
    with pytest.raises(NasConfigError, match=match):
        read_architecture_file(path)


def test_edited_space_spec_is_detected(saved):
    path, *_ = saved
    doc = json.loads(path.read_text())
    doc["space_spec"]["num_classes"] = 11
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError, match="space_spec hashes to"):
        read_architecture_file(path)


def test_an_edited_space_name_names_the_key_and_the_fix(saved):
    """It said 'from space X (hash h), not from Y (hash h)': no file, no key, one hash twice."""
    path, *_ = saved
    doc = json.loads(path.read_text())
    right = doc["space"]
    doc["space"] = "nasbench201"  # its arch_id no longer matches: named after the edit
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError) as info:
        read_architecture_file(path)
    assert str(info.value) == (
        f"{path}: space: names 'nasbench201' but the file's space_spec is space '{right}'; "
        f'set "space": "{right}" (the file was edited by hand)'
    )


def test_an_edited_string_is_refused_not_loaded_as_the_choices_architecture(saved):
    """A file whose `string` was edited loaded, and showed, the architecture of its choices."""
    path, *_ = saved
    doc = json.loads(path.read_text())
    right = doc["string"]
    doc["string"] = right + " x"
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError) as info:
        read_architecture_file(path)
    assert str(info.value).startswith(
        f"{path}: string: {right + ' x'!r} is not the architecture its choices make ({right!r})"
    )


def test_not_json(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{oops")
    with pytest.raises(NasConfigError, match=r"a\.json:1: not valid JSON"):
        nas.load_architecture(bad)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07\xbb\xff")
    with pytest.raises(NasConfigError, match=r"model\.onnx: an ONNX model, not JSON; name an"):
        nas.load_architecture(onnx_file)
    with pytest.raises(
        NasConfigError, match=r": is a folder; expected an arch\.json \(or model_int8\.json\)"
    ):
        nas.load_architecture(tmp_path)


@pytest.fixture
def pruned_saved(tmp_path):
    """A structurally pruned model written as arch.json + ``pruned`` + its safetensors."""
    from nas.compress import prune_structured, shape_overrides

    space = load_space("mobilenet_small")
    arch = space.random(4)
    model = space.build(arch, seed=1).eval()
    small = prune_structured(model, torch.randn(1, *space.input_shape), ratio=0.5)
    weights = tmp_path / "w" / "model.safetensors"
    weights.parent.mkdir()
    save_file(small.state_dict(), str(weights))
    path = write_architecture_file(
        tmp_path / "arch.json",
        space,
        arch,
        weights=weights,
        pruned=shape_overrides(small, space.build(arch)),
    )
    return path, small, model, space


def test_pruned_model_loads_in_a_fresh_process(pruned_saved, tmp_path):
    path, small, _, space = pruned_saved
    assert json.loads(path.read_text())["pruned"]["stem.0"] == {"out_channels": 8}
    x = torch.randn(2, *space.input_shape)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    code = (
        "import sys, nas, torch; from safetensors.torch import load_file, save_file;"
        "m = nas.load_architecture(sys.argv[1]); x = load_file(sys.argv[2])['x'];"
        "save_file({'y': m(x).detach()}, sys.argv[3])"
    )
    args = [str(path), str(tmp_path / "x.safetensors"), str(tmp_path / "y.safetensors")]
    subprocess.run([sys.executable, "-c", code, *args], check=True)
    from safetensors.torch import load_file

    with torch.no_grad():
        assert torch.allclose(load_file(str(tmp_path / "y.safetensors"))["y"], small(x), atol=1e-6)
    loaded = nas.load_architecture(path)
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in small.parameters()
    )


def test_unpruned_weights_against_pruned_arch_are_refused(pruned_saved, tmp_path):
    path, _, model, _ = pruned_saved
    save_file(model.state_dict(), str(tmp_path / "w" / "model.safetensors"))
    with pytest.raises(
        NasConfigError, match=r"weights do not match architecture .*wrong shape.*pruned widths"
    ):
        nas.load_architecture(path)
    assert nas.load_architecture(path, weights=False) is not None


@pytest.mark.parametrize(
    ("pruned", "match"),
    [
        ([8], r"arch\.json: pruned: expected a mapping of module names"),
        ({"stem.0": 8}, r"arch\.json: pruned\.stem\.0: expected a mapping of attribute names"),
        ({"stem.0": {"out_channels": 0}}, r"arch\.json: pruned\.stem\.0\.out_channels: .*0"),
        ({"stem.0": {"out_channels": True}}, r"pruned\.stem\.0\.out_channels: .*positive int"),
    ],
)
def test_malformed_pruned_entry_is_one_line(pruned_saved, pruned, match):
    path, *_ = pruned_saved
    doc = json.loads(path.read_text())
    doc["pruned"] = pruned
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError, match=match) as info:
        read_architecture_file(path)
    assert "\n" not in str(info.value)


def test_pruned_entry_naming_an_unknown_module(pruned_saved):
    path, *_ = pruned_saved
    doc = json.loads(path.read_text())
    doc["pruned"]["stem.7"] = {"out_channels": 8}
    path.write_text(json.dumps(doc))
    with pytest.raises(NasConfigError, match=r"arch\.json: pruned: no module 'stem\.7'"):
        nas.load_architecture(path)


def test_unpruned_file_has_no_pruned_key(saved):
    path, *_ = saved
    assert "pruned" not in json.loads(path.read_text())


def test_show_gives_the_pruned_models_real_counts(pruned_saved, capsys):
    from nas.cli import main

    path, small, model, _ = pruned_saved
    assert main(["show", str(path)]) == 0
    *lines, last, weights_line = capsys.readouterr().out.strip().splitlines()
    params = sum(p.numel() for p in small.parameters())
    assert last.startswith(f"pruned: the widths of arch.json's 'pruned'; {params:,} params (")
    # the rows are the pruned model's layers (they listed the searched widths)
    stem = next(line.split() for line in lines if line.startswith("stem "))
    assert stem[3] == f"{small.stem[0].out_channels}x8x8"
    assert next(line for line in lines if line.startswith("total")).split()[1] == f"{params:,}"
    assert weights_line == "weights: w/model.safetensors (every tensor fits the model)"
    # its INT8 twin's file describes the same widths (the counts come from them, not the ONNX);
    # its ONNX graph is missing here, which show reports after the counts
    doc = json.loads(path.read_text()) | {"precision": "int8", "onnx": "model_int8.onnx"}
    (path.parent / "model_int8.json").write_text(json.dumps(doc))
    assert main(["show", str(path.parent / "model_int8.json")]) == 2
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == last.replace("arch.json", "model_int8.json")
    assert "model_int8.onnx does not exist" in err


def test_show_checks_that_the_weights_load(saved, capsys):
    from nas.cli import main

    path, *_ = saved
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc | {"weights": "w/gone.safetensors"}))
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gone.safetensors does not exist (its 'weights' key is relative to the arch.json" in err
    assert "untrained with weights=False" in err and err.count("\n") == 1
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "weights"}))
    assert main(["show", str(path)]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("weights: none, the seeded initialization (train it with nas train)")
    )


def test_plain_architecture_json_of_a_builtin_space_loads(tmp_path):
    # `nas show --json` prints the architecture without its space_spec: fine for built-ins
    from nas.export import read_architecture_file

    space = load_space("nasbench201")
    arch = space.random(3)
    plain = tmp_path / "plain.json"
    plain.write_text(arch.to_json())
    read_space, read_arch, _ = read_architecture_file(plain)
    assert read_arch == arch and read_space.hash == space.hash
    foreign = json.loads(arch.to_json()) | {"space": "mine"}
    foreign.pop("arch_id")
    plain.write_text(json.dumps(foreign))
    with pytest.raises(
        NasConfigError, match=r"missing key 'space_spec' .*'mine' is not a built-in"
    ):
        read_architecture_file(plain)


def test_an_export_folder_loads_through_its_arch_json(saved):
    path, model, space, _ = saved
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        assert torch.equal(nas.load_architecture(path.parent)(x), model(x))


def test_build_names_the_parse_step_for_a_string():
    space = load_space("nasbench201")
    with pytest.raises(TypeError, match=r"got str \(parse a string first: space\.parse"):
        space.build(space.format(space.random(0)))


def test_an_architecture_without_weights_loads_as_its_seeded_initialization(tmp_path):
    import warnings

    import torch

    from nas import load_architecture
    from nas.export import write_architecture_file
    from nas.space import load_space

    space = load_space("mobilenet_small")
    arch = space.random(0)
    path = write_architecture_file(tmp_path / "arch.json", space, arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = load_architecture(path), load_architecture(path, weights=False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    built = space.build(arch, seed=0).state_dict()
    assert all(torch.equal(built[k], v) for k, v in a.state_dict().items())


def test_weights_files_are_the_same_bytes_for_the_same_tensors(tmp_path):
    """safetensors writes its metadata in a random order: two exports of one model differed,
    and the deflated sizes in final/summary.csv moved by a byte or two from run to run."""
    from safetensors import safe_open

    from nas.export._bundle import weights_bytes

    space = load_space("nasbench201")
    state = space.build(space.random(0), seed=0).state_dict()
    meta = {"arch_id": "a" * 12, "space": "nasbench201", "space_hash": "b" * 12}
    files = {weights_bytes(state, meta) for _ in range(8)}
    assert len(files) == 1
    path = tmp_path / "w.safetensors"
    path.write_bytes(files.pop())
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == meta and set(f.keys()) == set(state)
