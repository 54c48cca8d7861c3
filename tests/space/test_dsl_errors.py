"""Malformed space files raise one error type naming file, line, key, allowed values, nearest."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from nas import NasConfigError
from nas.space import SearchSpace, builtin_space_dir, load_space

BASE = (builtin_space_dir() / "mobilenet_small.yaml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        (
            "mb_k3_e1, mb_k3_e3",
            "mb_k3_e1, mb_k4_e3",
            r"space\.yaml:\d+: stages\[0\]\.ops\[1\]: unknown op 'mb_k4_e3': .*; choose one of .*"
            r"\(did you mean 'mb_k[35]_e3'\?\)",
        ),
        (  # inline built-in ops are offered too, and a malformed one gets its own reason
            "mb_k3_e1, mb_k3_e3",
            "mb_k3_e1, skp",
            r"stages\[0\]\.ops\[1\]: unknown op 'skp': neither a label under 'ops:' nor a "
            r"built-in op spec.*zero \(did you mean 'skip'\?\)",
        ),
        (
            "mb_k3_e1, mb_k3_e3",
            "mb_k3_e1, mbconv_k3_x3",
            r"stages\[0\]\.ops\[1\]: op 'mbconv_k3_x3': unknown token 'x3'",
        ),
        (  # an unknown key is named, not the required key it stands in for
            "{depth: [1, 2], width: [16, 24]",
            "{depth: [1, 2], channels: [16, 24]",
            r"stages\[0\]\.channels: unknown key 'channels'; choose one of depth, ops, stride, "
            r"width",
        ),
        (
            "stem: {op: conv_k3_relu6, width: 16",
            "stem: {op: conv_k3_relu6, channels: 16",
            r"stem\.channels: unknown key 'channels'",
        ),
        (
            "width_divisor: 8",
            "width_divisr: 8",
            r"space\.yaml:\d+: width_divisr: unknown key 'width_divisr'.*"
            r"did you mean 'width_divisor'",
        ),
        ("num_classes: 10", "num_classes: ten", r"num_classes: expected an integer, got 'ten'"),
        (
            "width: [16, 24]",
            "width: [16, 20]",
            r"stages\[0\]\.width\[1\]: width 20 is not a multiple of width_divisor 8; "
            r"use 16 or 24",
        ),
        (
            "stride: 2, ops: [mb_k3_e3, mb_k3_e6",
            "stride: 16, ops: [mb_k3_e3, mb_k3_e6",
            r"stages\[2\]\.stride: stride 16 shrinks the 4x4 feature map below 1 pixel",
        ),
        ("num_classes: 10\n", "", r"missing required key 'num_classes'"),
        (
            "mb_k3_e1: mbconv_k3_e1_relu6",
            "mb_k3_e1: mbconv_k3_e1_relu7",
            r"ops\.mb_k3_e1: op 'mbconv_k3_e1_relu7': unknown token 'relu7'.*relu6",
        ),
        ("type: chain", "type: chian", r"type: unknown value 'chian'.*did you mean 'chain'"),
        ("depth: [1, 2]", "depth: [0, 2]", r"stages\[0\]\.depth\[0\]: expected an integer >= 1"),
        ("mbconv_k3_e3_relu6", "mbconv_k4_e3_relu6", r"kernel must be odd"),
        (  # one op under two labels: the same models counted (and trained) twice
            "mb_k3_e1, mb_k3_e3",
            "mb_k3_e1, mbconv_k3_e1_relu6",
            r"stages\[0\]\.ops\[1\]: op 'mbconv_k3_e1_relu6' is the same op as 'mb_k3_e1' "
            r"\(mbconv_k3_e1_g1_relu6\); keep one",
        ),
        (
            "width: [16, 24]",
            "width: [16, 16]",
            r"stages\[0\]\.width: repeated values in \[16, 16\]; keep one of each",
        ),
    ],
)
def test_malformed_space_names_file_line_and_key(tmp_path, old, new, pattern):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(NasConfigError, match=pattern) as info:
        SearchSpace.from_yaml(path)
    assert "\n" not in str(info.value)
    assert info.value.file == str(path)


def test_line_number_points_at_the_bad_key(tmp_path):
    text = BASE.replace("width_divisor: 8", "width_divisr: 8")
    line = 1 + text.splitlines().index("width_divisr: 8")
    with pytest.raises(NasConfigError) as info:
        SearchSpace.from_yaml(write(tmp_path, text))
    assert info.value.line == line


def test_groups_that_do_not_divide_the_width(tmp_path):
    text = BASE.replace("mb_k3_e1: mbconv_k3_e1_relu6", "mb_k3_e1: mbconv_k3_e1_g3_relu6")
    with pytest.raises(NasConfigError, match=r"does not divide into 3 groups"):
        SearchSpace.from_yaml(write(tmp_path, text))


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(NasConfigError, match=r"space\.yaml:3: not valid YAML"):
        SearchSpace.from_yaml(write(tmp_path, "name: x\ntype: chain\n  bad: [\n"))
    with pytest.raises(NasConfigError, match=r"nope\.yaml: file not found"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nstages:\n  - a: 1\n   - b: 2\n",
            "space.yaml:4: not valid YAML: expected <block end>, but found '<block sequence "
            "start>' (check this line's indentation against the lines above: the keys of one "
            "mapping, and the items of one list, line up)",
        ),
        (
            "name: x\nstem:\n  op: conv\n   width: 2\n",
            "space.yaml:4: not valid YAML: mapping values are not allowed here (a value "
            "holding ': ' must be quoted; or this line is indented deeper than the keys "
            "beside it)",
        ),
        (  # a '}' left out: found two lines later, so where the brace opened is said too
            "name: x\nstem: {op: conv,\n  width: 2\ntype: chain\n",
            "space.yaml:4: not valid YAML: expected ',' or '}', but got ':' (while parsing a "
            "flow mapping on line 2)",
        ),
    ],
)
def test_yaml_mistakes_say_how_to_fix_them(tmp_path, text, message):
    with pytest.raises(NasConfigError) as info:
        SearchSpace.from_yaml(write(tmp_path, text))
    assert str(info.value).endswith(message)


def test_cell_width_change_needs_a_reduction(tmp_path):
    text = (builtin_space_dir() / "nasbench201.yaml").read_text()
    text = text.replace("{reduction: resnet_block, cells: 5, width: 32}", "{cells: 5, width: 32}")
    with pytest.raises(NasConfigError, match=r"stages\[1\]\.width: width changes from 16 to 32"):
        SearchSpace.from_yaml(write(tmp_path, text))


def test_a_cell_of_zero_ops_only_is_refused(tmp_path):
    text = (builtin_space_dir() / "nasbench201.yaml").read_text()
    text = text.replace(
        "ops: [none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]", "ops: [none]"
    )
    with pytest.raises(NasConfigError, match=r"cell\.ops: every op is a zero op"):
        SearchSpace.from_yaml(write(tmp_path, text))


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ("{op: conv_k3_linear, width: 16}", "{op: none, width: 16}", r"stem\.op"),
        (
            "{reduction: resnet_block, cells: 5, width: 32}",
            "{reduction: zero, cells: 5, width: 32}",
            r"stages\[1\]\.reduction",
        ),
        ("{op: bnact_relu}", "{op: zero}", r"head\.op"),
    ],
)
def test_a_zero_op_in_a_cell_spaces_fixed_layers_is_refused(tmp_path, old, new, pattern):
    text = (builtin_space_dir() / "nasbench201.yaml").read_text().replace("nasbench201", "mine")
    assert old in text, old
    with pytest.raises(NasConfigError, match=rf"{pattern}: '(none|zero)' is a zero op"):
        SearchSpace.from_yaml(write(tmp_path, text.replace(old, new, 1)))


def test_fixed_layers_take_labels_from_the_ops_library(tmp_path):
    text = (builtin_space_dir() / "nasbench201.yaml").read_text().replace("nasbench201", "mine")
    text = text.replace(
        "  avg_pool_3x3: avgpool_k3\n", "  avg_pool_3x3: avgpool_k3\n  rb: resnet_block\n"
    )
    text = text.replace("reduction: resnet_block", "reduction: rb")
    space = SearchSpace.from_yaml(write(tmp_path, text))
    assert all(s["reduction"] in (None, "resnet_block") for s in space.to_dict()["stages"])


def test_unknown_builtin_space_suggests_nearest():
    from nas.space import load_space

    with pytest.raises(NasConfigError, match=r"did you mean 'nasbench201'"):
        load_space("nasbench210")


def test_bad_architecture_strings():
    from nas.space import load_space

    nb = load_space("nasbench201")
    with pytest.raises(NasConfigError, match=r"expected 3"):
        nb.parse("|nor_conv_3x3~0|")
    with pytest.raises(NasConfigError, match=r"unknown op 'conv_5x5'.*did you mean"):
        nb.parse("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(NasConfigError, match=r"'rcb_k3' is labelled 'nor_conv_3x3' in this"):
        nb.parse("|rcb_k3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    spaced = "|nor_conv_3x3~0| + |none~0| none~1|+|none~0|none~1|none~2|"  # spaces are skipped
    assert nb.format(nb.parse(spaced)) == spaced.replace(" ", "")
    with pytest.raises(NasConfigError, match=r"like '\|[a-z_0-9]+~0\|\+"):  # the space's own
        nb.parse("|none~0|+|none~0|none~1|")
    fb = load_space("fbnet")
    with pytest.raises(NasConfigError, match=r"unknown op 'k7_e6'"):
        fb.parse(" ".join(["k7_e6"] * 22))
    with pytest.raises(NasConfigError, match=r"expected 22 ops separated by spaces, got 21"):
        fb.parse(" ".join(["k3_e1"] * 21))
    ms = load_space("mobilenet_small")
    with pytest.raises(NasConfigError, match=r"separate the 3 stages with '\|'"):
        ms.parse("mb_k3_e1 mb_k3_e3")


def test_a_space_file_may_not_take_a_builtin_name_for_another_space(tmp_path):
    builtin = (builtin_space_dir() / "mobilenet_small.yaml").read_text()
    copy = tmp_path / "copy.yaml"
    copy.write_text(builtin)
    assert load_space(copy).hash == load_space("mobilenet_small").hash  # a plain copy is fine
    copy.write_text(builtin.replace("width: [16, 24]", "width: [16, 32]", 1))
    with pytest.raises(
        NasConfigError,
        match=r"copy\.yaml:\d+: name: 'mobilenet_small' is the "
        r"name of a built-in space .*'name: my_mobilenet_small'",
    ):
        load_space(copy)
    copy.write_text(copy.read_text().replace("name: mobilenet_small", "name: mine", 1))
    assert load_space(copy).name == "mine"


def test_a_number_that_is_no_choice_suggests_the_nearest_number():
    from nas._errors import nearest

    assert nearest(25, [24, 32, 40]) == "24" and nearest(37, [24, 32, 40]) == "40"
    assert nearest("w", [24, 32]) is None and nearest("nsga", ["nsga2", "tpe"]) == "nsga2"
    space = load_space("mobilenet_small")
    with pytest.raises(
        NasConfigError,
        match=r"no choice 25; choose one of 24, 32, 40 \(did you "
        r"mean 24\?\)",  # a number, unquoted
    ):
        space.parse("w16 fused_k3_e3 | w25 fused_k3_e3 | w48 skip")


def test_files_in_another_encoding_are_named_with_their_line(tmp_path, capsys):
    from nas.cli import main

    latin1 = tmp_path / "space.yaml"
    latin1.write_bytes(
        b"# my space\n# caf\xe9\n" + BASE.replace("mobilenet_small", "mine").encode()
    )
    with pytest.raises(NasConfigError, match=r"space\.yaml:2: not UTF-8 text \(byte 0xe9, "):
        SearchSpace.from_yaml(latin1)
    assert main(["sample", "--space", str(latin1)]) == 2
    assert "save the file as UTF-8" in capsys.readouterr().err
    archs = tmp_path / "archs.txt"
    archs.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")  # an image
    assert main(["cost", "--space", "nasbench201", "--table", "cpu", "--archs", str(archs)]) == 2
    assert "a binary file, not text" in capsys.readouterr().err
    # a byte-order mark is not part of the first architecture
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    archs.write_bytes(b"\xef\xbb\xbf" + arch.encode() + b"\n")
    assert main(["cost", "--space", "nasbench201", "--table", "cpu", "--archs", str(archs)]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(arch + ",")


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ("{op: conv_k3_relu6, width: 16, stride: 1}", "{op: zero, width: 16, stride: 1}", "stem"),
        ("mb_k3_e6_se, skip]", "mb_k3_e6_se, nothing]", r"stages\[2\]\.ops"),
    ],
)
def test_zero_op_is_refused_in_chain_spaces(tmp_path, old, new, pattern):
    assert old in BASE, old
    text = BASE.replace(old, new, 1).replace("ops:\n", "ops:\n  nothing: zero\n", 1)
    with pytest.raises(NasConfigError, match=rf"{pattern}.*outputs all zeros"):
        SearchSpace.from_yaml(write(tmp_path, text.replace("mobilenet_small", "mine")))


PLUGIN = """
from torch import nn
from nas.space import Op, register_op


