"""Finding a device's cost model by name in ``latency_tables/``."""

from __future__ import annotations

from pathlib import Path

from nas._config import load_yaml
from nas._errors import NasConfigError, nearest
from nas.cost._analytic import AnalyticDevice
from nas.cost._base import CostModel

__all__ = ["builtin_table_dir", "list_devices", "load_cost_model"]


def builtin_table_dir() -> Path:
    """The ``latency_tables/`` folder of the checkout this package was installed from."""
    return Path(__file__).resolve().parents[2] / "latency_tables"


def list_devices(extra_dirs: tuple[Path, ...] = ()) -> list[str]:
    """Device names with a cost model file in ``latency_tables/`` (and ``extra_dirs``)."""
    names: set[str] = set()
    for folder in (builtin_table_dir(), *extra_dirs):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def load_cost_model(device: str, extra_dirs: tuple[Path, ...] = ()) -> CostModel:
    """The cost model of ``device``: ``<dir>/<device>.yaml`` in ``extra_dirs``, then built-ins.

    A path to a YAML file is accepted too.
    """
    candidates = [Path(device)] if device.endswith((".yaml", ".yml")) else []
    candidates += [folder / f"{device}.yaml" for folder in (*extra_dirs, builtin_table_dir())]
    for path in candidates:
        if path.is_file():
            node = load_yaml(path)
            kind = node.get("kind").as_choice(["analytic"])
            if kind == "analytic":
                model = AnalyticDevice.from_node(node)
                if not device.endswith((".yaml", ".yml")) and model.name != device:
                    raise node.get("device").error(
                        f"file is named for device '{device}' but declares '{model.name}'"
                    )
                return model
    devices = list_devices(extra_dirs)
    guess = nearest(device, devices)
    hint = f" (did you mean '{guess}'?)" if guess else ""
    raise NasConfigError(
        f"unknown device '{device}': no latency_tables/{device}.yaml; known devices: "
        f"{', '.join(devices) or 'none'}{hint}"
    )
