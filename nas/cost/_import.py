"""Importing other tools' per-layer latency tables into a :class:`~nas.cost.LookupTable`.

Formats (``nas import-table --format FORMAT SRC --device NAME --out TABLE``):

- ``hwnasbench-fbnet``: HW-NAS-Bench's FBNet block table (Li et al., ICLR 2021), as the JSON
  dump of ``HWNASBenchAPI(...).HW_metrics['fbnet']`` (``fbnet_cached_metrics.json``) or its
  flattened CSV (``fbnet_block_lut.csv``, columns ``block,<device>_latency,<device>_energy``).
  One latency column per device (``edgegpu``, ``raspi4``, ``pixel3``, ``eyeriss``, ``fpga``),
  energy for ``edgegpu``, ``eyeriss`` and ``fpga``. Keys name the *input* resolution of a layer
  (``ConvBlock_H32_W32_Cin24_Cout32_..._stride2`` maps 32x32 to 16x16)::

      stem / 1x1 head   ConvNorm_H{h}_W{w}_Cin{ci}_Cout{co}_kernel{k}_stride{s}_group{g}
      MBConv block      ConvBlock_H{h}_W{w}_Cin{ci}_Cout{co}_exp{e}_kernel{k}_stride{s}_group{g}
      skip              Skip_H{h}_W{w}_Cin{ci}_Cout{co}_stride{s}
      classifier        AvgP_H{h}_W{w}_Cin{c}_Cout{c}_kernel{h}_stride1 + FC_Cin{c}_Cout{classes}

- ``ofa-yaml``: ProxylessNAS / Once-for-All YAML tables (``mobile_trim.yaml``,
  ``{resolution}_lookup_table.yaml``): ``key: {count, mean, var | std}`` with keys naming the
  input and output ``HxWxC``::

      stem conv         Conv-input:{h}x{w}x{c}-output:{h}x{w}x{c}
      MBConv block      expanded_conv-input:...-output:...-expand:{e}-kernel:{k}-stride:{s}
                            -idskip:{0|1}
      1x1 head          Conv_1-input:...-output:...
      classifier        Logits-input:{h}x{w}x{c}-output:{classes}

  ``idskip`` is 1 exactly when the block has its residual (stride 1 and unchanged width).

Every layer :meth:`SearchSpace.possible_layers` lists must have its key(s) in the source; a
missing one raises naming our signature and the key looked for, never a silent zero. Activation
functions are not part of either key format, so they are not checked.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from nas._errors import NasConfigError
from nas._io import file_sha256
from nas.cost._table import LookupTable, TableEntry
from nas.space import Layer, SearchSpace, load_space

__all__ = ["HWNASBENCH_DEVICES", "IMPORT_FORMATS", "import_table"]

log = logging.getLogger(__name__)

HWNASBENCH_DEVICES = ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga")
# HW-NAS-Bench, Sec. 3: edgegpu (Jetson TX2), raspi4 and pixel3 are measured; eyeriss and fpga
# come from simulators/estimators. Energy exists for edgegpu (measured), eyeriss, fpga (estimated).
_HWNASBENCH_LATENCY_KIND = {
    "edgegpu": "measured in source",
    "raspi4": "measured in source",
    "pixel3": "measured in source",
    "eyeriss": "estimated in source",
    "fpga": "estimated in source",
}
_HWNASBENCH_ENERGY_KIND = {
    "edgegpu": "measured in source",
    "eyeriss": "estimated in source",
    "fpga": "estimated in source",
}
_ABSENT = "absent in source"
_JSON_NAME = "fbnet_cached_metrics.json"
_CSV_NAME = "fbnet_block_lut.csv"


@dataclass(frozen=True)
class _Value:
    """One layer's numbers as the source gives them (ms, mJ)."""

    latency_ms: float
    std_ms: float
    n: int
    energy_mj: float


@dataclass(frozen=True)
class _Source:
    """A read source table: its file, values by key, how our layers map to keys, metadata."""

    path: Path
    values: Mapping[str, _Value]
    keys: Callable[[Layer], tuple[str, ...]]
    meta: dict[str, Any]