@register_op
class PluginConv(Op):
    type_name = "pluginconv"
    defaults = {"kernel": 3}

    def build(self, cin, cout, stride):
        return nn.Conv2d(cin, cout, self.kernel, stride, self.kernel // 2)
"""


@pytest.fixture
def plugin_space(tmp_path, monkeypatch):
    """A space file whose op comes from a module beside it, named under imports:."""
    import sys

    from nas.space import _ops

    (tmp_path / "my_plugin_ops.py").write_text(PLUGIN)
    text = BASE.replace("name: mobilenet_small", "name: plugged\nimports: [my_plugin_ops]")
    text = text.replace("  skip: skip\n", "  skip: skip\n  pc_k3: pluginconv_k3\n", 1)
    text = text.replace("ops: [mb_k3_e1, mb_k3_e3,", "ops: [pc_k3, mb_k3_e3,", 1)
    monkeypatch.chdir(tmp_path.parent)  # not the space's folder: found beside the space file
    yield write(tmp_path, text)
    _ops._REGISTRY.pop("pluginconv", None)  # other tests see the built-in ops only
    _ops.parse_op.cache_clear()
    _ops.profile_layer.cache_clear()  # counts of the plugin's modules, which tests rewrite
    sys.modules.pop("my_plugin_ops", None)


def test_a_space_imports_the_module_of_its_own_ops(plugin_space, tmp_path):
    from nas.export import read_architecture_file, write_architecture_file

    space = load_space(plugin_space)
    assert space.to_dict()["imports"] == ["my_plugin_ops"]
    arch = space.parse("w16 pc_k3 | w24 mb_k3_e3 | w32 mb_k3_e3")
    model = space.build(arch, seed=0)
    assert model(__import__("torch").zeros(1, 1, 8, 8)).shape == (1, 10)
    # an arch.json carries the space, imports included: it loads where the module imports
    saved = write_architecture_file(tmp_path / "arch.json", space, arch)
    assert read_architecture_file(saved)[1] == arch


def test_an_arch_json_of_a_space_with_imports_loads_from_anywhere(plugin_space, tmp_path):
    """From another folder, a run's arch.json failed: 'cannot import module my_ops ... put
    my_ops.py beside the space file', though no space file was named."""
    import json
    import subprocess
    import sys

    import torch

    from nas.export import write_architecture_file
    from nas.export._bundle import export_float

    space = load_space(plugin_space)
    arch = space.parse("w16 pc_k3 | w24 mb_k3_e3 | w32 mb_k3_e3")
    elsewhere = tmp_path / "runs" / "architectures"
    elsewhere.mkdir(parents=True)
    saved = write_architecture_file(elsewhere / "a.json", space, arch)
    assert json.loads(saved.read_text())["op_modules"] == {"my_plugin_ops": str(tmp_path)}
    folder = tmp_path / "export"  # an export folder carries the module: it ships whole
    files = export_float(folder, space, arch, space.build(arch), example=torch.zeros(2, 1, 8, 8))
    assert "my_plugin_ops.py" in files["files"] and (folder / "my_plugin_ops.py").is_file()
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    (tmp_path / "my_plugin_ops.py").rename(tmp_path / "gone.py")  # only the copy is left
    folder.rename(moved)
    load = "import sys, nas; print(type(nas.load_architecture(sys.argv[1])).__name__)"
    for path in (moved / "arch.json", saved):  # the copy beside it; then where it was found
        if path == saved:
            (tmp_path / "gone.py").rename(tmp_path / "my_plugin_ops.py")
        done = subprocess.run(
            [sys.executable, "-c", load, str(path)], cwd="/", capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.strip() == "Network", done.stderr
    (tmp_path / "my_plugin_ops.py").unlink()  # found nowhere: says where to put it
    done = subprocess.run(
        [sys.executable, "-c", load, str(saved)], cwd="/", capture_output=True, text=True
    )
    assert "put my_plugin_ops.py beside a.json" in done.stderr
    assert f"it was found in {tmp_path} when {saved} was written" in done.stderr


def test_an_import_that_fails_names_the_module_and_the_fix(tmp_path):
    text = BASE.replace("name: mobilenet_small", "name: plugged\nimports: [no_such_ops_mod]")
    with pytest.raises(NasConfigError) as info:
        load_space(write(tmp_path, text))
    message = str(info.value)
    assert (
        message.startswith(f"{tmp_path / 'space.yaml'}:")
        and "imports[0]: cannot import " in message
    )
    assert "put no_such_ops_mod.py beside the space file" in message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from torch import nn\ndef broken(:\n    pass\n", r"\.py:2: SyntaxError: invalid syntax"),
        ('raise RuntimeError("boom at import")\n', r"\.py:1: RuntimeError: boom at import"),
        ("import no_such_dependency_mod\n", r"\.py:1: No module named 'no_such_dependency_mod'"),
        (
            PLUGIN.replace('"pluginconv"', '"conv"'),
            r"\.py:\d+: ValueError: op type 'conv' is already registered \(by "
            r"nas\.space\._ops\.Conv\); give PluginConv another type_name",
        ),
    ],
)
def test_a_module_that_breaks_on_import_is_named_at_its_line(tmp_path, source, message):
    """A module of ops that failed to import (a syntax error, an exception, an op type taken)
    ended the command in a traceback."""
    name = f"broken_ops_{zlib.crc32(source.encode())}"
    (tmp_path / f"{name}.py").write_text(source)
    text = BASE.replace("name: mobilenet_small", f"name: plugged\nimports: [{name}]")
    with pytest.raises(NasConfigError, match=rf"imports\[0\]: cannot import module '{name}' "):
        load_space(write(tmp_path, text))
    with pytest.raises(NasConfigError, match=rf"{name}{message}.*; fix {name}\.py$"):
        load_space(write(tmp_path, text))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            'raise ValueError("my build is broken")',
            r"PluginConv from my_plugin_ops failed on a 16x8x8 input at my_plugin_ops\.py:\d+: "
            r"ValueError: my build is broken; fix its build\(\)",
        ),
        (
            "return nn.Conv2d(cin, cout + 1, 3, 1, 1)",
            r"its module returns 17x8x8, not 16x8x8; an op's build\(cin, cout, stride\) must "
            r"return \(N, cout, ceil\(H/stride\), ceil\(W/stride\)\)",
        ),
        (
            "return nn.Conv2d(cin + 1, cout, 3, stride, 1)",
            "failed on a 16x8x8 input at its module's forward, inside torch: RuntimeError",
        ),
    ],
)
def test_an_op_of_ones_own_that_breaks_its_contract_is_named(
    plugin_space, tmp_path, build, message
):
    """A build() that raised ended the command in a traceback; one that returned another shape
    than the contract's was accepted, and every count after it was another network's."""
    from nas.search import load_experiment
    from nas.search._study import prepare

    module = tmp_path / "my_plugin_ops.py"
    module.write_text(PLUGIN.replace(
        "return nn.Conv2d(cin, cout, self.kernel, stride, self.kernel // 2)", build
    ))  # fmt: skip
    space = load_space(plugin_space)
    arch = space.parse("w16 pc_k3 | w24 mb_k3_e3 | w32 mb_k3_e3")
    with pytest.raises(NasConfigError, match=r"op pluginconv_k3 \(16 -> 16 channels, stride 1\)"):
        space.layers(arch)
    with pytest.raises(NasConfigError, match=message):
        space.layers(arch)
    # a search checks every layer the space can hold before its study exists
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: e\nspace: {plugin_space}\nobjectives: [params, macs]\n")
    with pytest.raises(NasConfigError, match=rf"^{plugin_space}: op pluginconv_k3 .*{message}"):
        prepare(load_experiment(exp))


