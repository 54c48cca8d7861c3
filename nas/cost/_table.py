"""Lookup tables: measured (or imported, calibrated) cost of every layer a space can produce.

A table is two files in ``latency_tables/`` (or anywhere):

- ``<device>.csv``: one row per layer signature with units in every column name::

      signature,op,stride,in_c,in_h,in_w,out_c,out_h,out_w,dtype,batch,
      latency_ms_p50,latency_ms_mean,latency_ms_std,n,energy_mj,kind,source

  ``signature`` is :attr:`nas.space.Layer.signature` (``op-in:CxHxW-out:CxHxW-s<stride>``);
  ``kind`` says where the number comes from: ``measured``, ``analytic``, ``imported`` or
  ``calibrated``. A table that holds latency only (``value_kinds.energy`` starts with
  ``absent``) leaves ``energy_mj`` empty.
- ``<device>.json``: metadata: ``schema_version``, ``device``, ``units``, the device
  ``fingerprint`` (CPU/GPU, threads, runtime and version), the measurement ``protocol`` (warm-up,
  repeats, statistic), how energy was obtained, and ``model_overhead_ms``: the part of an
  end-to-end forward pass that belongs to no layer (measured, see ``nas profile``).

A model's predicted latency is the sum of its layers' ``latency_ms_p50`` (the statistic the
protocol names) plus ``model_overhead_ms`` plus, for measured tables, the in-model correction of
its space: ``model_ms + per_layer_ms x layers + per_mb_ms x MB + layer_scale x (sum of the
layers)`` (``in_model.<space>`` in the metadata, fitted by ``nas profile``): what a forward pass
costs beyond its layers timed alone, from dispatch inside the model's containers and from caches
that a layer timed alone keeps warm (MB = weights + activations the layers touch). ``layer_scale``
is fitted for graph runtimes only (ONNX Runtime), where a layer timed alone pays boundary work
(quantize, layout transposes) in proportion to its size that a whole model fuses away; tables
without it read it as 0. A layer missing from the table is an error
naming the key, the nearest keys present and the ``nas profile`` command that fills it, never a
silent zero.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from nas._errors import NasConfigError
from nas._io import atomic_write_json, atomic_write_text, read_json_object
from nas.cost._base import CostEstimate
from nas.space import Layer, list_spaces

__all__ = ["COLUMNS", "TABLE_SCHEMA_VERSION", "LookupTable", "TableEntry", "entry_from_layer"]

TABLE_SCHEMA_VERSION = 1
KINDS = ("measured", "analytic", "imported", "calibrated")
DTYPES = ("fp32", "fp16", "bf16", "int8")
#: ``unread_layers`` in the metadata: what the device's runtime does with layers whose output
#: nothing reads (eager PyTorch runs them; graph runtimes drop them)
UNREAD_LAYERS = ("run", "skipped")
#: metadata key: the spaces whose ``nas profile`` was interrupted (entries without their
#: in-model correction, which the end of the profile fits): the table refuses to cost them
UNFINISHED = "profile_unfinished"
#: the terms of a space's in-model correction (``in_model.<space>``), in the order fitted
IN_MODEL_TERMS = ("model_ms", "per_layer_ms", "per_mb_ms", "layer_scale")

#: fit RMSE, relative to the reference model's latency, beyond which a table's layer timings
#: and its end-to-end timings disagree too far to trust (busy machine, too short a warm-up);
#: ``nas profile`` warns past it (and refits on a rerun), and so does every use of the table.
#: The shipped tables: at most 0.10 (INT8 mobilenet_small, whose 21 us reference makes every
#: microsecond count)
POOR_FIT = 0.2


def poor_fit(fix: Mapping[str, Any]) -> bool:
    """Whether an in-model correction fit its end-to-end timings poorly (:data:`POOR_FIT`):
    its root-mean-square error relative to each model's own latency (``fit_rmspe``), or, in a
    table fitted before that was recorded, its RMSE relative to the reference model's."""
    if fix.get("fit_rmspe") is not None:
        return bool(fix["fit_rmspe"] > POOR_FIT)
    rmse, reference = fix.get("fit_rmse_ms"), fix.get("reference_ms")
    return bool(rmse and reference and rmse > POOR_FIT * reference)


