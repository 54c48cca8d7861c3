"""The experiment file: what to search, on which data, for which objectives and constraints.

Example (``experiments/quickstart.yaml``)::

    name: quickstart
    space: mobilenet_small            # a built-in space name or a YAML path
    data: {dataset: digits}
    train: {epochs: 4, lr: 0.01}
    objectives: [error, params, latency_ms@cpu]
    constraints: {latency_ms@cpu: "<= 2.0"}
    search: {sampler: tpe, n_trials: 30, seed: 0}

Relative paths inside the file (space, data, table_dirs) are resolved against the file's folder;
``out`` against the working directory.
"""

from __future__ import annotations

import copy
import logging
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nas._config import Node, check_field_types, load_yaml, override_of
from nas._errors import NasConfigError, nearest
from nas.cost import list_devices
from nas.cost._registry import names_a_file
from nas.space import list_spaces
from nas.train import DataConfig, TrainConfig

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the stage after the search; imported where parsed (search <- select cycle)
    from nas.compress import CompressConfig
    from nas.search._select import SelectConfig
    from nas.train import FinetuneConfig

__all__ = [
    "SAMPLERS",
    "Constraint",
    "Experiment",
    "Metric",
    "SearchConfig",
    "load_experiment",
    "parse_metric",
]

SAMPLERS = ("auto", "cost-aware", "tpe", "nsga2", "nsga3", "gp", "random")
STATIC_METRICS = ("params", "macs", "peak_mem_bytes")
TRAINED_METRICS = ("error", "accuracy")
COST_PREFIXES = ("latency_ms", "energy_mj")
#: the sections of an experiment file
EXPERIMENT_KEYS = (
    "name",
    "space",
    "data",
    "train",
    "objectives",
    "constraints",
    "table_dirs",
    "devices",
    "search",
    "out",
    "select",
    "finetune",
    "compress",
)
#: every mapping of an experiment file and its keys, so that a key written in the wrong one
#: is refused with where it belongs (``n_trials`` at the top level: ``search.n_trials``);
#: tests/search/test_experiment.py checks that each section's parser takes each of them
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "": EXPERIMENT_KEYS,
    **{
        section: tuple(keys.split())
        for section, keys in {
            "data": "dataset root path val_fraction test_fraction seed limit normalize",
            "train": "epochs batch_size lr optimizer weight_decay label_smoothing seed threads "
            "max_seconds",
            "search": "sampler n_trials seed storage study_name population_size timeout_s",
            "select": "rule k budgets ids",
            "finetune": "epochs batch_size lr optimizer weight_decay warmup_epochs "
            "label_smoothing seed threads amp channels_last checkpoint_every distill",
            "finetune.distill": "teacher temperature weight",
            "compress": "prune sparsity sparse_epochs quantize latency",
            "compress.prune": "ratio round_to epochs",
            "compress.quantize": "calibration qat qat_epochs qat_lr max_drop tool",
            "compress.latency": "threads warmup repeats rounds spin_up_s",
        }.items()
    },
}
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Metric:
    """A named quantity of an architecture: objective, constraint, or both.

    Attributes:
        name: ``error``, ``accuracy``, ``params``, ``macs``, ``peak_mem_bytes``,
            ``latency_ms@<device>`` or ``energy_mj@<device>``.
        direction: ``minimize`` or ``maximize``.
        needs_training: Whether the value comes from training (else it is free to compute).
        device: The device of a cost metric, else None.
    """

    name: str
    direction: str
    needs_training: bool
    device: str | None = None

    @property
    def quantity(self) -> str:
        return self.name.split("@")[0]


