from __future__ import annotations

import numpy as np
import pytest
import torch

from nas import NasConfigError, load_architecture
from nas.compress import QuantizeConfig, check_calibration, quantize_int8, quantize_onnx
from nas.export import OnnxModule, export_float, export_int8, export_onnx, optimized_graph
from nas.space import load_space
from nas.train import DataConfig, evaluate, load_data


@pytest.fixture(scope="module")
def trained():
    """A small mobilenet_small model trained briefly on digits, and the data."""
    from nas.search._study import adapt_space
    from nas.train import TrainConfig, train_and_evaluate

    data = load_data(DataConfig("digits", val_fraction=0.25, limit=600))
    space = adapt_space(load_space("mobilenet_small"), data)
    arch = space.random(3)
    model = space.build(arch, seed=0)
    train_and_evaluate(model, data, TrainConfig(epochs=3, lr=0.01, threads=1))
    return space, arch, model.eval(), data


def test_ptq_int8_onnx_runs_in_onnxruntime_and_keeps_accuracy(trained, tmp_path):
    space, arch, model, data = trained
    q = quantize_int8(model, data.x_train[:128])
    result = export_int8(tmp_path, space, arch, q, example=data.x_val[:4], check=data.x_val)
    onnx_path = tmp_path / "model_int8.onnx"
    assert result["onnx_check"]["argmax_agreement"] >= 0.97
    # the int8 graph holds int8 weights: ONNX Runtime runs it with int8 kernels
    import onnx

    types = {i.data_type for i in onnx.load(str(onnx_path)).graph.initializer}
    assert onnx.TensorProto.INT8 in types
    # the file says what it is when it travels alone
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["nas.arch_id"] == arch.arch_id and props["nas.arch"] == space.format(arch)
    assert props["nas.variant"] == "int8"
    # a file to share: no exporter debug metadata (stack traces naming this machine's paths)
    assert b"stack_trace" not in onnx_path.read_bytes()
    export_onnx(model, data.x_val[:4], tmp_path / "model.onnx")
    assert onnx_path.stat().st_size < (tmp_path / "model.onnx").stat().st_size  # int8 pays off
    session = OnnxModule(onnx_path)
    acc_int8 = float((session(data.x_val).argmax(1) == data.y_val).float().mean())
    acc_fp32 = evaluate(model, data.x_val, data.y_val)[0]
    assert acc_int8 >= acc_fp32 - 0.03
    # the same call that loads float models loads the int8 variant
    loaded = load_architecture(tmp_path / "model_int8.json")
    assert isinstance(loaded, OnnxModule) and loaded.architecture == arch
    assert torch.equal(loaded(data.x_val[:5]), session(data.x_val[:5]))
    assert not loaded.training  # inference only, like a float model after .eval()
    assert torch.equal(loaded(data.x_val[:5].numpy()), session(data.x_val[:5]))
    with pytest.raises(NasConfigError, match="weights are part of its ONNX graph"):
        load_architecture(tmp_path / "model_int8.json", weights=False)
    # another model's INT8 file in its place (the float file here) is named, not run
    (tmp_path / "model.onnx").replace(onnx_path)
    with pytest.raises(
        NasConfigError,
        match=r"model_int8\.json: onnx file .*model_int8\.onnx is "
        r"not the one this file was written with \(its SHA-256 differs",
    ):
        load_architecture(tmp_path / "model_int8.json")
    # the README's export_onnx(int8, ...) checks an INT8 graph by its classes, not 1e-4
    check = export_onnx(q, data.x_val[:4], tmp_path / "again_int8.onnx", check=data.x_val)
    assert check["argmax_agreement"] >= 0.97


def test_onnxruntime_quantizer_keeps_accuracy_and_quantizes_between_convolutions(
    trained, tmp_path
):
    """tool: onnxruntime quantizes the FP32 ONNX model; it keeps the residual adds and the
    classifier in int8 too, so ONNX Runtime crosses between float and int8 less often than on
    PT2E's export."""
    import onnx

    space, arch, model, data = trained
    export_float(tmp_path, space, arch, model, example=data.x_val[:4])
    out = quantize_onnx(tmp_path / "model.onnx", tmp_path / "ort_int8.onnx", data.x_train[:128])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    graph = onnx.load(str(out)).graph
    assert onnx.TensorProto.INT8 in {i.data_type for i in graph.initializer}
    acc_int8 = float((OnnxModule(out)(data.x_val).argmax(1) == data.y_val).float().mean())
    assert acc_int8 >= evaluate(model, data.x_val, data.y_val)[0] - 0.03
    q = quantize_int8(model, data.x_train[:128])
    export_int8(tmp_path, space, arch, q, example=data.x_val[:4], check=data.x_val)

    def crossings(path):  # float <-> int8 conversions ONNX Runtime runs after its fusions
        nodes = optimized_graph(path).node
        return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes)

    assert crossings(out) < crossings(tmp_path / "model_int8.onnx")