def fit_error(fix: Mapping[str, Any]) -> str:
    """How far a correction's fit was off, in the terms :func:`poor_fit` judges it by."""
    if fix.get("fit_rmspe") is not None:
        return (
            f"RMSE {fix['fit_rmse_ms']:.4g} ms, {100 * fix['fit_rmspe']:.0f}% of a model's "
            "own latency (root mean square)"
        )
    return (
        f"RMSE {fix['fit_rmse_ms']:.4g} ms on models like the {fix['reference_ms']:.4g} ms "
        "reference"
    )


#: terms a table may lack (written before the term existed): read as 0
OPTIONAL_TERMS = frozenset({"layer_scale"})
DEFAULT_POWER_W = 10.0  # W, what nas profile charges per ms without an energy counter
COLUMNS = (
    "signature", "op", "stride", "in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "dtype",
    "batch", "latency_ms_p50", "latency_ms_mean", "latency_ms_std", "n", "energy_mj", "kind",
    "source",
)  # fmt: skip
_FLOATS = ("latency_ms_p50", "latency_ms_mean", "latency_ms_std", "energy_mj")
_INTS = ("stride", "in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "batch", "n")
_UNITLESS_HINT = {  # column names seen in other tools' tables -> ours
    "latency": "latency_ms_p50",
    "latency_ms": "latency_ms_p50",
    "mean": "latency_ms_mean",
    "energy": "energy_mj",
    "latency_s": "latency_ms_p50",
    "latency_us": "latency_ms_p50",
}


@dataclass(frozen=True)
class TableEntry:
    """Cost of one layer signature on one device (latency statistics in ms, energy in mJ)."""

    signature: str
    op: str
    stride: int
    in_c: int
    in_h: int
    in_w: int
    out_c: int
    out_h: int
    out_w: int
    dtype: str
    batch: int
    latency_ms_p50: float
    latency_ms_mean: float
    latency_ms_std: float
    n: int
    energy_mj: float
    kind: str
    source: str = ""

    def __post_init__(self) -> None:
        for name in _FLOATS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise NasConfigError(
                    f"table entry {self.signature!r}: {name} must be a finite number >= 0, "
                    f"got {value!r}"
                )
        said = (
            f"{self.op}-in:{self.in_c}x{self.in_h}x{self.in_w}-out:{self.out_c}x{self.out_h}x"
            f"{self.out_w}-s{self.stride}"
        )
        if said != self.signature:
            raise NasConfigError(
                f"table entry {self.signature!r}: its op, shape and stride columns say "
                f"{said!r}; make the two agree (the signature is the key layers are looked up by)"
            )
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise NasConfigError(
                f"table entry {self.signature!r}: n must be an integer >= 1 (how many timings "
                f"its statistics summarize), got {self.n!r}"
            )
        if self.kind not in KINDS:
            raise NasConfigError(
                f"table entry {self.signature!r}: unknown kind {self.kind!r}",
                allowed=KINDS,
                value=self.kind,
            )
        if self.dtype not in DTYPES:
            raise NasConfigError(
                f"table entry {self.signature!r}: unknown dtype {self.dtype!r}",
                allowed=DTYPES,
                value=self.dtype,
            )

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.signature, self.dtype, self.batch)

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in COLUMNS}


def entry_from_layer(
    layer: Layer,
    *,
    latency_ms: Sequence[float] | float,
    energy_mj: float,
    kind: str,
    dtype: str = "fp32",
    batch: int = 1,
    source: str = "",
) -> TableEntry:
    """A table entry for ``layer`` from repeated latency samples (or one value) and an energy."""
    samples = [float(latency_ms)] if isinstance(latency_ms, (int, float)) else list(latency_ms)
    ordered = sorted(samples)
    mid = len(ordered) // 2
    p50 = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    mean = sum(samples) / len(samples)
    std = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
    (ci, hi, wi), (co, ho, wo) = layer.in_shape, layer.out_shape
    return TableEntry(
        signature=layer.signature, op=layer.op.name, stride=layer.stride,
        in_c=ci, in_h=hi, in_w=wi, out_c=co, out_h=ho, out_w=wo, dtype=dtype, batch=batch,
        latency_ms_p50=p50, latency_ms_mean=mean, latency_ms_std=std, n=len(samples),
        energy_mj=energy_mj, kind=kind, source=source,
    )  # fmt: skip