def parse_metric(name: str) -> Metric:
    """A :class:`Metric` from its name; raises NasConfigError for an unknown one."""
    if not isinstance(name, str):
        raise NasConfigError(f"expected a metric name, got {name!r}")
    if name in TRAINED_METRICS:
        return Metric(name, "maximize" if name == "accuracy" else "minimize", True)
    if name in STATIC_METRICS:
        return Metric(name, "minimize", False)
    quantity, at, device = name.partition("@")
    if quantity in COST_PREFIXES and at and device:
        return Metric(name, "minimize", False, device)
    if "," in name:
        items = ", ".join(part.strip() for part in name.split(","))
        raise NasConfigError(
            f"unknown metric '{name}': one name, not a list; write a list as [{items}]"
        )
    # with a device given, the suggestions name it (latncy_ms@edge-tpu: latency_ms@edge-tpu)
    device = device if at and device else "<device>"
    allowed = [*TRAINED_METRICS, *STATIC_METRICS, *(f"{p}@{device}" for p in COST_PREFIXES)]
    raise NasConfigError(f"unknown metric '{name}'", allowed=allowed, value=name)


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``latency_ms@cpu <= 2.0``.

    ``violation`` follows Optuna's convention: <= 0 when satisfied, > 0 when violated, scaled by
    the bound so that constraints in different units weigh alike.
    """

    metric: Metric
    op: str
    bound: float

    def satisfied(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.bound))

    def violation(self, value: float) -> float:
        scale = abs(self.bound) or 1.0
        excess = (value - self.bound) if self.op in ("<=", "<") else (self.bound - value)
        if self.op in ("<", ">") and excess == 0:
            return 1e-12
        return excess / scale

    def __str__(self) -> str:
        return f"{self.metric.name} {self.op} {self.bound:g}"


def _sampler_problem(sampler: str, objectives: Sequence[Metric]) -> str | None:
    """Why ``sampler`` cannot search ``objectives``, or None: the cost-aware sampler predicts
    trained objectives from free ones, so it needs one of each."""
    trained = [m.needs_training for m in objectives]
    if sampler == "cost-aware" and (all(trained) or not any(trained)):
        return (
            "'cost-aware' needs both a trained objective (error/accuracy) and a free one "
            "(params, latency_ms@..., ...); use 'auto' or 'tpe'"
        )
    return None


#: the largest sampler seed (numpy's and Optuna's samplers take 32 bits)
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SearchConfig:
    """How the study runs: sampler, budget, seed, and where Optuna stores it."""

    sampler: str = "auto"
    n_trials: int = 30
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    population_size: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.sampler not in SAMPLERS:
            raise NasConfigError(
                f"unknown sampler '{self.sampler}'", allowed=SAMPLERS, value=self.sampler
            )
        if self.n_trials < 1:
            raise NasConfigError(f"search.n_trials must be >= 1, got {self.n_trials}")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's and Optuna's samplers take 32 bits
            raise NasConfigError(f"search.seed must be in 0..{MAX_SEED}, got {self.seed}")

    @classmethod
    def from_node(cls, node: Node) -> SearchConfig:
        if node.value is None:
            return cls()
        storage = node.get("storage", None)
        study = node.get("study_name", None)
        pop = node.get("population_size", None)
        timeout = node.get("timeout_s", None)
        out = cls(
            sampler=node.get("sampler", "auto").as_choice(SAMPLERS),
            n_trials=node.get("n_trials", 30).as_int(min=1),
            seed=node.get("seed", 0).as_int(min=0, max=MAX_SEED),
            storage=storage.as_str() if storage.value is not None else None,
            study_name=study.as_str() if study.value is not None else None,
            population_size=pop.as_int(min=2, max=100_000) if pop.value is not None else None,
            timeout_s=timeout.as_float(min=0.0) if timeout.value is not None else None,
        )
        node.done()
        if out.population_size is not None and out.sampler not in ("nsga2", "nsga3"):
            log.warning(
                "%s: search.population_size is for the genetic samplers (nsga2, nsga3); "
                "sampler %s does not use it",
                pop.origin or node.file,
                out.sampler,
            )
        return out


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file (frozen; ``to_dict`` gives the resolved config)."""

    name: str
    space: str
    data: DataConfig
    train: TrainConfig
    objectives: tuple[Metric, ...]
    constraints: tuple[Constraint, ...]
    search: SearchConfig
    out: str
    source: str | None = None
    devices: tuple[str, ...] = field(default=())
    table_dirs: tuple[str, ...] = field(default=())
    select: SelectConfig | None = None  # which Pareto members are finished after the search
    finetune: FinetuneConfig | None = None  # None: stop after the search
    compress: CompressConfig | None = None  # None: no compression
    #: paths set on the command line (``--set``; ``("finetune", "lr")``), and the argument
    #: that set each
    set_by: Mapping[tuple[object, ...], str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.objectives:
            raise NasConfigError("an experiment needs at least one objective")
        unusable = _sampler_problem(self.search.sampler, self.objectives)
        if unusable is not None:
            raise NasConfigError(f"search.sampler {unusable}")

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """Objectives plus constrained metrics, each once."""
        seen = {m.name: m for m in self.objectives}
        for c in self.constraints:
            seen.setdefault(c.metric.name, c.metric)
        return tuple(seen.values())

    @property
    def needs_training(self) -> bool:
        return any(m.needs_training for m in self.metrics)

    @property
    def study_name(self) -> str:
        return self.search.study_name or self.name

    def locate(self, key: str) -> str | None:
        """Where the value of ``key`` (dotted) came from, for an error about it found later
        (a fine-tune that diverged): the ``--set`` that set it or a mapping holding it, else
        the experiment file."""
        return override_of(self.set_by, tuple(key.split("."))) or self.source

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "space": self.space,
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "objectives": [
                {"maximize": m.name}
                if m.direction == "maximize" and m.name != "accuracy"
                else m.name
                for m in self.objectives
            ],
            "constraints": {c.metric.name: f"{c.op} {c.bound!r}" for c in self.constraints},
            "devices": list(self.devices),
            "table_dirs": list(self.table_dirs),
            "search": asdict(self.search),
            "out": self.out,
            "select": None if self.select is None else self.select.to_dict(),
            "finetune": None if self.finetune is None else self.finetune.to_dict(),
            "compress": None if self.compress is None else self.compress.to_dict(),
        }


