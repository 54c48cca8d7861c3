"""Contracts of nas.train._data: shapes, determinism, stratification, file formats, errors."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas._config import Node
from nas._errors import NasConfigError
from nas.train import DataConfig, SplitData, describe_split, load_data

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist-test-10k"
# Class counts of the 10,000 MNIST test labels (mnist-test-10k/PROVENANCE.md).
MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _tensors(data: SplitData) -> list[torch.Tensor]:
    return [data.x_train, data.y_train, data.x_val, data.y_val]


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _tiny_idx_dir(root: Path, prefix: str, n: int, *, seed: int = 0, gz: bool = False) -> None:
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    _write_idx(
        root / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 6, 5)), gz=gz
    )
    _write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 4, gz=gz)


# -- digits ------------------------------------------------------------------------------------


def test_digits_shapes_and_classes() -> None:
    data = load_data(DataConfig("digits"))
    assert data.sizes == (1437, 360)
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert tuple(data.x_val.shape) == (360, 1, 8, 8)
    assert set(data.y_train.tolist()) == set(range(10))


def test_digits_is_deterministic_and_seed_sensitive() -> None:
    a, b = load_data(DataConfig("digits", seed=3)), load_data(DataConfig("digits", seed=3))
    for x, y in zip(_tensors(a), _tensors(b), strict=True):
        assert torch.equal(x, y)
    c = load_data(DataConfig("digits", seed=4))
    assert not torch.equal(a.y_val, c.y_val)


def test_digits_split_is_stratified() -> None:
    data = load_data(DataConfig("digits", val_fraction=0.25))
    total = np.bincount(np.concatenate([data.y_train.numpy(), data.y_val.numpy()]))
    val = np.bincount(data.y_val.numpy(), minlength=10)
    assert np.all(np.abs(val - total * 0.25) <= 1.0)


def test_normalization_uses_train_statistics_only() -> None:
    raw = load_data(DataConfig("digits", normalize=False))
    norm = load_data(DataConfig("digits"))
    assert 0.0 <= float(raw.x_train.min()) and float(raw.x_train.max()) <= 1.0
    assert abs(float(norm.x_train.mean())) < 1e-5
    assert abs(float(norm.x_train.std()) - 1.0) < 1e-3
    mean, std = float(raw.x_train.mean()), float(raw.x_train.std())
    assert norm.channel_mean == pytest.approx((mean,), rel=1e-5)
    assert norm.channel_std == pytest.approx((std,), rel=1e-3)
    expected_val = (raw.x_val - norm.channel_mean[0]) / norm.channel_std[0]
    assert torch.allclose(norm.x_val, expected_val, atol=1e-5)
    assert raw.channel_mean == () and raw.channel_std == ()


def test_limit_subsamples_deterministically() -> None:
    a = load_data(DataConfig("digits", limit=300, seed=1))
    b = load_data(DataConfig("digits", limit=300, seed=1))
    assert sum(a.sizes) == 300 and a.sizes == (240, 60)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)


def test_limit_too_small_to_stratify_is_a_config_error() -> None:
    with pytest.raises(NasConfigError, match="cannot split 12 examples .* raise 'limit'"):
        load_data(DataConfig("digits", limit=12))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "mnsit"}, "did you mean 'mnist'"),
        ({"dataset": "digits", "val_fraction": 1.0}, "0 < val_fraction < 1"),
        ({"dataset": "digits", "limit": 1}, "limit >= 2"),
        ({"dataset": "mnist"}, "needs 'root'"),
        ({"dataset": "npz"}, "needs 'path'"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        DataConfig(**kwargs)


def test_config_round_trips() -> None:
    config = DataConfig("npz", path="/tmp/a.npz", val_fraction=0.3, seed=2, limit=10)
    assert DataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(NasConfigError, match="did you mean 'seed'"):
        DataConfig.from_dict({**config.to_dict(), "sed": 1})


# -- from_node ---------------------------------------------------------------------------------


def test_from_node_reads_keys_and_resolves_paths(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    node = Node(
        {"dataset": "npz", "path": "d.npz", "val_fraction": 0.5, "seed": 7, "limit": 100},
        file="exp.yaml",
    )
    config = DataConfig.from_node(node, base_dir=tmp_path)
    assert config == DataConfig(
        "npz", path=str((tmp_path / "d.npz").resolve()), val_fraction=0.5, seed=7, limit=100
    )


def test_from_node_defaults() -> None:
    config = DataConfig.from_node(Node({"dataset": "digits"}, file="exp.yaml"), Path("."))
    assert config == DataConfig("digits")


def test_from_node_unknown_key_names_nearest() -> None:
    node = Node({"dataset": "digits", "val_fracton": 0.3}, file="exp.yaml")
    with pytest.raises(NasConfigError, match=r"exp.yaml: val_fracton: .*'val_fraction'"):
        DataConfig.from_node(node, Path("."))


def test_from_node_missing_mnist_dir(tmp_path: Path) -> None:
    node = Node({"dataset": "mnist", "root": "nowhere"}, file="exp.yaml")
    with pytest.raises(NasConfigError, match=r"exp.yaml: root: no directory .*nowhere"):
        DataConfig.from_node(node, tmp_path)


def test_from_node_mnist_dir_without_idx_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    node = Node({"dataset": "mnist", "root": "empty"}, file="exp.yaml")
    with pytest.raises(NasConfigError, match="root: no MNIST IDX files in .*t10k-images-idx3"):
        DataConfig.from_node(node, tmp_path)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"dataset": "mnist"}, "dataset: dataset 'mnist' needs the key 'root' too"),
        ({"dataset": "digits", "path": "x.npz"}, "path: 'path' is not used by dataset 'digits'"),
        ({"dataset": "npz", "path": "x.npz"}, "path: no .npz file at"),
        ({"dataset": "digits", "val_fraction": 0}, "val_fraction: expected a number strictly"),
        ({"dataset": "digits", "normalize": "yes"}, "normalize: expected true or false"),
    ],
)
def test_from_node_errors_are_located(tmp_path: Path, value: dict, match: str) -> None:
    with pytest.raises(NasConfigError, match=match):
        DataConfig.from_node(Node(value, file="exp.yaml"), tmp_path)


def test_a_dataset_set_on_the_command_line_that_needs_a_root_names_the_set(tmp_path):
    """The error named the experiment file's data: line, not the --set that chose mnist."""
    from nas.search import load_experiment

    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: e\nspace: mobilenet_small\ndata: {dataset: digits}\nobjectives: [error]\n"
    )
    with pytest.raises(
        NasConfigError,
        match=r"^--set 'data.dataset=mnist': data.dataset: dataset 'mnist' needs the key "
        r"'data.root' too$",
    ):
        load_experiment(exp, ["data.dataset=mnist"])