def test_pt2e_int8_runs_every_convolution_residual_add_and_the_classifier_in_int8(
    trained, tmp_path
):
    """x86's recipe left a convolution before a residual add in float (Inductor fuses the pair)
    and the classifier's logits in float; ONNX Runtime then ran them in float, dequantizing
    their weights on every call. The ONNX Runtime annotation makes them all int8 kernels."""
    space, arch, model, data = trained
    q = quantize_int8(model, data.x_train[:128])
    check = export_onnx(q, data.x_val[:4], tmp_path / "m.onnx", check=data.x_val)
    assert check["argmax_agreement"] >= 0.97
    ops = [n.op_type for n in optimized_graph(tmp_path / "m.onnx").node]
    residual_adds = sum(n.op_type == "Add" for n in _float_graph(model, data))
    assert residual_adds >= 1 and ops.count("QLinearAdd") == residual_adds
    assert not {"Conv", "FusedConv", "Add", "Gemm", "MatMul"} & set(ops), ops
    assert ops.count("QGemm") == 1


def _float_graph(model, data):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, data.x_val[:4], Path(tmp) / "f.onnx")
        import onnx

        return list(onnx.load(str(Path(tmp) / "f.onnx")).graph.node)


def test_float_export_matches_pytorch_within_1e_4(trained, tmp_path):
    space, arch, model, data = trained
    out = export_float(tmp_path, space, arch, model, example=data.x_val[:4])
    assert out["onnx_check"]["max_abs_diff"] <= 1e-4
    assert b"stack_trace" not in (tmp_path / "model.onnx").read_bytes()
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.pt2") as archive:
        assert all(name.startswith("archive/") for name in archive.namelist())
        assert not any(b"site-packages" in archive.read(name) for name in archive.namelist())
    onnx_out = OnnxModule(tmp_path / "model.onnx")(data.x_val)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out.numpy(), model(data.x_val).numpy(), atol=1e-4)
        program = torch.export.load(str(tmp_path / "model.pt2")).module()
        assert torch.allclose(program(data.x_val), model(data.x_val), atol=1e-5)
    reloaded = load_architecture(tmp_path / "arch.json")
    with torch.no_grad():
        assert torch.equal(reloaded(data.x_val), model(data.x_val))


def test_quantization_aware_training_calls_the_trainer_on_the_fake_quantized_graph(trained):
    _, _, model, data = trained
    seen = []

    def train(prepared):
        prepared.train()
        out = prepared(data.x_train[:8])
        out.sum().backward()
        seen.append(type(prepared).__name__)

    q = quantize_int8(model, data.x_train[:64], train=train)
    assert seen and q(data.x_val[:3]).shape == (3, data.num_classes)


def test_calibration_of_the_wrong_shape_is_named():
    with pytest.raises(
        NasConfigError,
        match=r"calib: calibration images have shape \(4, 3, 8, 8\) but .* \(N, 1, 8, 8\)",
    ):
        check_calibration(torch.zeros(4, 3, 8, 8), (1, 8, 8), source="calib")
    with pytest.raises(NasConfigError, match="at least one float image"):
        check_calibration(torch.zeros(0, 1, 8, 8), (1, 8, 8), source="calib")


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((4, 1, 8, 8), np.float32), r"expected a torch.Tensor .* got numpy.ndarray"),
        (torch.zeros(4, 3, 8, 8), r"images have 3 channels but .* first convolution takes 1"),
        (torch.zeros(0, 1, 8, 8), r"expected at least one float image .* shape \(0, 1, 8, 8\)"),
        (torch.zeros(4, 8, 8), r"expected at least one float image .* shape \(4, 8, 8\)"),
    ],
)
def test_python_api_names_bad_calibration_and_example_images(images, match):
    from nas.compress import prune_structured

    space = load_space("mobilenet_small")
    model = space.build(space.random(0), seed=0).eval()
    with pytest.raises(NasConfigError, match=f"calibration: {match}"):
        quantize_int8(model, images)
    with pytest.raises(NasConfigError, match=f"example_input: {match}"):
        prune_structured(model, images, ratio=0.5)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"calibration": 0}, "calibration >= 1"),
        ({"qat": "sometimes"}, "unknown qat mode 'sometimes'"),
        ({"max_drop": 1.5}, "0 <= max_drop < 1"),
        ({"tool": "tensorrt"}, "unknown quantize tool 'tensorrt'; choose one of pt2e, onnx"),
    ],
)
def test_bad_quantize_configs(kwargs, pattern):
    with pytest.raises(NasConfigError, match=pattern):
        QuantizeConfig(**kwargs)


