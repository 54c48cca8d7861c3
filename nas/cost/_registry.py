"""Finding a device's cost model by name in ``latency_tables/``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from nas._config import load_yaml
from nas._errors import NasConfigError, nearest
from nas.cost._analytic import AnalyticDevice
from nas.cost._base import CostModel
from nas.cost._table import LookupTable, fit_error, poor_fit
from nas.space import SearchSpace

__all__ = ["builtin_table_dir", "for_space", "list_devices", "load_cost_model"]

log = logging.getLogger(__name__)


def builtin_table_dir() -> Path:
    """The ``latency_tables/`` folder of the checkout this package was installed from."""
    return Path(__file__).resolve().parents[2] / "latency_tables"


def list_devices(extra_dirs: tuple[Path, ...] = ()) -> list[str]:
    """Device names with a cost model in ``latency_tables/`` (and ``extra_dirs``): analytic
    profiles (``<device>.yaml``) and lookup tables (``<device>.json`` + ``.csv``)."""
    names: set[str] = set()
    for folder in (builtin_table_dir(), *extra_dirs):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
            names.update(p.stem for p in folder.glob("*.yml"))
            names.update(p.stem for p in folder.glob("*.json"))
    # a table that nas profile replaced is kept as <name>.prev[-N].json: a backup, not a device
    return sorted(n for n in names if not re.search(r"\.prev(-\d+)?$", n))


def for_space(model: CostModel | str, space: SearchSpace | str) -> CostModel:
    """``model`` ready to cost architectures of ``space``: a table is checked to cover the space
    (every layer it can hold) and bound to it; an analytic model serves every space as is.
    Either may be given by name (``load_cost_model``, ``load_space``)."""
    from nas.space import load_space

    model = as_cost_model(model)
    if isinstance(space, str):
        space = load_space(space)
    if not isinstance(space, SearchSpace):
        raise NasConfigError(
            f"space: expected a search space (nas.load_space) or its name, got "
            f"{type(space).__name__}"
        )
    if isinstance(model, LookupTable):
        model = model.bind(space)
        missing = model.missing(space.possible_layers())
        if missing:
            raise model.missing_error(missing[0], of_space=len(missing))
        _warn_of_a_poor_fit(model, space)
        made_for = (model.meta.get("spaces") or {}).get(space.name)
        if made_for not in (None, space.hash) and model.space in model.meta.get("in_model", {}):
            log.warning(
                "table '%s' (%s) was made for another version of space '%s' (hash %s; this one "
                "hashes to %s): every layer has an entry, but the in-model correction was "
                "fitted on that version; %s",
                model.device,
                model.path,
                space.name,
                made_for,
                space.hash,
                model.refit_hint(),
            )
    return model


def as_cost_model(model: CostModel | str) -> CostModel:
    """``model``, or the cost model of the device (or table or profile path) it names; anything
    else is refused."""
    if isinstance(model, str):
        model = load_cost_model(model)
    if not hasattr(model, "estimate"):
        raise NasConfigError(
            f"model: expected a cost model (nas.cost.load_cost_model) or a device name, got "
            f"{type(model).__name__}"
        )
    return model


def _warn_of_a_poor_fit(table: LookupTable, space: SearchSpace) -> None:
    """Say so at every use of a table whose profile's layer timings did not add up to its
    end-to-end timings (``nas profile`` warned once; the table goes on being used)."""
    fix = (table.meta.get("in_model") or {}).get(space.name) or {}
    if not poor_fit(fix):
        return
    log.warning(
        "table '%s' (%s): its profile of '%s' fit the end-to-end timings poorly (%s: the "
        "machine was busy, or the warm-up too short), so its predictions may be far off; "
        "check it with nas validate-table --space %s --table %s, or profile again on an idle "
        "machine into a new --out",
        table.device,
        table.path,
        space.name,
        fit_error(fix),
        getattr(space, "source", "") or space.name,
        table.path,
    )


def _load_profile(path: Path, device: str) -> AnalyticDevice:
    """An analytic profile from ``path`` (``device``: the name it was asked for, or the path)."""
    node = load_yaml(path)
    if not node.has("kind") and node.has("stages"):
        raise NasConfigError(
            f"{path}: a search space file, not a cost model; name a table (.json) or an "
            "analytic profile (.yaml with 'kind: analytic') as the device",
        )
    if not node.has("kind"):
        raise node.error(
            "missing required key 'kind': a .yaml cost model is an analytic profile; add "
            "'kind: analytic'"
        )
    node.get("kind").as_choice(["analytic"])
    model = AnalyticDevice.from_node(node)
    if not names_a_file(device) and model.name != device:
        raise node.get("device").error(
            f"file is named for device '{device}' but declares '{model.name}'; set "
            f"'device: {device}' (a renamed copy), or name the device '{model.name}'"
        )
    return model


def names_a_file(device: str) -> bool:
    """Whether ``device`` is a path to a table (``.json``/``.csv``) or a profile (``.yaml``)
    rather than a device name looked up in the table folders."""
    return device.endswith((".json", ".csv", ".yaml", ".yml"))


def load_cost_model(device: str, extra_dirs: tuple[Path, ...] = ()) -> CostModel:
    """The cost model of ``device``, searched in ``extra_dirs`` then ``latency_tables/``:
    a lookup table ``<device>.json`` (+ ``.csv``) first, else an analytic ``<device>.yaml``.

    A path to a table (``.json``/``.csv``) or to an analytic profile (``.yaml``) works too.
    """
    if not isinstance(device, str) or not device:
        raise NasConfigError(
            f"device: expected a device name or a table's or profile's path, got {device!r}"
        )
    if device.endswith(".json") or device.endswith(".csv"):
        return LookupTable.load(device)
    if names_a_file(device):
        return _load_profile(Path(device), device)
    if "/" in device:  # a path, but to no table or profile
        raise NasConfigError(
            f"{device}: not a cost model: name a table (NAME.json, its rows in the NAME.csv "
            "beside it), an analytic profile (NAME.yaml), or a device by its name"
        )
    for folder in (*extra_dirs, builtin_table_dir()):  # the first folder holding it wins
        found = [folder / f"{device}{suffix}" for suffix in (".json", ".yaml", ".yml")]
        found = [path for path in found if path.is_file()]
        if not found:
            continue
        if len(found) > 1:  # a table and a profile of one name: neither may hide the other
            raise NasConfigError(
                f"device '{device}' is both {found[0].name} and {found[1].name} in {folder}; "
                f"rename one (its file name is the device's name in metrics)"
            )
        if folder != builtin_table_dir() and device in list_devices():
            log.warning(
                "device '%s' is %s, which takes the place of the built-in '%s' (give it "
                "another name to use both)",
                device,
                found[0],
                device,
            )
        if found[0].suffix == ".json":
            table = LookupTable.load(found[0])
            if table.device != device:
                raise NasConfigError(
                    f"{found[0]}: device: file is named for '{device}' but declares "
                    f'\'{table.device}\'; set "device": "{device}" in it (a renamed copy), or '
                    f"name the device '{table.device}'"
                )
            return table
        return _load_profile(found[0], device)
    devices = list_devices(extra_dirs)
    guess = nearest(device, devices)
    hint = f" (did you mean '{guess}'?)" if guess else ""
    folders = ", ".join(str(f) for f in (*extra_dirs, builtin_table_dir()))
    raise NasConfigError(
        f"unknown device '{device}': no {device}.json or {device}.yaml in {folders}; known "
        f"devices: {', '.join(devices) or 'none'}{hint}; a table elsewhere is named by its path "
        f"(for example ./{device}.json) or found by naming its folder (an experiment's "
        "table_dirs, a command's --table-dir), and nas profile, nas import-table or nas "
        "calibrate build one"
    )