# -- MNIST IDX ---------------------------------------------------------------------------------


def test_mnist_test_10k() -> None:
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST data {MNIST_DIR} absent")
    config = DataConfig("mnist", root=str(MNIST_DIR), normalize=False)
    data = load_data(config)
    assert sum(data.sizes) == 10_000 and data.sizes == (8000, 2000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    labels = torch.cat([data.y_train, data.y_val])
    assert torch.bincount(labels).tolist() == MNIST_T10K_COUNTS
    pixels = torch.cat([data.x_train, data.x_val])
    assert float(pixels.min()) == 0.0 and float(pixels.max()) == 1.0
    assert 0.12 < float(pixels.mean()) < 0.15  # MNIST's well-known mean is ~0.13
    assert 0.29 < float(pixels.std()) < 0.33  # ... and its std ~0.31
    assert (pixels == 0).float().mean() > 0.7  # mostly black background
    normalized = load_data(DataConfig("mnist", root=str(MNIST_DIR)))
    assert torch.equal(normalized.y_val, data.y_val)
    assert abs(float(normalized.x_train.mean())) < 1e-4


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_raw_and_gzip_idx_use_both_pairs(tmp_path: Path, gz: bool) -> None:
    _tiny_idx_dir(tmp_path, "train", 40, gz=gz)
    _tiny_idx_dir(tmp_path, "t10k", 20, seed=1, gz=gz)
    data = load_data(DataConfig("mnist", root=str(tmp_path), normalize=False, val_fraction=0.25))
    assert data.sizes == (45, 15)
    assert data.input_shape == (1, 6, 5) and data.num_classes == 4


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 4, 4)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(9) % 2)
    with pytest.raises(NasConfigError, match="10 images but 9 labels"):
        load_data(DataConfig("mnist", root=str(tmp_path)))


def test_mnist_images_without_labels(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 4, 4)))
    with pytest.raises(NasConfigError, match="has no labels file"):
        load_data(DataConfig("mnist", root=str(tmp_path)))


def test_mnist_bad_header_and_truncation(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10) % 2)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(b"\x12\x34\x08\x03" + bytes(20))
    with pytest.raises(NasConfigError, match="not an IDX file"):
        load_data(DataConfig("mnist", root=str(tmp_path)))
    _write_idx(images, np.zeros((10, 4, 4)))
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(NasConfigError, match=r"header says shape \(10, 4, 4\)"):
        load_data(DataConfig("mnist", root=str(tmp_path)))


def test_mnist_missing_dir_via_load_data(tmp_path: Path) -> None:
    with pytest.raises(NasConfigError, match="no MNIST IDX files"):
        load_data(DataConfig("mnist", root=str(tmp_path)))


# -- npz ---------------------------------------------------------------------------------------