def test_post_training_conversion_skips_the_qat_batch_norm_search_without_changing_the_graph(
    monkeypatch,
):
    """A batch norm left alone after post-training folding (a cell's output norm) made
    convert_pt2e search for QAT conv + batch norm patterns; skipping the search must give the
    same converted graph, or torchao has changed and the shortcut must go."""
    import contextlib

    import nas.compress._quantize as quantize

    space = load_space("nasbench201")
    model = space.build(space.random(3), seed=0).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    images = torch.randn(8, *space.input_shape, generator=torch.Generator().manual_seed(0))
    fast = quantize_int8(model, images)
    monkeypatch.setattr(quantize, "_no_qat_bn_folding", contextlib.nullcontext)
    searched = quantize_int8(model, images)
    assert fast.code == searched.code
    assert torch.equal(fast(images), searched(images))


def test_images_of_another_size_are_refused_before_tracing(tmp_path):
    """Calibration images of another height and width were taken (global pooling runs on any
    size), and the INT8 graph, traced at that size, then failed on the model's own inputs with
    'Guard failed: x.size()[2] == 28'; an export example of the wrong shape raised torch's
    TorchExportError."""
    import torch.nn.functional as F

    space = load_space("mobilenet_small")
    model = space.build(space.random(0), seed=0).eval()
    assert model.input_shape == (1, 8, 8)
    images = torch.randn(16, 1, 8, 8)
    with pytest.raises(
        NasConfigError,
        match=r"^calibration: images are 1x28x28 but the model takes 1x8x8 \(its space's input\)",
    ):
        quantize_int8(model, F.interpolate(images, size=28))
    with pytest.raises(NasConfigError, match=r"^example: images have 3 channels but the model"):
        export_onnx(model, torch.randn(2, 3, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(NasConfigError, match=r"^example: images are 1x16x16 but the model takes"):
        export_onnx(model, torch.randn(2, 1, 16, 16), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_fp32_and_int8_onnx_name_their_batch_dimension_alike(trained, tmp_path):
    """model.onnx called its batch dimension 's77' (a torch symbol), model_int8.onnx 'batch'."""
    import onnx

    space, arch, model, data = trained
    export_float(tmp_path / "f", space, arch, model, example=data.x_val[:2])
    q = quantize_int8(model, data.x_train[:64])
    export_int8(tmp_path / "q", space, arch, q, example=data.x_val[:2], check=data.x_val[:32])
    for path in (tmp_path / "f" / "model.onnx", tmp_path / "q" / "model_int8.onnx"):
        graph = onnx.load(str(path)).graph
        for value in (graph.input[0], graph.output[0]):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", path


def test_exports_refuse_a_model_that_is_not_what_they_write_and_leave_its_mode(tmp_path):
    """export_float wrote an unloadable folder for another architecture's model; export_int8
    labelled a float model INT8; exporting (and describe(model=)) left a training model in
    eval mode; a negative atol blamed the export."""
    space = load_space("mobilenet_small")
    arch, other = space.random(0), next(a for a in space.random_distinct(5, rng=1))
    model = space.build(arch, seed=0).train()
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(NasConfigError, match=r"^model: not the model of architecture "):
        export_float(tmp_path / "a", space, other, model, example=x)
    with pytest.raises(NasConfigError, match=r"^quantized: a float model, not an INT8 graph"):
        export_int8(tmp_path / "b", space, arch, model, example=x[:1], check=x)
    with pytest.raises(NasConfigError, match=r"^atol: expected a number >= 0"):
        export_onnx(model, x, tmp_path / "c.onnx", atol=-1)
    assert not list(tmp_path.iterdir()) and model.training
    export_float(tmp_path / "ok", space, arch, model, example=x)
    export_onnx(model, x, tmp_path / "ok.onnx")
    space.describe(arch, model=model)
    assert model.training  # exported and counted in eval mode, left as it was
    assert torch.allclose(
        load_architecture(tmp_path / "ok" / "arch.json")(x), model.eval()(x), atol=1e-5
    )


def test_quantize_onnx_checks_its_calibration_as_quantize_int8_does(tmp_path):
    """numpy images: 'ndarray has no attribute detach'; 3-channel images: ONNX Runtime's
    InvalidArgument; a missing file: the onnx package's FileNotFoundError; batch_size=0:
    'range() arg 3 must not be zero'."""
    space = load_space("mobilenet_small")
    model = space.build(space.random(0), seed=0).eval()
    x = torch.randn(16, 1, 8, 8)
    fp32 = tmp_path / "f.onnx"
    export_onnx(model, x, fp32)
    out = tmp_path / "q.onnx"
    for call, message in (
        (lambda: quantize_onnx(fp32, out, x.numpy()), r"^calibration: expected a torch\.Tensor"),
        (
            lambda: quantize_onnx(fp32, out, torch.randn(4, 3, 8, 8)),
            r"f\.onnx takes \(N, 1, 8, 8\)",
        ),
        (lambda: quantize_onnx(tmp_path / "no.onnx", out, x), r"no\.onnx: no such ONNX file"),
        (lambda: quantize_onnx(fp32, out, x, batch_size=0), r"^batch_size: expected an integer"),
        (lambda: quantize_int8(model, x, batch_size=0), r"^batch_size: expected an integer"),
    ):
        with pytest.raises(NasConfigError, match=message):
            call()
    assert not out.exists()