@dataclass(frozen=True)
class LookupTable:
    """A per-device table of layer costs; a :class:`nas.cost.CostModel`.

    Attributes:
        device: Device name used in metric names (``latency_ms@<device>``).
        meta: The metadata document (schema version, fingerprint, protocol, ...).
        entries: ``(signature, dtype, batch) -> TableEntry``.
        dtype: The dtype predictions use (default: the protocol's).
        batch: The batch size predictions use (default: the protocol's).
    """

    device: str
    meta: Mapping[str, Any]
    entries: Mapping[tuple[str, str, int], TableEntry] = field(repr=False)
    dtype: str = "fp32"
    batch: int = 1
    path: str | None = None
    space: str | None = None
    space_file: str | None = None  # the YAML file of the space bound (for fill hints)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        unread = self.meta.get("unread_layers", "run")
        if unread not in UNREAD_LAYERS:
            raise NasConfigError(
                f"table '{self.device}' ({self.path}): unread_layers must be 'run' or 'skipped', "
                f"got {unread!r}; fix the key in its JSON metadata"
            )

    # -- prediction -----------------------------------------------------------------------------
    @property
    def model_overhead_ms(self) -> float:
        return float(self.meta.get("model_overhead_ms", 0.0))

    @property
    def skips_unread(self) -> bool:
        """Whether the table's runtime drops layers whose output nothing reads (``unread_layers:
        skipped`` in the metadata; see :func:`nas.cost.charged_layers`)."""
        return self.meta.get("unread_layers", "run") == "skipped"

    @property
    def additive(self) -> bool:
        """Always: an estimate is the overhead plus each layer's entry and its share of the
        in-model correction (see :func:`nas.cost.is_additive`)."""
        return True

    @property
    def has_energy(self) -> bool:
        """Whether the table holds energy values (imported and calibrated tables may hold
        latency only: ``value_kinds.energy`` then starts with ``absent``, and every estimate's
        ``energy_mj`` is NaN, never a made-up 0)."""
        kind = str(self.meta.get("value_kinds", {}).get("energy", ""))
        return not kind.startswith("absent")

    def no_energy_error(self) -> NasConfigError:
        """The error for an ``energy_mj@`` metric on a table that holds latency only."""
        return NasConfigError(
            f"table '{self.device}' ({self.path}) holds latency only (value_kinds.energy: "
            f"{self.meta['value_kinds']['energy']!r}); use latency_ms@{self.device}, or a "
            "device whose table or profile has energy"
        )

    @property
    def model_overhead_mj(self) -> float:
        return float(self.meta.get("model_overhead_mj", 0.0))

    def entry(self, layer: Layer) -> TableEntry:
        """The entry of ``layer``; a missing one raises naming the key and the fix."""
        found = self.entries.get((layer.signature, self.dtype, self.batch))
        if found is None:
            raise self.missing_error(layer)
        return found

    def bind(self, space: Any) -> LookupTable:
        """This table for predicting models of ``space`` (checked to be one it covers)."""
        self.check_space(space)
        return LookupTable(
            self.device,
            self.meta,
            self.entries,
            self.dtype,
            self.batch,
            self.path,
            space.name,
            getattr(space, "source", "") or None,
        )

    def _in_model(self) -> Mapping[str, float] | None:
        corrections = self.meta.get("in_model") or {}
        if not corrections:
            return None
        if self.space is None:
            if len(corrections) > 1:
                raise NasConfigError(
                    f"table '{self.device}' holds in-model corrections for the spaces "
                    f"{', '.join(corrections)}; bind it to one with "
                    "nas.cost.for_space(table, space)"
                )
            return next(iter(corrections.values()))
        return corrections.get(self.space)

    def moved_mb(self, layers: Sequence[Layer]) -> float:
        """Megabytes of weights and activations ``layers`` touch at the table's dtype: the
        ``MB`` of the in-model correction."""
        width = 2 if self.dtype in ("fp16", "bf16") else (1 if self.dtype == "int8" else 4)
        return sum(x.activation_elems + x.params for x in layers) * width / 1e6

    def estimate(self, layers: Sequence[Layer]) -> CostEstimate:
        latency = self.model_overhead_ms
        energy = self.model_overhead_mj
        fix = self._in_model()
        kinds = set()
        layers_ms = 0.0
        for layer in layers:
            e = self.entry(layer)
            layers_ms += e.latency_ms_p50
            energy += e.energy_mj
            kinds.add(e.kind)
        latency += layers_ms
        if fix is not None:
            extra = (
                fix["model_ms"]
                + fix["per_layer_ms"] * len(layers)
                + fix["per_mb_ms"] * self.moved_mb(layers)
                + fix.get("layer_scale", 0.0) * layers_ms
            )
            latency += extra
            energy += extra * float(self.meta.get("energy", {}).get("power_w", 0.0))
            if latency < 0:  # the signed terms went too far: the table's fault, said so
                terms = ", ".join(f"{k} {fix[k]:.4g}" for k in IN_MODEL_TERMS if k in fix)
                raise NasConfigError(
                    f"table '{self.device}' ({self.path}): in_model.{self.space}: its correction "
                    f"({terms}) makes a model of {len(layers)} layers ({layers_ms:.4g} ms of "
                    f"entries) cost {latency:.4g} ms; correct it in the table's JSON, or "
                    f"{self.refit_hint()}"
                )
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        if not self.has_energy:
            energy = math.nan
        return CostEstimate(latency_ms=latency, energy_mj=energy, kind=kind)

    def missing_error(self, layer: Layer, of_space: int = 0) -> NasConfigError:
        """The error for a layer the table lacks: its key, the nearest keys, the fix.

        ``of_space``: the layer is the first of that many the bound space can hold that the
        table lacks (found by a coverage check, not in a model being costed).
        """
        present = [k[0] for k in self.entries if k[1] == self.dtype and k[2] == self.batch]
        same_op = [s for s in present if s.split("-in:")[0] == layer.op.name] or present
        near = difflib.get_close_matches(layer.signature, same_op, n=3, cutoff=0.0)
        where = f" ({self.path})" if self.path else ""
        elsewhere = [f"[{k[1]}, batch {k[2]}]" for k in self.entries if k[0] == layer.signature]
        if elsewhere:  # the signature is there, at another dtype or batch
            return NasConfigError(
                f"table '{self.device}'{where} has {layer.signature} only at "
                f"{', '.join(elsewhere)}, not at [{self.dtype}, batch {self.batch}] (the "
                f"table's dtype and batch, for layer {layer.name}); a row's dtype or batch "
                f"edited by hand? otherwise {self._fill_hint()}"
            )
        used = f"for layer {layer.name}"
        if of_space:
            others = f" and {of_space - 1} more" if of_space > 1 else ""
            used = (
                f"(space '{self.space}' can hold it{others}, as its layer {layer.name}, and a "
                "table must cover every layer of a space)"
            )
        return NasConfigError(
            f"table '{self.device}'{where} has no entry {layer.signature} "
            f"[{self.dtype}, batch {self.batch}] {used}; nearest present: "
            f"{', '.join(near) or 'none'}; {self._fill_hint()}"
        )

    def refit_hint(self) -> str:
        """How to refit the table's in-model correction (a measured table: profile again)."""
        hint = self._fill_hint()
        if hint.startswith("fill it with: "):
            return "refit it by profiling again: " + hint.removeprefix("fill it with: ")
        return hint

    def _fill_hint(self, space: str = "", out: str = "") -> str:
        """How to add missing entries: re-profile a measured table into its own file (a rerun
        measures only what is missing), or rebuild an imported or calibrated one; with
        ``space`` and ``out``, how to build such a table for another space."""
        other = bool(space)
        if not other and self.space in list_spaces():
            space = str(self.space)
        elif not other:
            unnamed = f"<{self.space}'s YAML file>" if self.space else "SPACE"
            space = self.space_file or self._space_file() or unnamed
        out = out or str(self.path or f"{self.device}.json")
        source = self.meta.get("source")
        if isinstance(source, Mapping) and "format" in source:
            return (
                f"the table was imported ({source['format']}) and holds only what its source "
                "measured: cost a space it covers, or build a table for this space with "
                "nas profile (on the device) or nas calibrate (from whole-model timings)"
            )
        if str(self.meta.get("value_kinds", {}).get("latency", "")).startswith("calibrated"):
            verb = "calibrate one" if other else "refit it"
            return (
                f"{verb} for this space from the device's timings: nas calibrate --space "
                f"{space} --measurements M.csv --out {out}"
            )
        device = self.meta.get("runtime_device", "cpu")
        protocol = self.meta.get("protocol", {})
        options = "".join(
            f" --{name} {protocol[name]}"
            for name in ("threads", "warmup", "repeats")
            if protocol.get(name) is not None
        )
        power = self.meta.get("energy", {}).get("power_w")
        if power is not None and power != DEFAULT_POWER_W:
            options += f" --power-w {power:g}"
        return (
            f"fill it with: nas profile --space {space} --device {device}{options} "
            f"--batch {self.batch} --dtype {self.dtype} --out {out}"
        )

    def _shipped(self) -> bool:
        """Whether this is one of the tables in the checkout's ``latency_tables/``."""
        from nas.cost._registry import builtin_table_dir  # (the registry imports this module)

        return self.path is not None and Path(self.path).resolve().parent == builtin_table_dir()

    def _space_file(self) -> str:
        """The space file of a one-space table, as its recorded profile command names it."""
        if list(self.meta.get("spaces", {})) != [self.space]:
            return ""
        try:
            words = shlex.split(str(self.meta.get("profile_command", "")))
        except ValueError:  # an edited command that does not parse
            return ""
        after = words[words.index("--space") + 1 :] if "--space" in words else []
        return after[0] if after else ""

    def check_space(self, space: Any) -> None:
        """Raise unless the table was built for ``space`` (by name) or names no spaces at all,
        and its profile of ``space`` ran to the end."""
        if space.name in self.meta.get(UNFINISHED, []):
            command = self.meta.get("profile_commands", {}).get(space.name) or self.meta.get(
                "profile_command", "the nas profile command that made it"
            )
            raise NasConfigError(
                f"table '{self.device}' ({self.path}): its profile of space '{space.name}' was "
                "interrupted, so its entries lack the in-model correction fitted at the end; "
                f"finish it by running again: {command}"
            )
        spaces = self.meta.get("spaces")
        if spaces and space.name not in spaces:
            if space.name in list_spaces():
                shown = space.name
            else:
                shown = getattr(space, "source", "") or f"<{space.name}'s YAML file>"
            # a table holds several spaces (each with its in-model correction): add this one
            hint = self._fill_hint(shown, str(self.path or f"{self.device}.json"))
            if hint.startswith("fill it with: "):
                hint = "add it to the table with: " + hint.removeprefix("fill it with: ")
                if self._shipped() and space.name not in list_spaces():
                    # one's own space in a table the checkout ships: offer one's own table
                    mine = f"my_tables/{self.device}-mine.json"
                    hint += (
                        f"; or, to leave the shipped table as it is, give the same command "
                        f"--out {mine}, add my_tables to the experiment's table_dirs and "
                        f"use latency_ms@{self.device}-mine"
                    )
            raise NasConfigError(
                f"table '{self.device}' ({self.path}) covers the spaces {', '.join(spaces)}, not "
                f"'{space.name}'; {hint}"
            )

    def missing(self, layers: Iterable[Layer]) -> list[Layer]:
        """The layers of ``layers`` without an entry (each signature once)."""
        seen: dict[str, Layer] = {}
        for layer in layers:
            if (layer.signature, self.dtype, self.batch) not in self.entries:
                seen.setdefault(layer.signature, layer)
        return list(seen.values())

    # -- files ----------------------------------------------------------------------------------
    def with_entries(self, entries: Iterable[TableEntry], **meta: Any) -> LookupTable:
        """A copy with ``entries`` added (replacing same keys) and metadata updated."""
        merged = dict(self.entries)
        merged.update({e.key: e for e in entries})
        return LookupTable(
            self.device, {**self.meta, **meta}, merged, self.dtype, self.batch, self.path
        )

    def save(self, path: str | Path) -> Path:
        """Write ``<stem>.csv`` and ``<stem>.json`` atomically; returns the JSON path."""
        json_path = Path(path).with_suffix(".json")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for entry in sorted(self.entries.values(), key=lambda e: (e.op, e.key)):
            row = entry.row()
            for name in _FLOATS:
                row[name] = f"{row[name]:.6g}" if entry.kind == "measured" else repr(row[name])
            if not self.has_energy:
                row["energy_mj"] = ""  # latency only: an empty cell, not a made-up 0
            writer.writerow(row)
        meta = {
            "schema_version": TABLE_SCHEMA_VERSION,
            "device": self.device,
            "kind": "table",
            "units": {"latency": "ms", "energy": "mJ"},
            **{
                k: v
                for k, v in self.meta.items()
                if k not in ("schema_version", "device", "kind", "units", "table")
            },
            "table": json_path.with_suffix(".csv").name,
            "entries": len(self.entries),
        }
        atomic_write_text(json_path.with_suffix(".csv"), buf.getvalue())
        atomic_write_json(json_path, meta)
        return json_path

    @classmethod
    def load(
        cls, path: str | Path, *, dtype: str | None = None, batch: int | None = None
    ) -> LookupTable:
        """Read a table from its ``.json`` metadata (or its ``.csv``); validates everything."""
        json_path = Path(path).with_suffix(".json")
        meta = read_json_object(
            json_path,
            missing="no such table (a .json table file or a device in latency_tables/)",
            expected="a table's .json (beside its .csv)",
        )
        version = meta.get("schema_version")
        if "schema_version" not in meta:
            raise NasConfigError(
                f"{json_path}: missing key 'schema_version' (tables this version of nas reads "
                f'have "schema_version": {TABLE_SCHEMA_VERSION}); add it'
            )
        if version != TABLE_SCHEMA_VERSION:
            raise NasConfigError(
                f"{json_path}: schema_version: table schema {version!r} is not supported; this "
                f"version of nas reads schema {TABLE_SCHEMA_VERSION}: make the table again with "
                "this version (its profile_command, or nas import-table / nas calibrate from "
                "its source), or use the nas version that wrote it"
            )
        for key in ("device", "units"):
            if key not in meta:
                raise NasConfigError(f"{json_path}: missing key '{key}'")
        if meta["units"] != {"latency": "ms", "energy": "mJ"}:
            raise NasConfigError(
                f'{json_path}: units: expected {{"latency": "ms", "energy": "mJ"}}, got '
                f"{meta['units']!r}; convert its values to ms and mJ, then relabel the units"
            )
        _check_numbers(json_path, meta)
        csv_path = json_path.with_suffix(".csv")
        if meta.get("table", csv_path.name) != csv_path.name:
            # a copied pair keeps the original's name here: its own rows would go unread
            raise NasConfigError(
                f"{json_path}: table: names {meta['table']!r}, but a table's rows are the "
                f'{csv_path.name} beside its JSON; set "table": "{csv_path.name}" (a '
                "renamed or copied table), or give the JSON the name of its rows file"
            )
        energy = str(meta.get("value_kinds", {}).get("energy", ""))
        entries = _read_csv(csv_path, energy_absent=energy.startswith("absent"))
        stated = meta.get("entries", len(entries))
        if stated != len(entries):
            # rows lost in a copy, or added by hand: either way, not the table that was made
            raise NasConfigError(
                f"{json_path}: entries: says {stated!r} rows, but {csv_path.name} holds "
                f"{len(entries)}; a cut-short copy: copy the table again (or rebuild it); rows "
                f'added or removed on purpose: set "entries": {len(entries)}'
            )
        protocol = meta.get("protocol", {})
        return cls(
            device=str(meta["device"]),
            meta=meta,
            entries={e.key: e for e in entries},
            dtype=dtype or protocol.get("dtype", "fp32"),
            batch=batch or int(protocol.get("batch", 1)),
            path=str(json_path),
        )