# -- helpers shared by the formats ---------------------------------------------------------------


def _provenance(path: Path) -> dict[str, Any]:
    """Path, sha256 and (from a ``PROVENANCE.md`` beside it) the repository and commit."""
    info: dict[str, Any] = {"path": str(path.resolve())}
    if path.is_file():
        info["sha256"] = file_sha256(path)
    note = path.parent / "PROVENANCE.md"
    if note.is_file():
        text = note.read_text(encoding="utf-8")
        repo = re.search(r"GitHub\s+`([\w.-]+/[\w.-]+)`", text)
        commit = re.search(r"commit\s+`([0-9a-f]{40})`", text)
        info["provenance"] = str(note.resolve())
        info["repo"] = repo[1] if repo else None
        info["commit"] = commit[1] if commit else None
    return info


def _combine(source: Mapping[str, _Value], keys: tuple[str, ...]) -> _Value:
    """The value of a layer made of the parts ``keys`` (all present in ``source``)."""
    values = [source[k] for k in keys]
    return _Value(
        latency_ms=sum(v.latency_ms for v in values),
        std_ms=math.sqrt(sum(v.std_ms**2 for v in values)),  # independent parts
        n=min(v.n for v in values),
        energy_mj=sum(v.energy_mj for v in values),
    )


def _missing(src: _Source, space: SearchSpace, gaps: list[tuple[Layer, str]]) -> NasConfigError:
    layer, key = gaps[0]
    prefix = re.split(r"[_-]", key, maxsplit=1)[0]
    same = [k for k in src.values if k.startswith(prefix)] or list(src.values)
    near = difflib.get_close_matches(key, same, n=3, cutoff=0.0)
    more = f" (and {len(gaps) - 1} more missing keys)" if len(gaps) > 1 else ""
    return NasConfigError(
        f"{src.path}: no entry for layer {layer.name} {layer.signature} of space "
        f"'{space.name}': looked for key '{key}'{more}; nearest keys present: "
        f"{', '.join(near) or 'none'}; import with a space whose layers the source covers"
    )


def _no_key(fmt: str, layer: Layer) -> NasConfigError:
    return NasConfigError(
        f"layer {layer.name} ({layer.signature}): op '{layer.op.name}' has no counterpart in "
        f"the '{fmt}' key format; import with a space built from ops the source measured"
    )


def _hw(shape: tuple[int, int, int]) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


# -- hwnasbench-fbnet ----------------------------------------------------------------------------


def _hwnasbench_keys(layer: Layer) -> tuple[str, ...]:
    """HW-NAS-Bench FBNet key(s) of ``layer``; H and W are the layer's *input* resolution."""
    (ci, h, w), (co, _, _) = layer.in_shape, layer.out_shape
    op, s = layer.op, layer.stride
    if op.type in ("conv", "conv1x1"):
        k = op.kernel or 1
        return (f"ConvNorm_H{h}_W{w}_Cin{ci}_Cout{co}_kernel{k}_stride{s}_group{op.groups or 1}",)
    if op.type == "mbconv" and not op.se:
        return (
            f"ConvBlock_H{h}_W{w}_Cin{ci}_Cout{co}_exp{op.expansion}_kernel{op.kernel}"
            f"_stride{s}_group{op.groups or 1}",
        )
    if op.type == "skip":
        return (f"Skip_H{h}_W{w}_Cin{ci}_Cout{co}_stride{s}",)
    if op.type == "classifier":  # global average pooling + linear (HW-NAS-Bench: AvgP + FC)
        return (f"AvgP_H{h}_W{w}_Cin{ci}_Cout{ci}_kernel{h}_stride1", f"FC_Cin{ci}_Cout{co}")
    raise _no_key("hwnasbench-fbnet", layer)