def _apply_overrides(node: Node, overrides: Sequence[str]) -> None:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to the raw document."""
    for item in overrides:
        key, eq, text = item.partition("=")
        origin = f"--set {item!r}"
        if not eq or not key.strip():
            raise NasConfigError("expected KEY=VALUE, e.g. search.n_trials=60", file=origin)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise NasConfigError(
                f"the value is not valid YAML ({problem}); to pass it as text, quote it "
                f"inside the shell's quotes: --set '{key.strip()}=\"{text.strip()}\"'",
                file=origin,
            ) from None
        node.override(key.strip().split("."), value, origin)


def _check_tables(
    space: str,
    named_at: dict[str, Node],
    metrics_at: list[tuple[Metric, Node]],
    dirs: tuple[Path, ...],
) -> None:
    """Each device's lookup table must be one made for the space, and hold energy where a
    metric asks for it: said where the experiment names the device or the metric."""
    from nas.cost import LookupTable, load_cost_model
    from nas.space import load_space

    loaded = None
    for device, where in named_at.items():
        if names_a_file(device):  # a path: loaded when the search starts
            continue
        try:
            model = load_cost_model(device, dirs)
        except NasConfigError as exc:
            if exc.file is None:
                raise where.error(exc.reason) from None
            # the error is in the device's own file (a profile's key): said there, with where
            # the experiment names the device
            named = where.origin or f"{where.file}:{where.line}"
            raise NasConfigError(
                f"{exc.reason} (device '{device}', named at {named})",
                file=exc.file,
                line=exc.line,
                key=exc.key,
            ) from None
        if not isinstance(model, LookupTable):
            continue
        # the space's own errors name its file and key, not this metric
        loaded = loaded or load_space(space)
        try:
            model.check_space(loaded)
        except NasConfigError as exc:
            raise where.error(exc.reason) from None
        if model.has_energy:
            continue
        for metric, at in metrics_at:
            if metric.device == device and metric.quantity == "energy_mj":
                raise at.error(model.no_energy_error().reason)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and strictly validate an experiment file (with ``--set`` overrides applied).

    Raises:
        NasConfigError: naming the file, line and key of the first problem.
    """
    if isinstance(overrides, str):  # one 'key=value' would be read a character at a time
        raise NasConfigError(
            f"overrides: expected a list of 'KEY=VALUE' strings, got the string {overrides!r}; "
            f"pass [{overrides!r}]"
        )
    path = Path(path)
    node = load_yaml(path).with_homes(SECTION_KEYS)
    if (
        isinstance(node.value, dict)
        and {"type", "stages"} & set(node.value)
        and not (node.has("objectives"))
    ):
        raise NasConfigError(
            f"{path}: a search space file, not an experiment; an experiment names it (space: "
            f"{path}) with its objectives: see experiments/quickstart.yaml"
        )
    node.value = copy.deepcopy(node.value)
    _apply_overrides(node, overrides)
    base = path.resolve().parent
    node.done(EXPERIMENT_KEYS)  # a misspelt section first: later checks would misread it

    name = node.get("name").as_str()
    space_node = node.get("space")
    space = space_node.as_str()
    if space.endswith((".yaml", ".yml")) or "/" in space:
        resolved = space_node.path_value(base)
        if not resolved.is_file():
            raise space_node.error(f"space file {resolved} does not exist")
        space = str(resolved)
    elif space not in list_spaces():
        raise space_node.error(
            f"unknown search space '{space}' (a built-in name, or a YAML path)",
            allowed=list_spaces(),
            value=space,
        )
    data = DataConfig.from_node(node.get("data", {"dataset": "digits"}), base)
    train = TrainConfig.from_node(node.get("train", {}))

    objectives_node = node.get("objectives")
    objectives: list[Metric] = []
    named_at: dict[str, Node] = {}  # where each device is first named, for its error
    metrics_at: list[tuple[Metric, Node]] = []  # where each cost metric is named
    for item in objectives_node.list(allow_scalar=True):
        metric = _objective(item)
        if metric.device:
            named_at.setdefault(metric.device, item)
            metrics_at.append((metric, item))
        if any(m.name == metric.name for m in objectives):
            raise item.error(f"objective '{metric.name}' listed twice")
        if {metric.name, *(m.name for m in objectives)} >= {"error", "accuracy"}:
            raise item.error("'error' and 'accuracy' are the same objective; keep one")
        objectives.append(metric)

    constraints = []
    c_node = node.get("constraints", None)
    if c_node.value is not None:
        for key, value in c_node.items():
            metric = c_node.child(key, key).convert(parse_metric)
            if metric.device:
                named_at.setdefault(metric.device, c_node.child(key, key))
                metrics_at.append((metric, c_node.child(key, key)))
            text = str(value.value) if isinstance(value.value, (str, int, float)) else ""
            m = _CONSTRAINT.match(text)
            try:
                bound = float(m[2]) if m else float("nan")
            except ValueError:
                bound = float("nan")
            if not m or bound != bound:
                raise value.error(
                    f'expected a bound like "<= 2.0" or ">= 0.9", got {value.value!r}'
                )
            if metric.name in ("error", "accuracy") and not 0 <= bound <= 1:
                raise value.error(  # "<= 5" meant 5%: a bound never binding, silently
                    f"{metric.name} is a fraction in [0, 1], got {bound:g}; for "
                    f'{bound:g}% write "{m[1]} {bound / 100:g}"'
                )
            constraints.append(Constraint(metric, m[1], bound))

    table_dirs = []
    dirs_node = node.get("table_dirs", None)
    if dirs_node.value is not None:
        for item in dirs_node.list(allow_scalar=True):
            folder = item.path_value(base)
            if not folder.is_dir():
                raise item.error(f"table folder {folder} does not exist")
            table_dirs.append(str(folder))
    known = list_devices(tuple(Path(d) for d in table_dirs))

    def check_known(device: str, where: Node) -> None:
        if device not in known and not names_a_file(device):
            raise where.error(
                f"unknown device '{device}': no table or profile of that name in "
                "latency_tables/ or table_dirs",
                allowed=known,
                value=device,
            )

    devices = [m.device for m in (*objectives, *(c.metric for c in constraints)) if m.device]
    devices_node = node.get("devices", None)
    if devices_node.value is not None:
        listed = []
        for item in devices_node.list(allow_scalar=True):  # the list first: its own typos
            check_known(item.as_str(), item)
            listed.append(item.as_str())
            named_at.setdefault(item.as_str(), item)
        for d in devices:  # then each metric's device, where the metric names it
            if d not in listed:
                raise named_at[d].error(
                    f"metric on device '{d}' but 'devices' lists only {listed}",
                    allowed=listed,
                    value=d,
                )
        devices = listed
    else:
        for device in devices:
            check_known(device, named_at[device])
    if node.get("data", None).value is None:  # digits by default, but only when said
        trained = [
            item
            for item, metric in zip(
                objectives_node.list(allow_scalar=True), objectives, strict=True
            )
            if metric.needs_training
        ]
        if c_node.value is not None:  # constraints were read in the mapping's order
            trained += [
                c_node.child(key, key)
                for (key, _), c in zip(c_node.items(), constraints, strict=True)
                if c.metric.needs_training
            ]
        if trained:
            raise trained[0].error(
                f"'{trained[0].value}' is measured by training, and the experiment names no "
                "data to train on; add a data section, e.g. data: {dataset: digits}"
            )
    search = SearchConfig.from_node(node.get("search", None))
    out = node.get("out", None)
    select, finetune, compress = _final_stage(node, base)
    if select is not None and select.budgets:  # before the search, not after it
        budgets = node.get("select").get("budgets")
        for key, _ in budgets.items():
            where = budgets.child(key, key)
            on = where.convert(parse_metric).device
            if on is not None and on not in devices:
                costs = [f"{q}@{d}" for d in dict.fromkeys(devices) for q in COST_PREFIXES]
                raise where.error(
                    f"budget on device '{on}', which the study does not cost (to cost it, add "
                    f"'{on}' to 'devices')",
                    allowed=costs,
                    value=key,
                )
            metrics_at.append((where.convert(parse_metric), where))
    _check_tables(space, named_at, metrics_at, tuple(Path(d) for d in table_dirs))
    unusable = _sampler_problem(search.sampler, objectives)
    if unusable is not None:  # located at its line, or its --set
        raise node.get("search").get("sampler").error(unusable)
    exp = Experiment(
        name=name,
        space=space,
        data=data,
        train=train,
        objectives=tuple(objectives),
        constraints=tuple(constraints),
        search=search,
        out=out.as_str() if out.value is not None else str(Path("runs") / name),
        source=str(path),
        devices=tuple(dict.fromkeys(devices)),
        table_dirs=tuple(table_dirs),
        select=select,
        finetune=finetune,
        compress=compress,
        set_by=node.overridden,
    )
    node.done()
    return exp


