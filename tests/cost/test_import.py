from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from nas import NasConfigError
from nas.cost import LookupTable
from nas.cost._import import HWNASBENCH_DEVICES, IMPORT_FORMATS, import_table
from nas.space import Layer, SearchSpace, load_space, space_from_dict
from tests.conftest import shared_file

HWNB = "hw-nas-bench-fbnet-lut"
PIXEL1 = "latency-lut-proxylessnas-pixel1/pixel_trim.yaml"
VITIS = "latency-lut-ofa-vitis-ai"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# -- HW-NAS-Bench FBNet -> HELP ground truth -----------------------------------------------------


def _fast_layers(space: SearchSpace, archs: list) -> list[tuple[Layer, ...]]:
    """``space.layers(arch)`` for many FBNet archs, built from per-(position, op) layers.

    In the FBNet space every stage's width and stride are fixed, so the layer at position j
    with op o is the same whatever the other positions hold; computing the 9 uniform
    architectures once gives every layer (checked against ``space.layers`` below).
    """
    params = list(space.parameters())
    labels = space.parameters()[params[0]]
    uniform = {o: space.layers(space.parse(" ".join([o] * len(params)))) for o in labels}
    first = uniform[labels[0]]
    stem, tail = first[0], first[1 + len(params) :]
    return [
        (stem, *(uniform[a.choices[p]][1 + j] for j, p in enumerate(params)), *tail) for a in archs
    ]


@pytest.fixture(scope="module")
def fbnet_help():
    """(space, per-arch layers, HELP latency rows) for the 5,000 HELP FBNet architectures."""
    archs_rows = _read_csv(shared_file("help-latency/fbnet_archs.csv"))
    truth = _read_csv(shared_file("help-latency/fbnet_latency_ms.csv"))
    assert [r["index"] for r in archs_rows] == [r["index"] for r in truth]
    space = load_space("fbnet")
    archs = [space.parse(r["arch_str"]) for r in archs_rows]
    layers = _fast_layers(space, archs)
    for arch, fast in zip(archs[:50], layers[:50], strict=True):
        assert space.layers(arch) == fast
    return space, layers, truth


@pytest.mark.parametrize("device", ["raspi4", "pixel3", "eyeriss", "fpga"])
def test_hwnasbench_import_reproduces_help_latency_of_5000_fbnet_archs(fbnet_help, device):
    space, layers, truth = fbnet_help
    table = import_table("hwnasbench-fbnet", shared_file(HWNB), device)
    assert len(table.entries) == len(space.possible_layers())
    rel = [
        abs(table.estimate(arch_layers).latency_ms - float(row[device])) / float(row[device])
        for arch_layers, row in zip(layers, truth, strict=True)
    ]
    worst = max(range(len(rel)), key=rel.__getitem__)
    assert rel[worst] <= 1e-6, f"arch {truth[worst]['index']}: relative error {rel[worst]:.3g}"


def test_hwnasbench_keys_use_the_input_resolution_and_classifier_sums_avgp_and_fc():
    table = import_table("hwnasbench-fbnet", shared_file(HWNB), "raspi4")
    by_sig = {k[0]: e for k, e in table.entries.items()}
    doc = json.loads((shared_file(HWNB) / "fbnet_cached_metrics.json").read_text())
    lat = doc["raspi4_latency"]
    stem = by_sig["conv_k3_g1_relu-in:3x32x32-out:16x32x32-s1"]
    assert stem.source == "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1"
    block = by_sig["mbconv_k5_e1_g2_relu-in:24x32x32-out:32x16x16-s2"]  # 32x32 in, 16x16 out
    assert block.source == "ConvBlock_H32_W32_Cin24_Cout32_exp1_kernel5_stride2_group2"
    assert block.latency_ms_p50 == lat[block.source]
    assert by_sig["skip-in:112x8x8-out:184x4x4-s2"].source == "Skip_H8_W8_Cin112_Cout184_stride2"
    head = by_sig["conv1x1_g1_relu-in:352x4x4-out:1504x4x4-s1"]
    assert head.source == "ConvNorm_H4_W4_Cin352_Cout1504_kernel1_stride1_group1"
    cls = by_sig["classifier-in:1504x4x4-out:100x1x1-s1"]
    avgp, fc = "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1", "FC_Cin1504_Cout100"
    assert cls.source == f"{avgp} + {fc}"
    assert cls.latency_ms_p50 == lat[avgp] + lat[fc]
    assert all(e.kind == "imported" and e.energy_mj == 0.0 for e in table.entries.values())
    assert table.meta["value_kinds"]["energy"] == "absent in source"
    assert table.meta["source"]["commit"] == "49dfd269b195a3dfc84d86b6b6751ef7738549c4"
    assert table.meta["source"]["repo"] == "fracapuano/sim-is-more"
    space = load_space("fbnet")
    assert table.meta["spaces"] == {"fbnet": space.hash}
    assert table.meta["protocol"]["batch"] == 1 and table.meta["model_overhead_ms"] == 0.0