def test_a_study_of_a_space_with_imports_reports_from_any_folder(plugin_space, tmp_path):
    """nas pareto/nas export from another folder failed ('cannot import module ... put it in
    the working directory'), and nas pareto left the files it had written before failing."""
    import subprocess
    import sys

    from nas.pipeline import run_experiment
    from nas.search import load_experiment

    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: plug\nspace: {plugin_space}\nobjectives: [params, macs]\n"
        "search: {sampler: random, n_trials: 3, seed: 0}\n"
    )
    run_experiment(load_experiment(exp), tmp_path / "run")
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    report = (
        "import sys; from nas.search import load_study, write_report; "
        "write_report(load_study(sys.argv[1], 'plug'), sys.argv[2])"
    )

    def pareto(out):
        return subprocess.run(
            [sys.executable, "-c", report, storage, str(out)], cwd="/", capture_output=True,
            text=True,
        )  # fmt: skip

    done = pareto(tmp_path / "again")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "again" / "pareto.csv").is_file()
    (tmp_path / "my_plugin_ops.py").unlink()  # found nowhere: nothing written
    done = pareto(tmp_path / "never")
    assert f"it was found in {tmp_path} when study plug was written" in done.stderr
    assert not (tmp_path / "never").exists()


def test_a_mistyped_label_that_reads_as_a_built_in_op_is_offered_the_label(tmp_path):
    """'skip_conect' starts with the built-in 'skip': the error named an unknown token 'conect'
    and never the label 'skip_connect' it was meant to be."""
    text = (builtin_space_dir() / "nasbench201.yaml").read_text()
    text = text.replace("ops: [none, skip_connect,", "ops: [none, skip_conect,", 1)
    with pytest.raises(
        NasConfigError,
        match=r"cell\.ops\[1\]: unknown op 'skip_conect': not a label under 'ops:' \(did you "
        r"mean 'skip_connect'\?\), and as a built-in op spec: op 'skip_conect': unknown token",
    ):
        load_space(write(tmp_path, text.replace("name: nasbench201", "name: mine")))


