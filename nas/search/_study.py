"""The study of a search: preparing an experiment (space, data, cost models), creating or
opening its Optuna study and checking that a resumed study is the same search (the loop that
fills it: ``nas.search._loop``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nas._errors import NasConfigError
from nas.cost import CostModel, LookupTable, for_space, load_cost_model
from nas.search._evaluate import Evaluator
from nas.search._experiment import Experiment, Metric, parse_metric
from nas.space import (
    SearchSpace,
    changed_op_modules,
    import_op_modules,
    load_space,
    op_module_digests,
    op_module_folders,
    space_from_dict,
)
from nas.train import SplitData, load_data

__all__ = ["Prepared", "default_storage", "open_study", "prepare", "storage_url"]

log = logging.getLogger(__name__)

#: study user attributes written once when a study is created
SPACE_ATTR = "nas.space_spec"
#: module -> the folder it was imported from, for a space whose ops come from ``imports:``
OP_MODULES_ATTR = "nas.op_modules"
#: module -> sha256 of its file when the study began (its ops' code, which the space hash omits)
OP_CODE_ATTR = "nas.op_module_sha256"
#: trial user attribute: a unique id, to tell our own trials from other workers' when mirroring
UID_ATTR = "nas.uid"
#: statuses of trials whose metrics were measured (and may be reused for the same architecture)
EVALUATED = ("trained", "evaluated")
OBJECTIVES_ATTR = "nas.objectives"
#: study user attribute: how the search's data was standardized (input shape, channel mean and
#: std of the training split), so that models exported from the study preprocess like it did
PREPROCESS_ATTR = "nas.preprocess"
#: how the search's data was split (``SplitData.split_recipe``): what its weights saw
SPLIT_ATTR = "nas.data_split"
#: prefix of the study user attributes that record each worker's sampler seeds, by trial
SEEDS_PREFIX = "nas.seeds."
#: the arch_id of a trial's effective form (``SearchSpace.effective``): trials that share it
#: build the same model, so one training serves them all
EFFECTIVE_ATTR = "effective_id"
#: study user attribute: the experiment's settings when the study was created
EXPERIMENT_ATTR = "nas.experiment"
COSTS_ATTR = "nas.cost_models"  # device -> digest of what its cost model charged (cost_digests)


@dataclass(frozen=True)
class Prepared:
    """Everything a search needs, validated before anything is written to disk."""

    experiment: Experiment
    space: SearchSpace
    evaluator: Evaluator
    #: the space was fitted to the data's input shape and classes: ``space.source`` (``<name>@
    #: <C>x<H>x<W>:<N>``) is then what ``--space`` takes to show or cost its architectures
    adapted: bool = False


def near_chance(num_classes: int) -> float:
    """The validation accuracy at or below which a trained model has learnt next to nothing:
    a tenth of the way from chance (1 / classes) to perfect; 0.19 for 10 classes."""
    chance = 1.0 / max(num_classes, 1)
    return chance + 0.1 * (1.0 - chance)


def storage_url(experiment: Experiment, run_dir: Path) -> str:
    """The experiment's storage URL, SQLite under the run directory by default."""
    if experiment.search.storage:
        return experiment.search.storage
    return default_storage(run_dir)


def adapt_space(space: SearchSpace, data: SplitData) -> SearchSpace:
    """The space with its input shape and class count taken from the data, when they differ."""
    adapted = space.adapted(data.input_shape, data.num_classes)
    if adapted is not space:
        log.info(
            "space %s adapted to data %s: input %s, %d classes, as space %s (--space %s)",
            space.name,
            data.name,
            data.input_shape,
            data.num_classes,
            adapted.name,
            adapted.source,
        )
    return adapted


def prepare(experiment: Experiment) -> Prepared:
    """Load the space, the data and the cost models; raises NasConfigError on any problem."""
    space = original = load_space(experiment.space)
    if space.to_dict().get("imports"):  # ops of the user's own: every layer built before a trial
        try:
            space.possible_layers()
        except NasConfigError as exc:
            raise NasConfigError(f"{space.source}: {exc.reason}") from None
    data = None
    if experiment.needs_training:
        data = load_data(experiment.data)
        space = adapt_space(space, data)
    # a table must cover the space before anything runs
    extra = tuple(Path(d) for d in experiment.table_dirs)
    models = {d: for_space(load_cost_model(d, extra), space) for d in experiment.devices}
    for metric in experiment.metrics:
        table = models.get(metric.device or "")
        if (
            metric.quantity == "energy_mj"
            and isinstance(table, LookupTable)
            and not table.has_energy
        ):
            reason = table.no_energy_error().reason
            raise NasConfigError(f"{metric.name}: {reason}", file=experiment.source)
    _check_reachable(experiment, space, models)
    evaluator = Evaluator(space, models, experiment.train, data)
    return Prepared(experiment, space, evaluator, adapted=space is not original)