def test_hwnasbench_edgegpu_energy_is_imported():
    src = shared_file(HWNB)
    table = import_table("hwnasbench-fbnet", src / "fbnet_block_lut.csv", "edgegpu", name="tx2")
    assert table.device == "tx2"
    assert table.meta["value_kinds"] == {
        "latency": "measured in source",
        "energy": "measured in source",
    }
    energy = {
        r["block"]: float(r["edgegpu_energy"]) for r in _read_csv(src / "fbnet_block_lut.csv")
    }
    space = load_space("fbnet")
    layers = space.layers(space.random(3))
    by_hand = sum(energy[k] for x in layers for k in table.entry(x).source.split(" + "))
    assert table.estimate(layers).energy_mj == pytest.approx(by_hand, rel=1e-12)
    for e in table.entries.values():
        identity = e.op == "skip" and e.stride == 1 and e.in_c == e.out_c  # 0 mJ in the source
        assert (e.energy_mj == 0.0) == identity, e.signature


def test_hwnasbench_json_and_csv_sources_agree():
    src = shared_file(HWNB)
    a = import_table("hwnasbench-fbnet", src / "fbnet_cached_metrics.json", "eyeriss")
    b = import_table("hwnasbench-fbnet", src / "fbnet_block_lut.csv", "eyeriss")
    assert a.entries == b.entries


# -- ofa-yaml (ProxylessNAS mobile table, OFA Vitis-AI examples) ---------------------------------


def test_ofa_yaml_pixel1_predicts_the_hand_summed_latency_of_one_arch():
    src = shared_file(PIXEL1)
    table = import_table("ofa-yaml", src, "pixel1")
    space = load_space("mbconv_imagenet")
    assert len(table.entries) == len(space.possible_layers())  # full coverage
    arch = space.parse(
        "k3_e1 | k3_e3 k3_e3 | k5_e6 k5_e6 | k7_e3 k7_e3 | k3_e6 k3_e6 | k5_e3 k5_e3 | k7_e6"
    )
    ec = "expanded_conv-input:"
    keys = [
        "Conv-input:224x224x3-output:112x112x32",
        ec + "112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0",
        ec + "112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0",
        ec + "56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:1",
        ec + "56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0",
        ec + "28x28x40-output:28x28x40-expand:6-kernel:5-stride:1-idskip:1",
        ec + "28x28x40-output:14x14x80-expand:3-kernel:7-stride:2-idskip:0",
        ec + "14x14x80-output:14x14x80-expand:3-kernel:7-stride:1-idskip:1",
        ec + "14x14x80-output:14x14x96-expand:6-kernel:3-stride:1-idskip:0",
        ec + "14x14x96-output:14x14x96-expand:6-kernel:3-stride:1-idskip:1",
        ec + "14x14x96-output:7x7x192-expand:3-kernel:5-stride:2-idskip:0",
        ec + "7x7x192-output:7x7x192-expand:3-kernel:5-stride:1-idskip:1",
        ec + "7x7x192-output:7x7x320-expand:6-kernel:7-stride:1-idskip:0",
        "Conv_1-input:7x7x320-output:7x7x1280",
        "Logits-input:7x7x1280-output:1000",
    ]
    doc = yaml.safe_load(src.read_text())
    layers = space.layers(arch)
    assert [table.entry(x).source for x in layers] == keys
    est = table.estimate(layers)
    assert est.latency_ms == pytest.approx(sum(doc[k]["mean"] for k in keys), rel=1e-12)
    assert math.isnan(est.energy_mj) and est.kind == "imported"  # no energy in the source
    stem = table.entry(layers[0])
    raw = doc[keys[0]]
    assert stem.latency_ms_p50 == stem.latency_ms_mean == raw["mean"]
    assert stem.latency_ms_std == pytest.approx(math.sqrt(raw["var"])) and stem.n == raw["count"]
    assert table.meta["protocol"]["statistic"] == "mean"
    assert "latency_ms_p50 := mean" in table.meta["protocol"]["note"]
    assert table.meta["value_kinds"]["energy"] == "absent in source"
    assert table.meta["source"]["commit"] == "a660b8a35082a9defef764e591d6901160c367ae"