def _check_numbers(path: Path, meta: Mapping[str, Any]) -> None:
    """Refuse metadata numbers that predictions add up: overheads, the power figure and the
    in-model corrections must be finite numbers (overheads and power not negative)."""

    def number(key: str, value: Any, *, signed: bool = False) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (value < 0 and not signed):
            what = "a finite number" if signed else "a finite number >= 0"
            raise NasConfigError(
                f"{path}: {key}: expected {what}, got {value!r}; fix it in the table's JSON, "
                "or rebuild the table with the command that made it"
            )

    for key in ("model_overhead_ms", "model_overhead_mj"):
        if key in meta:
            number(key, meta[key])
    energy = meta.get("energy")
    if isinstance(energy, Mapping) and "power_w" in energy:
        number("energy.power_w", energy["power_w"])
    corrections = meta.get("in_model") or {}
    if not isinstance(corrections, Mapping):
        raise NasConfigError(f"{path}: in_model: expected a mapping of space -> correction")
    for space, fix in corrections.items():
        if not isinstance(fix, Mapping):
            raise NasConfigError(
                f"{path}: in_model.{space}: expected model_ms, per_layer_ms and per_mb_ms"
            )
        for key in IN_MODEL_TERMS:
            if key in OPTIONAL_TERMS and key not in fix:
                continue
            number(f"in_model.{space}.{key}", fix.get(key), signed=True)


