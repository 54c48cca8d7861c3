"""Image classification data: loading, seeded stratified train/val split, normalization.

Every loader returns float pixels in ``(N, C, H, W)`` and integer labels; :func:`load_data` then
subsamples (``limit``), splits (stratified, seeded) and normalizes with statistics of the train
split only, so the validation split never leaks into preprocessing. The same :class:`DataConfig`
always gives identical tensors.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas._config import Node, check_field_types
from nas._errors import NasConfigError

__all__ = ["DATASETS", "DataConfig", "SplitData", "describe_split", "load_data"]

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("digits", "mnist", "npz", "cifar10")
_NEEDS_ROOT = ("mnist", "cifar10")
_NEEDS_PATH = ("npz",)
_STD_FLOOR = 1e-6  # a constant channel (e.g. an all-black border set) must not divide by zero

# IDX element type code -> big-endian numpy dtype (LeCun et al., "THE MNIST DATABASE").
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_MNIST_PREFIXES = ("train", "t10k")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to split it.

    Args:
        dataset: One of ``digits`` (scikit-learn's 8x8 digits, bundled), ``mnist`` (IDX files
            in ``root``), ``npz`` (arrays in ``path``) or ``cifar10`` (torchvision layout in
            ``root``).
        root: Directory with the MNIST IDX files or the torchvision CIFAR-10 root.
        path: The ``.npz`` file for ``dataset: npz``.
        val_fraction: Fraction of the (limited) examples held out for validation, in (0, 1).
        test_fraction: Fraction held out as a test split, in [0, 1): never seen by the search
            (which scores on validation) nor by fine-tuning; the accuracy of final and compressed
            models is measured on it. 0 means no test split (final accuracy is then on
            validation).
        seed: Seed of the subsampling shuffle and of the stratified split.
        limit: Use at most this many examples, taken after a seeded shuffle (for quick runs).
        normalize: Standardize each channel with the mean/std of the train split.

    Example:
        >>> DataConfig("digits", val_fraction=0.25).val_fraction
        0.25
    """

    dataset: str
    root: str | None = None
    path: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    limit: int | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.dataset not in DATASETS:
            raise NasConfigError(
                f"unknown dataset {self.dataset!r}", allowed=DATASETS, value=self.dataset
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise NasConfigError(
                f"`0 < val_fraction < 1` must hold, but got val_fraction={self.val_fraction}"
            )
        if not 0.0 <= self.test_fraction < 1.0 or self.val_fraction + self.test_fraction >= 1.0:
            raise NasConfigError(
                "`0 <= test_fraction` and `val_fraction + test_fraction < 1` must hold, but got "
                f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
            )
        if self.limit is not None and self.limit < 2:
            raise NasConfigError(f"`limit >= 2` must hold, but got limit={self.limit}")
        if self.dataset in _NEEDS_ROOT and self.root is None:
            raise NasConfigError(f"dataset {self.dataset!r} needs 'root' (a directory)")
        if self.dataset in _NEEDS_PATH and self.path is None:
            raise NasConfigError(f"dataset {self.dataset!r} needs 'path' (an .npz file)")

    @classmethod
    def from_node(cls, node: Node, base_dir: Path) -> DataConfig:
        """Read a ``data:`` mapping; relative paths are resolved against ``base_dir``.

        Keys: ``dataset`` (required), ``root``, ``path``, ``val_fraction``, ``seed``, ``limit``,
        ``normalize``. Unknown keys, and files missing for the chosen dataset, raise a
        :class:`NasConfigError` located at the offending key.
        """
        dataset = node.get("dataset").as_choice(DATASETS)
        locations: dict[str, str | None] = {}
        for key, needed_by in (("root", _NEEDS_ROOT), ("path", _NEEDS_PATH)):
            child = node.get(key, None)
            if child.value is None:
                if dataset in needed_by:  # located where the dataset was named (a --set)
                    raise node.get("dataset").error(
                        f"dataset {dataset!r} needs the key "
                        f"'{f'{node.key}.{key}' if node.key else key}' too"
                    )
                locations[key] = None
                continue
            if dataset not in needed_by:
                raise child.error(
                    f"'{key}' is not used by dataset {dataset!r} (only by "
                    f"{', '.join(repr(d) for d in needed_by)}); remove it"
                )
            resolved = child.path_value(base_dir).resolve()
            problem = _missing_files(dataset, resolved)
            if problem is not None:
                raise child.error(problem)
            locations[key] = str(resolved)
        limit_node = node.get("limit", None)
        val_node = node.get("val_fraction", 0.2)
        val = val_node.as_float(gt=0.0, lt=1.0)
        test_node = node.get("test_fraction", 0.0)
        test = test_node.as_float(min=0.0, lt=1.0)
        if val + test >= 1.0:
            # at the one a --set changed, if any: the file's own value was fine before
            blamed = val_node if val_node.origin and not test_node.origin else test_node
            raise blamed.error(
                f"val_fraction {val:g} + test_fraction {test:g} leave no training data; keep "
                "their sum below 1 (e.g. val_fraction: 0.2, test_fraction: 0.2)"
            )
        config = cls(
            dataset=dataset,
            root=locations["root"],
            path=locations["path"],
            val_fraction=val,
            test_fraction=test,
            seed=node.get("seed", 0).as_int(min=0),
            limit=None if limit_node.value is None else limit_node.as_int(min=2),
            normalize=node.get("normalize", True).as_bool(),
        )
        node.done()
        return config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        """Rebuild a config written by :meth:`to_dict`."""
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class SplitData:
    """A train/validation split of an image classification dataset, ready for training.

    Args:
        x_train: Train images, float32 ``(N, C, H, W)``.
        y_train: Train labels, int64 ``(N,)`` in ``[0, num_classes)``.
        x_val: Validation images, float32 ``(M, C, H, W)``.
        y_val: Validation labels, int64 ``(M,)``.
        num_classes: Number of classes (the model's output width).
        input_shape: ``(C, H, W)`` of one image.
        name: Dataset name, for logs and reports.
        channel_mean: Per-channel mean subtracted from the pixels (empty when not normalized);
            an exported model needs it to preprocess its inputs the same way.
        channel_std: Per-channel std the pixels were divided by (empty when not normalized).
        pixel_scale: What the raw pixel values were divided by before that (16 for digits,
            whose pixels are 0..16; 255 for 8-bit images; 1 for float images).
        x_test: Test images ``(K, C, H, W)``, or None without a test split.
        y_test: Test labels ``(K,)``, or None.
        split_recipe: How :func:`load_data` made the split, JSON-ready (dataset, example
            count, ``limit``, ``seed``, fractions, sizes); empty when not made by it.
            :func:`describe_split` words it.
    """

    x_train: torch.Tensor = field(compare=False, repr=False)
    y_train: torch.Tensor = field(compare=False, repr=False)
    x_val: torch.Tensor = field(compare=False, repr=False)
    y_val: torch.Tensor = field(compare=False, repr=False)
    num_classes: int
    input_shape: tuple[int, int, int]
    name: str
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()
    pixel_scale: float = 1.0
    x_test: torch.Tensor | None = field(default=None, compare=False, repr=False)
    y_test: torch.Tensor | None = field(default=None, compare=False, repr=False)
    split_recipe: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def preprocess(self) -> dict[str, Any]:
        """How a model trained on this data wants its inputs, JSON-ready (``arch.json``'s
        ``preprocess``): the image shape, what the raw pixels are divided by, then the
        per-channel mean and std: ``x = (raw / pixel_scale - mean) / std``."""
        return {
            "input_shape": list(self.input_shape),
            "pixel_scale": self.pixel_scale,
            "mean": list(self.channel_mean),
            "std": list(self.channel_std),
        }

    def __post_init__(self) -> None:
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("x_test and y_test must both be given or both be None")
        if self.num_classes < 2:
            raise ValueError(f"`num_classes >= 2` must hold, but got {self.num_classes=}")
        splits = [("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)]
        if self.x_test is not None and self.y_test is not None:
            splits.append(("test", self.x_test, self.y_test))
        for split, x, y in splits:
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(
                    f"{split} tensors must be float32 images and int64 labels, "
                    f"got {x.dtype} and {y.dtype}"
                )
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"x_{split} must be (N, {', '.join(map(str, self.input_shape))}), "
                    f"got {tuple(x.shape)}"
                )
            if y.shape != (x.shape[0],) or x.shape[0] == 0:
                raise ValueError(
                    f"y_{split} must be a non-empty (N,) matching x_{split}, "
                    f"got {tuple(y.shape)} for {x.shape[0]} images"
                )
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(f"y_{split} labels must lie in [0, {self.num_classes})")

    @property
    def sizes(self) -> tuple[int, int]:
        """``(train examples, validation examples)``."""
        return int(self.x_train.shape[0]), int(self.x_val.shape[0])

    def held_out(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        """``(images, labels, name)`` of the split final models are scored on: test if any."""
        if self.x_test is not None and self.y_test is not None:
            return self.x_test, self.y_test, "test"
        return self.x_val, self.y_val, "val"


def load_data(config: DataConfig) -> SplitData:
    """Load, subsample, split and normalize the dataset that ``config`` names.

    Args:
        config: What to load and how to split it.

    Returns:
        The split, with float32 ``(N, C, H, W)`` images and int64 labels.

    Raises:
        NasConfigError: Missing or malformed files, an unavailable optional dependency, or a
            split that cannot be stratified (too few examples per class).

    Example:
        >>> data = load_data(DataConfig("digits", val_fraction=0.2))
        >>> data.sizes, data.input_shape, data.num_classes
        ((1437, 360), (1, 8, 8), 10)
    """
    # (N, C, H, W) float, (N,) int, and what the raw pixel values were divided by
    x, y, pixel_scale = _LOADERS[config.dataset](config)
    n_total = len(y)
    if config.limit is not None and config.limit < n_total:
        keep = np.random.default_rng(config.seed).permutation(n_total)[: config.limit]
        x, y = x[keep], y[keep]
    test_idx = None
    if config.test_fraction > 0:
        rest, test_idx = _stratified_split(y, config.test_fraction, config.seed, "test_fraction")
        x_test, y_test = x[test_idx], y[test_idx]
        x, y = x[rest], y[rest]
    # val_fraction stays a fraction of all examples, so adding a test split keeps the val size.
    val_part = config.val_fraction / (1.0 - config.test_fraction)
    train_idx, val_idx = _stratified_split(y, val_part, config.seed, "val_fraction")
    x_train, x_val = x[train_idx], x[val_idx]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if config.normalize:
        mean_c = x_train.mean(axis=(0, 2, 3), dtype=np.float64)  # (C,)
        std_c = np.maximum(x_train.std(axis=(0, 2, 3), dtype=np.float64), _STD_FLOOR)
        shape = (1, -1, 1, 1)
        x_train = (x_train - mean_c.reshape(shape)) / std_c.reshape(shape)
        x_val = (x_val - mean_c.reshape(shape)) / std_c.reshape(shape)
        if test_idx is not None:
            x_test = (x_test - mean_c.reshape(shape)) / std_c.reshape(shape)
        mean, std = tuple(float(m) for m in mean_c), tuple(float(s) for s in std_c)
    data = SplitData(
        x_train=_images(x_train),
        y_train=torch.from_numpy(np.ascontiguousarray(y[train_idx], dtype=np.int64)),
        x_val=_images(x_val),
        y_val=torch.from_numpy(np.ascontiguousarray(y[val_idx], dtype=np.int64)),
        num_classes=int(y.max()) + 1,
        input_shape=(int(x.shape[1]), int(x.shape[2]), int(x.shape[3])),
        name=config.dataset,
        channel_mean=mean,
        channel_std=std,
        pixel_scale=pixel_scale,
        x_test=None if test_idx is None else _images(x_test),
        y_test=(
            None
            if test_idx is None
            else torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64))
        ),
        split_recipe={
            "dataset": config.dataset,
            **{k: v for k, v in (("root", config.root), ("path", config.path)) if v},
            "examples": n_total,
            "limit": config.limit if config.limit is not None and config.limit < n_total else None,
            "seed": config.seed,
            "test_fraction": config.test_fraction,
            "val_fraction": config.val_fraction,
            "stratified": True,
            "sizes": {
                "train": len(train_idx),
                "val": len(val_idx),
                "test": 0 if test_idx is None else len(test_idx),
            },
        },
    )
    logger.info(
        "loaded %s: %d train / %d val of %d examples, input %s, %d classes",
        data.name,
        *data.sizes,
        n_total,
        data.input_shape,
        data.num_classes,
    )
    return data


def describe_split(recipe: dict[str, Any]) -> str:
    """One line saying how :func:`load_data` made a split (its ``split_recipe``), enough to
    make it again; empty for a split it did not make.

    Example:
        >>> describe_split(load_data(DataConfig("digits", test_fraction=0.2)).split_recipe)
        ... # doctest: +ELLIPSIS
        'digits, all 1797 examples; the test split is taken first, 20% of them by ...'
    """
    if not recipe:
        return ""
    n, seed = recipe["examples"], recipe["seed"]
    where = "".join(f" at {recipe[k]}" for k in ("root", "path") if recipe.get(k))
    limit = recipe.get("limit")
    kept = (
        f"the first {limit} of numpy.random.default_rng({seed}).permutation({n}) of its {n} "
        "examples"
        if limit is not None
        else f"all {n} examples"
    )
    sizes = recipe["sizes"]
    test, val = recipe["test_fraction"], recipe["val_fraction"]

    def call(size: float, among: int) -> str:
        return (
            f"scikit-learn train_test_split(numpy.arange({among}), test_size={size:.4g}, "
            f"random_state={seed}, stratify=labels)"
        )

    total = sum(sizes.values())
    if test > 0:
        rest = total - sizes["test"]
        split = (
            f"the test split is taken first, {test:.0%} of them by {call(test, total)}; then "
            f"validation, {val:.0%} of them, from the rest (kept in their order) by "
            f"{call(val / (1 - test), rest)}"
        )
    else:
        split = f"no test split; validation is {val:.0%} of them by {call(val, total)}"
    return (
        f"{recipe['dataset']}{where}, {kept}; {split}; the parts each call returns are sorted "
        f"back into order, and the rest is train ({sizes['train']} train / {sizes['val']} val / "
        f"{sizes['test']} test examples)"
    )


# -- helpers -----------------------------------------------------------------------------------


def _images(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise NasConfigError(f"unknown key '{key}'", allowed=names, value=key)
    return dict(data)


def _stratified_split(
    y: np.ndarray, fraction: float, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # heavy import, only when splitting

    try:
        train_idx, val_idx = train_test_split(
            np.arange(len(y)), test_size=fraction, random_state=seed, stratify=y
        )
    except ValueError as exc:
        raise NasConfigError(
            f"cannot split {len(y)} examples of {len(np.unique(y))} classes with "
            f"{key}={fraction:.3g} stratified by class ({exc}); raise 'limit' or '{key}'"
        ) from None
    # train_test_split returns a shuffled order; sort so the tensors follow the file order.
    return np.sort(train_idx), np.sort(val_idx)


def _missing_files(dataset: str, location: Path) -> str | None:
    """What is missing at ``location`` for ``dataset``, or None when it looks loadable."""
    if dataset == "npz":
        if not location.is_file():
            return f"no .npz file at {location}: expected a file with arrays 'x' and 'y'"
        return None
    if not location.is_dir():
        return f"no directory {location}: expected the {dataset} data directory"
    if dataset == "mnist":
        try:
            _mnist_pairs(location)
        except NasConfigError as exc:
            return exc.reason
    return None


# -- digits ------------------------------------------------------------------------------------


def _load_digits(config: DataConfig) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0  # (1797, 1, 8, 8); pixels are 0..16
    return x, bunch.target.astype(np.int64), 16.0


# -- MNIST IDX ---------------------------------------------------------------------------------


def _idx_file(root: Path, prefix: str, kind: str, dims: int) -> Path | None:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = root / f"{prefix}-{kind}{sep}idx{dims}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _mnist_pairs(root: Path) -> list[tuple[Path, Path]]:
    """The (images, labels) file pairs in ``root``, train before t10k."""
    pairs = []
    for prefix in _MNIST_PREFIXES:
        images = _idx_file(root, prefix, "images", 3)
        labels = _idx_file(root, prefix, "labels", 1)
        if images is not None and labels is None:
            raise NasConfigError(
                f"{images} has no labels file: expected {prefix}-labels-idx1-ubyte(.gz) in {root}"
            )
        if images is not None and labels is not None:
            pairs.append((images, labels))
        elif labels is not None:
            logger.debug("ignoring %s: no matching images file", labels)
    if not pairs:
        raise NasConfigError(
            f"no MNIST IDX files in {root}: expected t10k-images-idx3-ubyte(.gz) or "
            f"train-images-idx3-ubyte(.gz) with matching labels"
        )
    return pairs


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (raw or gzip): 0x0000, type code, ndim, big-endian uint32 dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise NasConfigError(f"cannot read IDX file ({exc})", file=path) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise NasConfigError(
            f"not an IDX file: header {raw[:4].hex()} is not 0000<type><ndim>", file=path
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise NasConfigError(f"truncated IDX header ({len(raw)} bytes)", file=path)
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_bytes != expected:
        raise NasConfigError(
            f"IDX header says shape {dims} ({expected} bytes of data) but the file has "
            f"{len(raw) - header_bytes}",
            file=path,
        )
    return np.frombuffer(raw, dtype, offset=header_bytes).reshape(dims)


def _load_mnist(config: DataConfig) -> tuple[np.ndarray, np.ndarray, float]:
    assert config.root is not None  # DataConfig.__post_init__ requires it
    xs, ys, scale = [], [], 1.0
    for images_path, labels_path in _mnist_pairs(Path(config.root)):
        images, labels = _read_idx(images_path), _read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise NasConfigError(
                f"expected (N, H, W) images and (N,) labels, got {images.shape} from "
                f"{images_path.name} and {labels.shape} from {labels_path.name}",
                file=images_path,
            )
        if images.shape[0] != labels.shape[0]:
            raise NasConfigError(
                f"{images.shape[0]} images but {labels.shape[0]} labels in {labels_path.name}; "
                f"the files do not belong together",
                file=images_path,
            )
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        xs.append(images.astype(np.float32)[:, None] / scale)  # (N, 1, H, W) in [0, 1]
        ys.append(labels.astype(np.int64))
    if len({x.shape[1:] for x in xs}) > 1:
        raise NasConfigError(
            f"train and t10k images differ in size: {[x.shape[2:] for x in xs]}", file=config.root
        )
    return np.concatenate(xs), _checked_labels(np.concatenate(ys), config.root), scale


# -- npz ---------------------------------------------------------------------------------------


def _load_npz(config: DataConfig) -> tuple[np.ndarray, np.ndarray, float]:
    assert config.path is not None  # DataConfig.__post_init__ requires it
    path = Path(config.path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise NasConfigError("file not found; check 'path'", file=path) from None
    except (OSError, ValueError) as exc:
        raise NasConfigError(f"not a readable .npz file ({exc})", file=path) from None
    found = ", ".join(sorted(arrays)) or "none"
    for x_key, y_key in (("x", "y"), ("x_train", "y_train")):
        if x_key in arrays and y_key in arrays:
            break
    else:
        raise NasConfigError(
            f"expected arrays 'x' and 'y' (or 'x_train' and 'y_train'), found keys: {found}",
            file=path,
        )
    x, y = arrays[x_key], arrays[y_key]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise NasConfigError(f"'{x_key}' must be numeric, got dtype {x.dtype}", file=path)
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise NasConfigError(
            f"'{x_key}' has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) "
            f"with C in {{1, 3}}",
            file=path,
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise NasConfigError(
            f"'{y_key}' has shape {y.shape}; expected ({x.shape[0]},) to match '{x_key}'",
            file=path,
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise NasConfigError(
            f"'{y_key}' must hold integer class labels, got dtype {y.dtype}", file=path
        )
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / scale
    if not np.isfinite(x).all():
        raise NasConfigError(f"'{x_key}' contains NaN or infinite values", file=path)
    return x, _checked_labels(y.astype(np.int64), path), scale


def _checked_labels(y: np.ndarray, source: str | Path) -> np.ndarray:
    if len(y) == 0:
        raise NasConfigError("no examples", file=source)
    if int(y.min()) < 0:
        raise NasConfigError(f"labels must be >= 0, found {int(y.min())}", file=source)
    if int(y.max()) < 1:
        raise NasConfigError("all labels are the same class; need at least 2", file=source)
    return y


# -- CIFAR-10 ----------------------------------------------------------------------------------


def _load_cifar10(config: DataConfig) -> tuple[np.ndarray, np.ndarray, float]:
    try:
        import torchvision
    except ImportError:
        raise NasConfigError("cifar10 needs torchvision: pip install torchvision") from None
    try:
        dataset = torchvision.datasets.CIFAR10(config.root, train=True, download=False)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise NasConfigError(
            f"no CIFAR-10 data under {config.root} ({exc}); expected cifar-10-batches-py/ "
            f"as torchvision downloads it",
            file=config.root,
        ) from None
    x = np.asarray(dataset.data, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0  # NHWC -> NCHW
    return x, np.asarray(dataset.targets, dtype=np.int64), 255.0


_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "npz": _load_npz,
    "cifar10": _load_cifar10,
}