def _check_reachable(
    experiment: Experiment, space: SearchSpace, models: dict[str, CostModel]
) -> None:
    """Refuse a cost constraint no architecture of ``space`` can meet (``latency_ms@t <=
    0.0001``) before any trial: the search would try every trial and train nothing."""
    from nas.cost import VectorizedCost
    from nas.space import LayerSlots

    compiled: dict[str, VectorizedCost] = {}  # one per device, however many constraints
    counted: dict[str, tuple[float, float]] = {}  # params and macs: sums over the layers

    def bounds(metric: Metric) -> tuple[float, float] | None:
        if metric.device is None and metric.name in ("params", "macs"):
            if metric.name not in counted:
                slots = LayerSlots(space)
                for name in ("params", "macs"):
                    values = slots.tabulate(lambda x, n=name: float(getattr(x, n)))
                    counted[name] = values.sum_bounds()
            return counted[metric.name]
        device = metric.device or ""
        if device not in models or metric.quantity not in ("latency_ms", "energy_mj"):
            return None
        if device not in compiled:
            compiled[device] = VectorizedCost(space, models[device])
        return compiled[device].bounds(metric.quantity)

    for c in experiment.constraints:
        if (reach := bounds(c.metric)) is None:
            continue
        best = reach[0] if c.op in ("<=", "<") else reach[1]
        if not c.satisfied(best):
            side = "lowest" if c.op in ("<=", "<") else "highest"
            where = experiment.locate(f"constraints.{c.metric.name}")
            raise NasConfigError(
                f"{where}: constraints.{c.metric.name}: no architecture of space "
                f"'{space.name}' meets '{c.op} {c.bound:g}': the {side} it can reach is "
                f"{best:.4g} at best; loosen the bound"
            )
    select = experiment.select
    if select is None:
        return
    for name, bound in select.budgets:
        reach = bounds(parse_metric(name))
        if reach is not None and reach[0] > bound:  # a budget is ``metric <= bound``
            raise select.error(
                f"budgets.{name}",
                f"no architecture of space '{space.name}' costs {name} <= {bound:g}: the "
                f"lowest it can reach is {reach[0]:.4g}; raise the budget",
            )


def make_storage(url: str) -> str | optuna.storages.BaseStorage:
    """Optuna storage for ``url``; SQLite files get write-ahead logging.

    With ``journal_mode=WAL`` and ``synchronous=NORMAL`` a commit no longer waits for an fsync,
    which makes the dozen small writes of each trial ~10x cheaper; a crash of the process still
    loses nothing that was committed (only a power cut can lose the last transactions).
    """
    if not url.startswith("sqlite:///"):
        return url
    from sqlalchemy import event
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}}
            )
            break
        except (OperationalError, IntegrityError) as exc:
            # workers starting at once race to create a new file's tables and its schema
            # version row: the loser retries, and then finds them made
            raced = "already exists" in str(exc) or "UNIQUE constraint failed" in str(exc)
            if not raced or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # reconnect through the listener
    return storage