def test_ops_code_changed_since_a_file_or_study_is_said(plugin_space, tmp_path, caplog):
    """Editing the module of one's ops changed no hash: a study went on with trials built by
    other code without a word, and weights then 'did not match' with no hint of why."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    from nas.export import write_architecture_file
    from nas.search import load_experiment
    from nas.search._study import open_study

    space = load_space(plugin_space)
    arch = space.parse("w16 pc_k3 | w24 mb_k3_e3 | w32 mb_k3_e3")
    save_file(space.build(arch, seed=0).state_dict(), str(tmp_path / "w.safetensors"))
    saved = write_architecture_file(
        tmp_path / "a.json", space, arch, weights=tmp_path / "w.safetensors"
    )
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: e\nspace: {plugin_space}\nobjectives: [params, macs]\n")
    storage = f"sqlite:///{tmp_path / 's.db'}"
    open_study(load_experiment(exp), space, storage)
    module = tmp_path / "my_plugin_ops.py"
    module.write_text(
        module.read_text().replace("self.kernel // 2)", "self.kernel // 2, bias=False)")
    )
    load = "import sys, nas; nas.load_architecture(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", load, str(saved)], cwd="/", capture_output=True, text=True
    )
    assert "weights do not match architecture" in done.stderr
    assert "my_plugin_ops.py, where its ops come from, has changed since the file was" in (
        done.stderr
    )
    with caplog.at_level("WARNING", logger="nas.search._study"):
        open_study(load_experiment(exp), space, storage)  # (this process: the digest now)
    assert "study 'e' was searched with another my_plugin_ops.py than this one" in caplog.text


def test_spaces_compare_by_what_they_define_and_refuse_bad_seeds(tmp_path):
    """Two loads of one space were unequal; sp.random('x') and random(-1) raised numpy's
    SeedSequence errors, random_distinct(-1) returned []; load_space(None) said "unknown search
    space 'None'", YAML text gave 'File name too long', and an export folder was refused."""
    import numpy as np

    from nas.export import write_architecture_file

    a, b = load_space("nasbench201"), load_space(builtin_space_dir() / "nasbench201.yaml")
    assert a == b and hash(a) == hash(b) and a != load_space("fbnet")
    for call, message in (
        (lambda: a.random("x"), r"^rng: expected a seed \(an integer >= 0\)"),
        (lambda: a.random(-1), r"^rng: expected a seed"),
        (lambda: a.random_distinct(-1), r"^n: expected an integer >= 0, got -1"),
        (lambda: load_space(None), r"^expected a search space's name or path, got NoneType"),
        (lambda: load_space("name: x\ntype: chain\n"), r"got YAML text; read text with"),
    ):
        with pytest.raises(NasConfigError, match=message):
            call()
    assert a.random(np.int64(3)) == a.random(3)
    (tmp_path / "export").mkdir()
    write_architecture_file(tmp_path / "export" / "arch.json", a, a.random(0))
    assert load_space(tmp_path / "export") == a