def _read_csv(path: Path, *, energy_absent: bool = False) -> list[TableEntry]:
    """The rows of ``path``; with ``energy_absent`` (a latency-only table), ``energy_mj`` cells
    are empty (older tables wrote 0.0) and read as 0.0, which no estimate uses."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a spreadsheet's byte-order mark)
    except FileNotFoundError:
        raise NasConfigError(
            f"{path}: table rows file not found; a table is {path.stem}.json plus the "
            f"{path.name} beside it: copy or move the two together"
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header and c != "source"]
    if missing:
        hints = [f"'{h}' -> '{_UNITLESS_HINT[h]}'" for h in header if h in _UNITLESS_HINT]
        hint = f" (columns need units in their names: {', '.join(hints)})" if hints else ""
        unknown = [h for h in header if h not in COLUMNS and h not in _UNITLESS_HINT]
        renamed = [
            f"'{close[0]}' -> '{m}'"
            for m in missing
            if (close := difflib.get_close_matches(m, unknown, n=1, cutoff=0.6))
        ]
        hint += f" (renamed? {', '.join(renamed)})" if renamed else ""
        raise NasConfigError(f"{path}:1: missing columns {', '.join(missing)}{hint}")
    entries: list[TableEntry] = []
    first: dict[tuple[str, str, int], int] = {}  # key -> line it was first seen on
    for row in reader:
        line = reader.line_num
        values: dict[str, Any] = {c: row.get(c) or "" for c in COLUMNS}
        if energy_absent and not values["energy_mj"].strip():
            values["energy_mj"] = "0"
        for c, kind in [(c, int) for c in _INTS] + [(c, float) for c in _FLOATS]:
            try:
                values[c] = kind(values[c])
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise NasConfigError(
                    f"{path}:{line}: column {c}: expected {what}, got {values[c]!r}"
                ) from None
        try:
            entry = TableEntry(**values)
        except NasConfigError as exc:
            raise NasConfigError(f"{path}:{line}: {exc}") from None
        k = entry.key
        if k in first:
            raise NasConfigError(
                f"{path}:{line}: duplicate entry {k[0]} [{k[1]}, batch {k[2]}] (first on line "
                f"{first[k]}); keep one of the two rows"
            )
        first[k] = line
        entries.append(entry)
    return entries