#: metrics an objective may maximize: capacity proxies, for a search with no training that
#: trades capacity against cost (a cost-only search that only minimizes finds the empty network)
MAXIMIZABLE = ("params", "macs")


def _objective(item: Node) -> Metric:
    """An objective: a metric name, or ``{maximize: params|macs}``."""
    if not isinstance(item.value, dict):
        return item.convert(parse_metric)
    if list(item.value) != ["maximize"]:
        keys = [str(k) for k in item.value]
        close = nearest(keys[0], ["maximize"]) if len(keys) == 1 else None
        hint = " (did you mean 'maximize'?)" if close else ""
        raise item.error(
            f"expected a metric name or {{maximize: METRIC}}, got {item.value!r}{hint}"
        )
    inner = item.get("maximize")
    metric = inner.convert(parse_metric)
    if metric.name not in MAXIMIZABLE:
        hint = " (maximize 'accuracy' by naming it)" if metric.name == "error" else ""
        raise inner.error(
            f"only {', '.join(MAXIMIZABLE)} can be maximized, not '{metric.name}'{hint}",
            allowed=list(MAXIMIZABLE),
            value=metric.name,
        )
    return replace(metric, direction="maximize")


def _final_stage(
    node: Node, base: Path
) -> tuple[SelectConfig | None, FinetuneConfig | None, CompressConfig | None]:
    """``select:``, ``finetune:`` and ``compress:``, the stage after the search.

    Without ``finetune:`` the run stops at the Pareto front; ``select:`` or ``compress:``
    alone then raise, since nothing would use them, unless ``finetune`` was set to null on
    the command line (``--set finetune=null``): that asks to stop at the front, so the whole
    stage is dropped.
    """
    from nas.compress import CompressConfig
    from nas.search._select import SelectConfig
    from nas.train import FinetuneConfig

    f_node, s_node, c_node = (node.get(k, None) for k in ("finetune", "select", "compress"))
    if f_node.value is None:
        if f_node.origin is not None:  # --set finetune=null: stop at the Pareto front
            return None, None, None
        for key, child in (("select", s_node), ("compress", c_node)):
            if child.value is not None:
                raise child.error(
                    f"'{key}' applies to the models finished after the search; add a "
                    "'finetune:' section (e.g. 'finetune: {epochs: 30}') or remove it"
                )
        return None, None, None
    made_by = f_node.origin
    if made_by is not None and any(  # made on the way to one of its keys: say what it starts
        len(path) > 1 and path[0] == "finetune" and origin == made_by
        for path, origin in node.overridden.items()
    ):
        log.warning(
            "%s adds a 'finetune:' section, which %s does not have: after the search the run "
            "fine-tunes the selected models with the default settings (then compresses them); "
            "to stop at the Pareto front, leave out the finetune.* settings",
            made_by,
            node.file,
        )
    select = SelectConfig.from_node(s_node) if s_node.value is not None else SelectConfig()
    finetune = FinetuneConfig.from_node(f_node, base)
    compress = None if c_node.value is None else CompressConfig.from_node(c_node)
    return select, finetune, compress