def _ofa_vitis_space(resolution: int) -> SearchSpace:
    """The OFA MobileNetV2 layout the Vitis-AI example tables cover (widths 30/20/30/40/80/
    100/190/320, expansion 4/5/6, kernels 3/5/7): not ``mbconv_imagenet``."""
    ops = [f"mbconv_k{k}_e{e}_relu6" for e in (4, 5, 6) for k in (3, 5, 7)]
    stages = [{"depth": 1, "width": 20, "stride": 1, "ops": ["mbconv_k3_e1_relu6"]}]
    for width, stride in ((30, 2), (40, 2), (80, 2), (100, 1), (190, 2)):
        stages.append({"depth": [2, 3, 4], "width": width, "stride": stride, "ops": ops})
    stages.append({"depth": 1, "width": 320, "stride": 1, "ops": ops})
    return space_from_dict(
        {
            "name": f"ofa_vitis_{resolution}",
            "type": "chain",
            "input": {"channels": 3, "height": resolution, "width": resolution},
            "num_classes": 1000,
            "stem": {"op": "conv_k3_relu6", "width": 30, "stride": 2},
            "stages": stages,
            "head": {"op": "conv1x1_relu6", "width": 1280},
        }
    )


@pytest.mark.parametrize("resolution", [128, 144, 160, 176, 192, 208, 224])
def test_ofa_vitis_tables_cover_the_ofa_layout(resolution):
    src = shared_file(f"{VITIS}/{resolution}_lookup_table.yaml")
    space = _ofa_vitis_space(resolution)
    table = import_table("ofa-yaml", src, "vitis_example", space=space)
    assert len(table.entries) == len(space.possible_layers())
    doc = yaml.safe_load(src.read_text())
    entry = next(e for e in table.entries.values() if e.op == "classifier")
    assert entry.latency_ms_std == doc[entry.source]["std"]  # this format gives std, not var
    assert table.meta["spaces"] == {space.name: space.hash}


def test_ofa_vitis_table_does_not_cover_mbconv_imagenet():
    with pytest.raises(
        NasConfigError,
        match=r"no entry for layer stem conv_k3_g1_relu6-in:3x224x224-out:32x112x112-s2 .*"
        r"looked for key 'Conv-input:224x224x3-output:112x112x32' \(and 58 more",
    ):
        import_table("ofa-yaml", shared_file(f"{VITIS}/224_lookup_table.yaml"), "vitis_example")


# -- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "src", "device"),
    [("hwnasbench-fbnet", HWNB, "fpga"), ("ofa-yaml", PIXEL1, "pixel1")],
)
def test_imported_table_round_trips_through_save_and_load(tmp_path, fmt, src, device):
    table = import_table(fmt, shared_file(src), device)
    loaded = LookupTable.load(table.save(tmp_path / f"{device}.json"))
    assert loaded.device == device and loaded.entries == table.entries
    assert loaded.meta["value_kinds"] == table.meta["value_kinds"]
    assert loaded.meta["source"] == table.meta["source"]
    space = load_space("fbnet" if fmt == "hwnasbench-fbnet" else "mbconv_imagenet")
    loaded.check_space(space)
    for seed in range(20):
        layers = space.layers(space.random(seed))
        assert loaded.estimate(layers) == table.estimate(layers)