def _npz_images(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 6, 7)).astype(np.uint8), np.arange(n) % 4


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    x, y = _npz_images()
    stored = {"nchw": x, "nhwc": x.transpose(0, 2, 3, 1), "nhw": x[:, 0]}[layout]
    np.savez(tmp_path / "d.npz", x=stored, y=y)
    data = load_data(DataConfig("npz", path=str(tmp_path / "d.npz"), normalize=False))
    channels = 1 if layout == "nhw" else 3
    assert data.input_shape == (channels, 6, 7) and data.num_classes == 4
    reference = torch.from_numpy(x[:, :channels].astype(np.float32) / 255.0)
    assert torch.equal(
        torch.cat([data.x_train, data.x_val]).sort(dim=0).values, reference.sort(dim=0).values
    )


def test_npz_train_keys_and_column_labels(tmp_path: Path) -> None:
    x, y = _npz_images()
    np.savez(tmp_path / "d.npz", x_train=x.astype(np.float32), y_train=y[:, None])
    data = load_data(DataConfig("npz", path=str(tmp_path / "d.npz")))
    assert sum(data.sizes) == 40 and data.input_shape == (3, 6, 7)
    assert len(data.channel_mean) == 3


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"images": np.zeros((4, 8, 8)), "labels": np.zeros(4)}, "found keys: images, labels"),
        ({"x": np.zeros((4, 8)), "y": np.zeros(4, int)}, r"'x' has shape \(4, 8\)"),
        ({"x": np.zeros((4, 5, 8, 8)), "y": np.zeros(4, int)}, "with C in"),
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(3, int)}, r"expected \(4,\) to match 'x'"),
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4)}, "integer class labels"),
        ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, -1, 1])}, "labels must be >= 0"),
    ],
)
def test_npz_bad_contents(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(NasConfigError, match=f"bad.npz: .*{match}"):
        load_data(DataConfig("npz", path=str(path)))


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_text("not numpy")
    with pytest.raises(NasConfigError, match="junk.npz: not a readable .npz file"):
        load_data(DataConfig("npz", path=str(path)))


# -- CIFAR-10 ----------------------------------------------------------------------------------


def test_cifar10_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(NasConfigError, match="cifar10 needs torchvision: pip install torchvision"):
        load_data(DataConfig("cifar10", root=str(tmp_path)))


# -- SplitData ---------------------------------------------------------------------------------


def test_split_data_checks_shapes() -> None:
    x, y = torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"x_train must be \(N, 1, 8, 9\)"):
        SplitData(x, y, x, y, num_classes=2, input_shape=(1, 8, 9), name="t")
    with pytest.raises(ValueError, match="labels must lie in"):
        SplitData(x, y, x, y + 1, num_classes=2, input_shape=(1, 8, 8), name="t")
    with pytest.raises(ValueError, match="float32 images and int64 labels"):
        SplitData(x.double(), y, x, y, num_classes=2, input_shape=(1, 8, 8), name="t")


def test_preprocess_says_how_to_turn_raw_pixels_into_model_inputs() -> None:
    """Following ``preprocess`` on sklearn's raw digits (0..16) gives exactly the validation
    images the model was trained against: the pixel scale is part of the recipe."""
    from sklearn.datasets import load_digits

    data = load_data(DataConfig("digits", val_fraction=0.2, seed=0))
    pre = data.preprocess
    assert pre["pixel_scale"] == 16.0
    raw = torch.from_numpy(load_digits().images.astype(np.float32)[:, None])
    mean = torch.tensor(pre["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"]).view(1, -1, 1, 1)
    inputs = (raw / pre["pixel_scale"] - mean) / std
    flat = inputs.flatten(1)
    for row in data.x_val[:20].flatten(1):
        assert torch.isclose(flat, row, atol=1e-5).all(1).any()


def test_the_split_recipe_read_literally_makes_the_same_split() -> None:
    """A card's recipe, followed with scikit-learn's shuffled output order, gave another
    validation set (0.986 where the card said 0.975): it did not say the parts are sorted."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    config = DataConfig("digits", limit=500, test_fraction=0.2, normalize=False, seed=3)
    data = load_data(config)
    text = describe_split(data.split_recipe)
    assert "numpy.random.default_rng(3).permutation(1797)" in text
    assert "train_test_split(numpy.arange(500), test_size=0.2" in text
    assert "train_test_split(numpy.arange(400), test_size=0.25" in text
    x, y = load_digits(return_X_y=True)
    keep = np.random.default_rng(3).permutation(1797)[:500]
    x, y = x[keep], y[keep]
    rest, test = (
        np.sort(i)
        for i in train_test_split(np.arange(500), test_size=0.2, random_state=3, stratify=y)
    )
    x, y = x[rest], y[rest]
    _, val = (
        np.sort(i)
        for i in train_test_split(np.arange(400), test_size=0.25, random_state=3, stratify=y)
    )
    assert np.array_equal(data.y_val.numpy(), y[val])
    assert np.allclose(data.x_val.numpy().reshape(len(val), -1), x[val] / 16)