@contextlib.contextmanager
def opening_storage(url: str) -> Iterator[None]:
    """Turn a storage that cannot be opened (no database driver, no such server or file) into
    a one-line :class:`NasConfigError` naming the URL."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except ImportError as exc:
        raise NasConfigError(
            f"storage {url}: its database driver is not installed ({exc}); install it (for "
            "postgresql://: pip install psycopg2-binary) or use sqlite:///PATH"
        ) from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise NasConfigError(f"storage {url}: cannot open it ({reason})") from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL; None for other storages and in-memory
    SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def cost_digests(space: SearchSpace, models: dict[str, CostModel]) -> dict[str, str]:
    """Per device, a digest of what its cost model charges ``space``'s layers: a study's
    predicted costs are comparable only while these stay the same."""
    out = {}
    for device, model in sorted(models.items()):
        if isinstance(model, LookupTable):
            keys = {
                (layer.signature, model.dtype, model.batch) for layer in space.possible_layers()
            }
            rows = [
                (e.signature, e.dtype, e.batch, e.latency_ms_p50, e.energy_mj)
                for key, e in sorted(model.entries.items())
                if key in keys
            ]
            extra = ("model_overhead_ms", "model_overhead_mj", "unread_layers")
            content: Any = {
                "entries": rows,
                "in_model": (model.meta.get("in_model") or {}).get(space.name),
                **{k: model.meta.get(k) for k in extra},
            }
        else:
            content = model.to_dict() if hasattr(model, "to_dict") else repr(model)
        text = json.dumps(content, sort_keys=True, default=str)
        out[device] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _check_same_costs(
    experiment: Experiment, recorded: dict[str, str], now: dict[str, str], storage: str
) -> None:
    for device, digest in now.items():
        if recorded.get(device, digest) != digest:
            raise NasConfigError(
                f"study '{experiment.study_name}' in {storage} was searched with another "
                f"version of the cost model of device '{device}' (its table or profile has "
                "changed since): trials priced both ways would share one front; restore it, or "
                "choose another search.study_name (or --out) for a new search"
            )


def check_study(
    experiment: Experiment,
    space: SearchSpace,
    run_dir: Path,
    costs: dict[str, str] | None = None,
) -> None:
    """Before a run writes anything: its storage opens, and the study already in it (if any)
    holds trials this experiment may add to (``costs``: :func:`cost_digests` of its cost
    models); raises :class:`NasConfigError` otherwise."""
    storage = storage_url(experiment, run_dir)
    path = sqlite_file(storage)
    if path is not None:
        if experiment.search.storage and not path.parent.is_dir():
            raise NasConfigError(
                f"search.storage {storage}: the folder {path.parent} does not exist; create it "
                "or name a file in an existing folder"
            )
        if not path.is_file():
            return  # a new study
    with opening_storage(storage):
        try:
            study = optuna.load_study(study_name=experiment.study_name, storage=storage)
        except KeyError:
            return
    _check_attrs(study.user_attrs, experiment, space, storage, costs or {})


def study_space(study: optuna.Study) -> SearchSpace:
    """The space a study searched, its ops' modules imported from where the study found them
    (so that ``nas pareto``/``nas export`` work from any folder)."""
    attrs = study.user_attrs
    where = f"study {study.study_name}"
    recorded = attrs.get(OP_MODULES_ATTR) or {}
    import_op_modules(attrs[SPACE_ATTR], recorded, [], where=where, put="")
    return space_from_dict(attrs[SPACE_ATTR], source=where)


def open_study(
    experiment: Experiment,
    space: SearchSpace,
    storage: str,
    costs: dict[str, str] | None = None,
    run_dir: Path | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists and matches this experiment. The process
    that creates it records ``run_dir`` as the study's run folder (``nas.run_dir``)."""
    names = [m.name for m in experiment.objectives]
    directions: list[Any] = [m.direction for m in experiment.objectives]
    with opening_storage(storage):
        store = make_storage(storage)
        try:  # not load_if_exists: of workers starting together, exactly one creates it
            study = optuna.create_study(
                study_name=experiment.study_name, storage=store, directions=directions
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=experiment.study_name, storage=store)
            created = False
    if created and run_dir is not None:  # the first worker's folder holds the study's files
        study.set_user_attr("nas.run_dir", str(run_dir.resolve()))
    attrs = study.user_attrs
    modules = op_module_folders(space)
    if modules and attrs.get(OP_MODULES_ATTR) != modules:  # read from any folder later
        study.set_user_attr(OP_MODULES_ATTR, modules)
    changed = changed_op_modules(attrs.get(OP_CODE_ATTR), space)
    if changed:  # kept as it was: every later run is told too
        log.warning(
            "study '%s' was searched with another %s than this one (its file changed since): "
            "its earlier trials were built by the old code; if the ops now build other modules, "
            "start a new search (another --out), or put the module back as it was",
            experiment.study_name,
            " and ".join(changed),
        )
    elif modules and OP_CODE_ATTR not in attrs:
        study.set_user_attr(OP_CODE_ATTR, op_module_digests(space))
    if OBJECTIVES_ATTR in attrs:
        _check_attrs(attrs, experiment, space, storage, costs or {})
        had = [d.name.lower() for d in study.directions]
        if had != directions:
            raise NasConfigError(
                f"study '{experiment.study_name}' in {storage} was created to {had} its "
                f"objectives {names}, not to {directions}; for a new search pass another --out "
                "(or choose another search.study_name)"
            )
        if costs and COSTS_ATTR not in attrs:
            study.set_user_attr(COSTS_ATTR, costs)
    else:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in practice
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
        study.set_user_attr(OBJECTIVES_ATTR, names)
        study.set_user_attr(SPACE_ATTR, space.to_dict())
        study.set_user_attr(EXPERIMENT_ATTR, experiment.to_dict())
        if costs:
            study.set_user_attr(COSTS_ATTR, costs)
    return study