def test_a_latency_only_table_leaves_its_energy_cells_empty(tmp_path):
    table = import_table("ofa-yaml", shared_file(PIXEL1), "pixel1")
    assert not table.has_energy
    path = table.save(tmp_path / "pixel1.json")
    with path.with_suffix(".csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["energy_mj"] == "" for r in rows)  # not a made-up 0.0
    assert LookupTable.load(path).entries == table.entries
    # a table that holds energy must give every row's
    meta = json.loads(path.read_text())
    meta["value_kinds"]["energy"] = "measured"
    path.write_text(json.dumps(meta))
    with pytest.raises(NasConfigError, match=r"pixel1.csv:2: column energy_mj: expected a number"):
        LookupTable.load(path)


# -- errors -------------------------------------------------------------------------------------


def test_unknown_format_lists_formats_and_the_nearest():
    assert IMPORT_FORMATS == ("hwnasbench-fbnet", "ofa-yaml")
    with pytest.raises(
        NasConfigError,
        match=r"unknown table format 'hwnasbench_fbnet'; choose one of hwnasbench-fbnet, "
        r"ofa-yaml \(did you mean 'hwnasbench-fbnet'\?\)",
    ):
        import_table("hwnasbench_fbnet", "nowhere", "raspi4")


def test_unknown_hwnasbench_device_lists_devices():
    assert HWNASBENCH_DEVICES == ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga")
    with pytest.raises(
        NasConfigError,
        match=r"unknown device 'raspi'; choose one of edgegpu, raspi4, pixel3, eyeriss, fpga "
        r"\(did you mean 'raspi4'\?\)",
    ):
        import_table("hwnasbench-fbnet", "nowhere", "raspi")


def test_a_source_of_the_other_format_names_the_format_that_reads_it(tmp_path):
    (tmp_path / "fbnet_block_lut.csv").write_text("key,raspi4_latency\n")
    with pytest.raises(NasConfigError, match=r"read with --format hwnasbench-fbnet"):
        import_table("ofa-yaml", tmp_path / "fbnet_block_lut.csv", "raspi4")
    (tmp_path / "224_lookup_table.yaml").write_text("a: {count: 1, mean: 1.0, var: 0.0}\n")
    with pytest.raises(NasConfigError, match=r"read with --format ofa-yaml"):
        import_table("hwnasbench-fbnet", tmp_path / "224_lookup_table.yaml", "raspi4")


def test_missing_hwnasbench_key_names_our_signature_and_the_key(tmp_path):
    doc = json.loads((shared_file(HWNB) / "fbnet_cached_metrics.json").read_text())
    del doc["pixel3_latency"]["Skip_H8_W8_Cin112_Cout184_stride2"]
    (tmp_path / "fbnet_cached_metrics.json").write_text(json.dumps(doc))
    with pytest.raises(
        NasConfigError,
        match=r"no entry for layer stages\.5\.0 skip-in:112x8x8-out:184x4x4-s2 of space 'fbnet': "
        r"looked for key 'Skip_H8_W8_Cin112_Cout184_stride2'",
    ):
        import_table("hwnasbench-fbnet", tmp_path, "pixel3")


def test_missing_ofa_key_and_unmapped_op_are_errors(tmp_path):
    space = space_from_dict(
        {
            "name": "tiny_mb",
            "type": "chain",
            "input": {"channels": 3, "height": 8, "width": 8},
            "num_classes": 10,
            "stem": {"op": "conv_k3_relu6", "width": 8, "stride": 2},
            "stages": [{"depth": 1, "width": 8, "stride": 1, "ops": ["mbconv_k3_e3_relu6"]}],
        }
    )
    keys = {
        "Conv-input:8x8x3-output:4x4x8": {"count": 10, "mean": 0.5, "var": 0.04},
        "Logits-input:4x4x8-output:10": {"count": 10, "mean": 0.25, "var": 0.0},
    }
    src = tmp_path / "lut.yaml"
    src.write_text(yaml.safe_dump(keys))
    block = "expanded_conv-input:4x4x8-output:4x4x8-expand:3-kernel:3-stride:1-idskip:1"
    with pytest.raises(
        NasConfigError,
        match=rf"no entry for layer stages\.0\.0 mbconv_k3_e3_g1_relu6-in:8x4x4-out:8x4x4-s1 "
        rf".*looked for key '{block}'",
    ):
        import_table("ofa-yaml", src, "toy", space=space)
    src.write_text(yaml.safe_dump({**keys, block: {"count": 5, "mean": 1.0, "var": 0.01}}))
    table = import_table("ofa-yaml", src, "toy", space=space)
    assert table.estimate(space.layers(space.random(0))).latency_ms == pytest.approx(1.75)
    with pytest.raises(NasConfigError, match=r"has no counterpart in the 'ofa-yaml' key format"):
        import_table("ofa-yaml", src, "toy", space=load_space("fbnet"))


def test_cli_import_never_silently_replaces_a_table(tmp_path, capsys):
    """Importing another device column into the same file is refused; a re-import keeps the
    previous table beside the new one (a study that costed with it can go on)."""
    from nas.cli import main

    src, out = str(shared_file(HWNB)), tmp_path / "raspi4.json"
    argv = ["import-table", src, "--format", "hwnasbench-fbnet", "--out", str(out)]
    assert main([*argv, "--device", "raspi4"]) == 0
    first = out.read_text()
    capsys.readouterr()
    assert main([*argv, "--device", "pixel3"]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: --out {out}: holds device 'raspi4' of its source; importing 'pixel3' would "
        f"replace those numbers under the same name: choose another --out (e.g. "
        f"{tmp_path / 'pixel3.json'}), or pass --force to replace it\n"
    )
    assert out.read_text() == first
    assert main([*argv, "--device", "raspi4"]) == 0
    assert f"replacing {out}; the previous table is kept as {tmp_path / 'raspi4.prev.json'}" in (
        capsys.readouterr().err
    )
    kept = LookupTable.load(tmp_path / "raspi4.prev.json")
    assert kept.entries == LookupTable.load(out).entries
    # for another space it says what an imported table can and cannot do (not: profile here)
    archs = tmp_path / "a.txt"
    archs.write_text(load_space("mobilenet_small").format(load_space("mobilenet_small").random(0)))
    assert main(["cost", "--space", "mobilenet_small", "--table", str(out), "--archs", str(archs)])
    err = capsys.readouterr().err
    assert "covers the spaces fbnet, not 'mobilenet_small'; the table was imported" in err
    assert "nas profile --space" not in err


def test_a_folder_of_the_other_format_names_the_format_it_needs(tmp_path):
    from nas.space import load_space

    yamls, fbnet = tmp_path / "ofa", tmp_path / "hw"
    yamls.mkdir()
    fbnet.mkdir()
    (yamls / "160_lookup_table.yaml").write_text("{}\n")
    (fbnet / "fbnet_block_lut.csv").write_text("block\n")
    space = load_space("fbnet")
    with pytest.raises(NasConfigError, match=r"holds YAML tables: --format ofa-yaml"):
        import_table("hwnasbench-fbnet", yamls, space=space, device="raspi4")
    with pytest.raises(NasConfigError, match=r"FBNet table: --format hwnasbench-fbnet"):
        import_table("ofa-yaml", fbnet, space=space, device="raspi4")


def test_bad_source_values_are_named_at_the_source_key(tmp_path):
    """A negative mean was reported at our signature, not at the source file's key."""
    neg = tmp_path / "neg.yaml"
    neg.write_text("Conv_1:\n  count: 3\n  mean: -4.0\n  var: 0.1\n")
    with pytest.raises(NasConfigError, match=r"neg\.yaml: Conv_1: mean must be a finite number"):
        import_table("ofa-yaml", neg, "x")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(NasConfigError) as info:
        import_table("ofa-yaml", broken, "x")
    assert "broken.yaml:2: not valid YAML: " in str(info.value) and "\n" not in str(info.value)
    lut = tmp_path / "fbnet_block_lut.csv"
    lut.write_text("block,raspi4_latency\nConvBlock_x,nan\n")
    with pytest.raises(NasConfigError, match=r"ConvBlock_x: raspi4_latency must be a finite"):
        import_table("hwnasbench-fbnet", lut, "raspi4")