def _read_hwnasbench(src: Path, device: str) -> tuple[Path, dict[str, _Value]]:
    if device not in HWNASBENCH_DEVICES:
        raise NasConfigError(
            f"hwnasbench-fbnet: unknown device {device!r}",
            allowed=HWNASBENCH_DEVICES,
            value=device,
        )
    if src.is_dir():
        found = [src / n for n in (_JSON_NAME, _CSV_NAME) if (src / n).is_file()]
        if not found:
            other = (
                "; it holds YAML tables: --format ofa-yaml, naming one of them"
                if any(src.glob("*.y*ml"))
                else ""
            )
            raise NasConfigError(
                f"{src}: folder holds neither {_JSON_NAME} nor {_CSV_NAME} (--format "
                f"hwnasbench-fbnet){other}"
            )
        src = found[0]
    if not src.is_file():
        raise NasConfigError(f"{src}: HW-NAS-Bench FBNet table not found")
    latency: Mapping[str, Any]
    energy: Mapping[str, Any]
    if src.suffix == ".json":
        try:
            doc = json.loads(src.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise NasConfigError(f"{src}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(doc, dict) or f"{device}_latency" not in doc:
            raise NasConfigError(
                f"{src}: no '{device}_latency' mapping; expected the JSON dump of "
                "HWNASBenchAPI(...).HW_metrics['fbnet']"
            )
        latency = doc[f"{device}_latency"]
        energy = doc.get(f"{device}_energy", {})
    elif src.suffix == ".csv":
        with src.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        column = f"{device}_latency"
        if not rows or "block" not in rows[0] or column not in rows[0]:
            raise NasConfigError(f"{src}:1: expected columns 'block' and '{column}'")
        try:
            latency = {r["block"]: float(r[column]) for r in rows}
            energy = {
                r["block"]: float(r[f"{device}_energy"])
                for r in rows
                if r.get(f"{device}_energy") not in (None, "")
            }
        except ValueError as exc:
            raise NasConfigError(f"{src}: {exc}") from None
    else:
        other = (
            "; OFA/ProxylessNAS YAML tables are read with --format ofa-yaml"
            if src.suffix in (".yaml", ".yml")
            else ""
        )
        raise NasConfigError(f"{src}: expected {_JSON_NAME} or {_CSV_NAME} (.json or .csv){other}")
    if energy and set(energy) != set(latency):
        raise NasConfigError(f"{src}: '{device}' energy and latency cover different keys")
    values = {}
    for key, ms in latency.items():
        values[key] = _Value(
            _cost(src, key, f"{device}_latency", ms),
            0.0,
            1,
            _cost(src, key, f"{device}_energy", energy.get(key, 0.0)),
        )
    return src, values


def _cost(src: Path, key: str, column: str, value: Any) -> float:
    """A source's latency or energy, checked where it is read: the error names the source
    file and key (our table's own check would name only our signature)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise NasConfigError(
            f"{src}: {key}: {column} must be a finite number >= 0, got {value!r}; fix or drop "
            "that entry of the source"
        )
    return number


def _import_hwnasbench(src: Path, device: str, space: SearchSpace) -> _Source:
    path, values = _read_hwnasbench(src, device)
    has_energy = device in _HWNASBENCH_ENERGY_KIND
    meta = {
        "description": (
            f"HW-NAS-Bench FBNet block table, device '{device}', imported for space "
            f"'{space.name}' (sum of per-block values, the HW-NAS-Bench convention)"
        ),
        "source": {"format": "hwnasbench-fbnet", "device_column": device, **_provenance(path)},
        "value_kinds": {
            "latency": _HWNASBENCH_LATENCY_KIND[device],
            "energy": _HWNASBENCH_ENERGY_KIND[device] if has_energy else _ABSENT,
        },
        "protocol": {
            "statistic": "mean",
            "batch": 1,
            "dtype": "fp32",
            "note": (
                "one value per block as HW-NAS-Bench publishes it (no repeats or spread): "
                "latency_ms_p50 = latency_ms_mean = that value, latency_ms_std = 0, n = 1"
            ),
        },
    }
    return _Source(path, values, _hwnasbench_keys, meta)


# -- ofa-yaml ------------------------------------------------------------------------------------


def _ofa_keys(layer: Layer) -> tuple[str, ...]:
    """ProxylessNAS/OFA key of ``layer`` (positional: stem -> Conv, head -> Conv_1)."""
    op, s = layer.op, layer.stride
    io = f"input:{_hw(layer.in_shape)}-output:{_hw(layer.out_shape)}"
    if layer.name == "stem" and op.type in ("conv", "conv1x1"):
        return (f"Conv-{io}",)
    if layer.name == "head" and op.type in ("conv", "conv1x1"):
        return (f"Conv_1-{io}",)
    if layer.op.type == "classifier":  # ProxylessNAS "Logits": pooling + linear
        return (f"Logits-input:{_hw(layer.in_shape)}-output:{layer.out_shape[0]}",)
    if op.type == "mbconv" and not op.se and (op.groups or 1) == 1:
        idskip = int(s == 1 and layer.in_shape[0] == layer.out_shape[0])
        return (
            f"expanded_conv-{io}-expand:{op.expansion}-kernel:{op.kernel}-stride:{s}"
            f"-idskip:{idskip}",
        )
    raise _no_key("ofa-yaml", layer)


def _read_ofa_yaml(src: Path) -> tuple[Path, dict[str, _Value], str]:
    if src.is_dir():
        found = sorted(p.name for p in src.glob("*.y*ml"))
        other = ""
        if not found and any((src / n).is_file() for n in (_JSON_NAME, _CSV_NAME)):
            other = "; it holds HW-NAS-Bench's FBNet table: --format hwnasbench-fbnet"
        raise NasConfigError(
            f"{src}: is a folder; name one YAML table in it ({', '.join(found) or 'none found'})"
            f"{other}"
        )
    try:
        doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NasConfigError(f"{src}: table not found") from None
    except yaml.YAMLError as exc:  # one line: the parser's own text spans several
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise NasConfigError(f"{src}{where}: not valid YAML: {problem}") from None
    if not isinstance(doc, dict) or not doc:
        other = (
            "; HW-NAS-Bench's FBNet tables are read with --format hwnasbench-fbnet"
            if "fbnet" in src.name
            else ""
        )
        raise NasConfigError(
            f"{src}: expected an OFA/ProxylessNAS YAML table, a mapping of layer key -> "
            f"{{count, mean, var}}{other}"
        )
    values: dict[str, _Value] = {}
    spreads: set[str] = set()
    for key, item in doc.items():
        spread = "std" if isinstance(item, dict) and "std" in item else "var"
        if not isinstance(item, dict) or not {"count", "mean", spread} <= set(item):
            raise NasConfigError(
                f"{src}: {key}: expected {{count, mean, var}} or {{count, mean, std}}, got "
                f"{item!r}"
            )
        try:
            count, s = int(item["count"]), float(item[spread])
        except (TypeError, ValueError) as exc:
            raise NasConfigError(f"{src}: {key}: {exc}") from None
        mean = _cost(src, str(key), "mean", item["mean"])
        if s < 0 or count < 1:
            raise NasConfigError(f"{src}: {key}: needs count >= 1 and {spread} >= 0, got {item}")
        values[str(key)] = _Value(mean, s if spread == "std" else math.sqrt(s), count, 0.0)
        spreads.add(spread)
    return src, values, "/".join(sorted(spreads))


def _import_ofa_yaml(src: Path, device: str, space: SearchSpace) -> _Source:
    path, values, spread = _read_ofa_yaml(src)
    spread_note = "latency_ms_std = sqrt(var)" if spread == "var" else "latency_ms_std = std"
    meta = {
        "description": (
            f"ProxylessNAS/OFA per-layer latency table {path.name}, imported as device "
            f"'{device}' for space '{space.name}'"
        ),
        "source": {"format": "ofa-yaml", **_provenance(path)},
        "value_kinds": {"latency": "measured in source", "energy": _ABSENT},
        "protocol": {
            "statistic": "mean",
            "batch": 1,
            "dtype": "fp32",
            "note": (
                "the source gives {count, mean, " + spread + "} per layer: latency_ms_p50 := "
                f"mean (the source has no median), latency_ms_mean = mean, {spread_note}, "
                "n = count"
            ),
        },
    }
    return _Source(path, values, _ofa_keys, meta)


_Importer = Callable[[Path, str, SearchSpace], _Source]
_FORMATS: Mapping[str, tuple[_Importer, str]] = MappingProxyType(
    {  # format -> (importer, default space)
        "hwnasbench-fbnet": (_import_hwnasbench, "fbnet"),
        "ofa-yaml": (_import_ofa_yaml, "mbconv_imagenet"),
    }
)
IMPORT_FORMATS = tuple(_FORMATS)


def import_table(
    format: str,
    src: str | Path,
    device: str,
    *,
    space: SearchSpace | None = None,
    name: str | None = None,
) -> LookupTable:
    """Convert another tool's per-layer table into a :class:`LookupTable` for ``space``.

    Args:
        format: ``"hwnasbench-fbnet"`` or ``"ofa-yaml"`` (see the module docstring).
        src: The source file (for ``hwnasbench-fbnet`` also its folder).
        device: The source's device column for ``hwnasbench-fbnet`` (one of
            :data:`HWNASBENCH_DEVICES`); for ``ofa-yaml``, which holds one device, just the name.
        space: The space whose :meth:`~SearchSpace.possible_layers` the table must cover
            (default: ``fbnet`` for ``hwnasbench-fbnet``, ``mbconv_imagenet`` for ``ofa-yaml``).
        name: Device name of the resulting table (default: ``device``).

    Returns:
        One ``kind="imported"`` fp32, batch-1 entry per layer signature of the space, its
        ``source`` column naming the original key(s); ``model_overhead_ms`` is 0 (the sources
        predict a network as the plain sum of its layers). Where the source has no energy,
        entries hold ``energy_mj`` 0.0 (the saved CSV leaves the cell empty),
        ``meta["value_kinds"]["energy"]`` says ``"absent in source"`` and estimates give NaN
        energy (unknown).

    Raises:
        NasConfigError: Unknown format or device, an unreadable source, or a layer of the space
            without its key in the source (naming our signature and the key looked for).
    """
    if format not in _FORMATS:
        raise NasConfigError(
            f"unknown table format {format!r}", allowed=IMPORT_FORMATS, value=format
        )
    if not isinstance(device, str) or not device:
        raise NasConfigError(f"device must be a non-empty name, got {device!r}")
    importer, default_space = _FORMATS[format]
    space = load_space(default_space) if space is None else space
    source = importer(Path(src), device, space)
    layers = space.possible_layers()
    keys_of = {layer.signature: source.keys(layer) for layer in layers}
    gaps = [(x, k) for x in layers for k in keys_of[x.signature] if k not in source.values]
    if gaps:
        raise _missing(source, space, gaps)
    entries = []
    for layer in layers:
        keys = keys_of[layer.signature]
        v = _combine(source.values, keys)
        (ci, hi, wi), (co, ho, wo) = layer.in_shape, layer.out_shape
        entries.append(
            TableEntry(
                signature=layer.signature,
                op=layer.op.name,
                stride=layer.stride,
                in_c=ci,
                in_h=hi,
                in_w=wi,
                out_c=co,
                out_h=ho,
                out_w=wo,
                dtype="fp32",
                batch=1,
                latency_ms_p50=v.latency_ms,
                latency_ms_mean=v.latency_ms,
                latency_ms_std=v.std_ms,
                n=v.n,
                energy_mj=v.energy_mj,
                kind="imported",
                source=" + ".join(keys),
            )  # fmt: skip
        )
    device_name = name or device
    log.info("imported %d entries from %s as device '%s'", len(entries), source.path, device_name)
    meta = {
        **source.meta,
        "spaces": {space.name: space.hash},
        "model_overhead_ms": 0.0,
        "model_overhead_mj": 0.0,
        "profile_command": (
            f"nas import-table --format {format} {src} --device {device} --out TABLE"
        ),
    }
    return LookupTable(device_name, meta, {e.key: e for e in entries})