def _check_attrs(
    attrs: dict[str, Any],
    experiment: Experiment,
    space: SearchSpace,
    storage: str,
    costs: dict[str, str],
) -> None:
    """Refuse a study searched with other objectives, another space or other trial settings."""
    names = [m.name for m in experiment.objectives]
    if OBJECTIVES_ATTR not in attrs:
        return  # created by a run stopped before it recorded anything
    if attrs[OBJECTIVES_ATTR] != names:
        raise NasConfigError(
            f"study '{experiment.study_name}' in {storage} was created with objectives "
            f"{attrs[OBJECTIVES_ATTR]}, not {names}; for a new search pass another --out "
            "(or choose another search.study_name)"
        )
    old = attrs.get(SPACE_ATTR, {})
    now = space.to_dict()
    if old.get("name") != now.get("name"):  # another space, not another version of it
        raise NasConfigError(
            f"study '{experiment.study_name}' in {storage} searched space '{old.get('name')}', "
            f"not '{now.get('name')}'; set space back to continue it, or for a new search pass "
            "another --out (or choose another search.study_name)"
        )
    if old != now:
        differ = _differences(old, now)
        shown = "; ".join(differ[:3]) + (
            f"; and {len(differ) - 3} more" if len(differ) > 3 else ""
        )
        raise NasConfigError(
            f"study '{experiment.study_name}' in {storage} searched a different version of "
            f"space '{old.get('name')}' ({shown}); put the space file back to continue, or for "
            "a new search pass another --out (or choose another search.study_name)"
        )
    _check_same_trials(experiment, attrs.get(EXPERIMENT_ATTR) or {}, storage)
    _check_same_costs(experiment, attrs.get(COSTS_ATTR) or {}, costs, storage)


def _differences(old: Any, now: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ, as ``key.sub[i]: was X, now Y`` (deepest keys)."""
    if isinstance(old, dict) and isinstance(now, dict):
        return [
            line
            for k in sorted({*old, *now}, key=str)
            if old.get(k) != now.get(k)
            for line in _differences(old.get(k), now.get(k), f"{path}.{k}" if path else str(k))
        ]
    if isinstance(old, list) and isinstance(now, list) and len(old) == len(now):
        return [
            line
            for i, (a, b) in enumerate(zip(old, now, strict=True))
            if a != b
            for line in _differences(a, b, f"{path}[{i}]")
        ]

    def short(value: Any) -> str:
        text = json.dumps(value) if value is not None else "absent"
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{path}: was {short(old)}, now {short(now)}"]


#: settings that change what a trial measures: a study's trials all share them. The others
#: (sampler, n_trials, seed, the stage after the search, thread counts) may change on a rerun.
_TRIAL_SETTINGS = ("data", "train", "constraints")
_FREE_TO_CHANGE = {("train", "threads")}
#: data locations are recorded resolved; a project moved elsewhere (or to another machine)
#: still continues its study when the file or folder keeps its name
_LOCATIONS = {("data", "root"), ("data", "path")}


def _setting(section: str, key: str | None, value: Any) -> Any:
    if (section, key) in _LOCATIONS and isinstance(value, str):
        return Path(value).name
    return value


def _check_same_trials(experiment: Experiment, recorded: dict[str, Any], storage: str) -> None:
    """Refuse to add trials measured another way (other data split, training budget or
    constraints) to a study: its front would compare them as if they were alike."""
    now = experiment.to_dict()
    for section in _TRIAL_SETTINGS:
        if section not in recorded:
            continue  # a study from before the setting was recorded
        if section in ("data", "train") and not experiment.needs_training:
            continue  # a cost-only study trains nothing: its trials do not depend on them
        before, after = recorded[section], now[section]
        keys = sorted(set(before) | set(after)) if section != "constraints" else [None]
        for key in keys:
            if (section, key) in _FREE_TO_CHANGE:
                continue
            old = before if key is None else before.get(key)
            new = after if key is None else after.get(key)
            if _setting(section, key, old) != _setting(section, key, new):
                name = section if key is None else f"{section}.{key}"
                raise NasConfigError(
                    f"study '{experiment.study_name}' in {storage} was searched with {name} "
                    f"{old!r}, not {new!r}: trials measured both ways would share one front; "
                    f"set {name} back to continue it, or choose another search.study_name "
                    "(or --out) for a new search"
                )


def default_storage(run_dir: Path) -> str:
    """A run folder's SQLite file (``study.db``): the storage when the experiment names none."""
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"
