"""The search loop: an Optuna study over a space, with free metrics before any training."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from nas._errors import NasConfigError
from nas._io import atomic_path
from nas.cost import CostModel, LookupTable, for_space, load_cost_model
from nas.search._costaware import make_default_sampler, offset_seed
from nas.search._evaluate import WORST, Evaluator, trained_metrics, violations
from nas.search._experiment import Constraint, Experiment, Metric, parse_metric
from nas.search._samplers import make_sampler
from nas.search._workers import TRIAL_RUN_DIR, Claims, weights_home, worker_key, worker_seed
from nas.space import Architecture, SearchSpace, load_space
from nas.train import SplitData, load_data

__all__ = ["SearchOutcome", "open_study", "prepare", "run_search", "storage_url"]

log = logging.getLogger(__name__)

#: study user attributes written once when a study is created
SPACE_ATTR = "nas.space_spec"
#: trial user attribute: a unique id, to tell our own trials from other workers' when mirroring
UID_ATTR = "nas.uid"
#: statuses of trials whose metrics were measured (and may be reused for the same architecture)
EVALUATED = ("trained", "evaluated")
OBJECTIVES_ATTR = "nas.objectives"
#: study user attribute: how the search's data was standardized (input shape, channel mean and
#: std of the training split), so that models exported from the study preprocess like it did
PREPROCESS_ATTR = "nas.preprocess"
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


@dataclass(frozen=True)
class SearchOutcome:
    """What one call of :func:`run_search` did."""

    study_name: str
    storage: str
    n_trials: int
    n_new: int
    n_trained: int
    n_evaluated: int
    n_reused: int
    n_infeasible: int
    n_failed: int
    seconds: float
    sampler: str = ""  # the Optuna sampler class the run used ('auto' resolves to one)
    n_near_chance: int = 0  # of n_trained: validation accuracy at most near_chance(classes)
    near_chance: float = 0.0  # that accuracy


def near_chance(num_classes: int) -> float:
    """The validation accuracy at or below which a trained model has learnt next to nothing:
    a tenth of the way from chance (1 / classes) to perfect; 0.19 for 10 classes."""
    chance = 1.0 / max(num_classes, 1)
    return chance + 0.1 * (1.0 - chance)


def storage_url(experiment: Experiment, run_dir: Path) -> str:
    """The experiment's storage URL, SQLite under the run directory by default."""
    if experiment.search.storage:
        return experiment.search.storage
    return _default_storage(run_dir)


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
    space = load_space(experiment.space)
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
    return Prepared(experiment, space, evaluator)


def _check_reachable(
    experiment: Experiment, space: SearchSpace, models: dict[str, CostModel]
) -> None:
    """Refuse a cost constraint no architecture of ``space`` can meet (``latency_ms@t <=
    0.0001``) before any trial: the search would try every trial and train nothing."""
    from nas.cost import VectorizedCost

    compiled: dict[str, VectorizedCost] = {}  # one per device, however many constraints

    def bounds(metric: Metric) -> tuple[float, float] | None:
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
            raise NasConfigError(
                f"{experiment.source}: constraints.{c.metric.name}: no architecture of space "
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


class _Mirror:
    """The study's finished trials, mirrored into an in-memory study the sampler works on.

    Sampling and evaluation happen on a private in-memory study; each finished trial is then
    written to the real storage with a single ``add_trial`` (one transaction instead of ~30
    small writes of params, user attributes and constraints). Before each trial the mirror pulls
    in trials that other workers added to the storage, so several processes can share one
    study. A trial being evaluated is not in the storage until it finishes; a killed process
    loses only its unfinished trial. With ``claims`` (a search that trains), the architectures
    other workers are training appear in the sampler's study as running trials, so that a
    sampler that looks at running trials (the default one) proposes others.
    """

    def __init__(
        self,
        study: optuna.Study,
        sampler: optuna.samplers.BaseSampler,
        space: SearchSpace,
        claims: Claims | None = None,
    ) -> None:
        self.study = study
        self.shadow = optuna.create_study(directions=study.directions, sampler=sampler)
        self.claims = claims
        self.seen: set[str] = set()
        # effective form's arch_id -> first trained trial (architectures that build the same
        # model share their trained metrics; trials stored before effective ids: their arch_id)
        self.known: dict[str, optuna.trial.FrozenTrial] = {}
        self.finished = 0
        self._distributions = {
            k: optuna.distributions.CategoricalDistribution(list(v))
            for k, v in space.parameters().items()
        }
        self._ghosts: dict[str, int] = {}  # effective id -> its running trial in the shadow

    @staticmethod
    def _uid(t: optuna.trial.FrozenTrial) -> str:
        return str(t.user_attrs.get(UID_ATTR) or f"trial-{t.number}")

    @property
    def running(self) -> int:
        """Trials other workers are training (they will count towards ``n_trials``)."""
        return len(self.claims.others) if self.claims is not None else 0

    def sync(self) -> None:
        """Pull finished trials of the storage, and other workers' claims, into the sampler's
        study."""
        self.pull()
        if self.claims is None:
            return
        self.claims.read(self.study.user_attrs, self.known)
        others = self.claims.others
        for effective_id in [e for e in self._ghosts if e not in others]:
            self.shadow.tell(self._ghosts.pop(effective_id), state=TrialState.FAIL)
        for effective_id, claim in others.items():
            if effective_id in self._ghosts:
                continue
            params = {k: v for k, v in claim.params.items() if k in self._distributions}
            dists = {k: self._distributions[k] for k in params}
            try:
                ghost = optuna.trial.create_trial(
                    state=TrialState.RUNNING, params=params, distributions=dists
                )
            except ValueError:
                continue  # a claim from another version of the space: nothing to mirror
            self.shadow.add_trial(ghost)
            self._ghosts[effective_id] = self.shadow.get_trials(deepcopy=False)[-1].number

    def pull(self) -> None:
        """Pull finished trials of the storage into the sampler's study (not the claims)."""
        finished = self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)
        )
        for t in finished:
            if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in EVALUATED:
                attrs = t.user_attrs
                self.known.setdefault(attrs.get(EFFECTIVE_ATTR, attrs.get("arch_id", "")), t)
            uid = self._uid(t)
            if uid not in self.seen:
                self.seen.add(uid)
                self.shadow.add_trial(t)
        self.finished = len(finished)

    def publish(self, frozen: optuna.trial.FrozenTrial) -> None:
        """Write a trial finished on the shadow study to the storage (one transaction)."""
        self.seen.add(self._uid(frozen))
        self.study.add_trial(frozen)


def _sampler(
    exp: Experiment, space: SearchSpace, evaluator: Evaluator, *, seed: int, resumed_after: int
) -> optuna.samplers.BaseSampler:
    """The experiment's sampler; ``auto`` and ``cost-aware`` get the free metrics to screen with.

    ``auto`` (the default) is :class:`CostAwareSampler` when some objectives need training and
    some are free (they are computed for thousands of candidates, and only those predicted to
    improve the front are trained), multivariate TPE otherwise.
    """
    name = exp.search.sampler
    if name not in ("auto", "cost-aware"):
        return make_sampler(
            name,
            seed=offset_seed(seed, resumed_after),
            n_trials=exp.search.n_trials,
            population_size=exp.search.population_size,
        )
    expensive = [i for i, m in enumerate(exp.objectives) if m.needs_training]
    free_names = [m.name for m in exp.objectives if not m.needs_training]
    free_constraints = [c for c in exp.constraints if not c.metric.needs_training]

    # a pool of thousands of candidates is priced per call: tabulated per layer slot
    def free_costs(archs: Sequence[Architecture]) -> np.ndarray:
        return evaluator.free_metrics_many(archs, free_names)

    def feasible(archs: Sequence[Architecture]) -> np.ndarray:
        values = evaluator.free_metrics_many(archs, [c.metric.name for c in free_constraints])
        ok = [all(map(Constraint.satisfied, free_constraints, row)) for row in values]
        return np.array(ok, dtype=bool)

    return make_default_sampler(
        space,
        free_costs,
        directions=[m.direction for m in exp.objectives],
        expensive=expensive,
        seed=seed,
        feasible=feasible if free_constraints else None,
        resumed_after=resumed_after,
    )


def _default_storage(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def _reusable_weights(
    space: SearchSpace,
    arch: Architecture,
    prev: optuna.trial.FrozenTrial,
    study_attrs: dict[str, Any],
    run_dir: Path,
) -> Path | None:
    """The run folder holding ``prev``'s weights file when it loads into ``arch`` (else None):
    an architecture that computes the same function as a trained one (an unread edge changed)
    usually has the same parameters, and then shares its weights."""
    home = weights_home(prev, study_attrs, run_dir)
    if home is None:
        return None
    from safetensors import safe_open

    with safe_open(str(home / prev.user_attrs["weights"]), framework="pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    ours = {k: tuple(v.shape) for k, v in space.build(arch, seed=0).state_dict().items()}
    return home.resolve() if saved == ours else None


def _store(
    mirror: _Mirror,
    trial: optuna.Trial,
    attrs: dict[str, Any],
    metrics: dict[str, Any],
    cons: dict[str, float],
    constraints: Sequence[Any],
    values: list[float] | None,
) -> None:
    """Finish ``trial`` on the sampler's study with its attributes and metrics and its
    objective ``values`` (None: failed), and write it to the storage."""
    for key, value in {**attrs, **metrics}.items():
        trial.set_user_attr(key, value)
    if values is None:
        mirror.publish(mirror.shadow.tell(trial, state=TrialState.FAIL))
        return
    cons.update({k: v for k, v in violations(constraints, metrics).items() if k not in cons})
    for c in constraints:  # every trial carries every constraint (0 = unknown)
        trial.set_constraint(str(c), cons.get(str(c), 0.0))
    mirror.publish(mirror.shadow.tell(trial, values))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it: storing a finished trial (its
    weights, then its row in the study) is not cut in half. Off the main thread, or in a process
    that ignores Ctrl-C, a no-op."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # started ignoring it (nohup, &)
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def run_search(
    prepared: Prepared,
    run_dir: Path,
    *,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    save_weights: bool = True,
    poll_s: float = 1.0,
) -> SearchOutcome:
    """Run (or continue) the study until it holds ``n_trials`` finished trials.

    Each trial: sample an architecture, compute its free metrics, and stop there if a free
    constraint is violated (the candidate is never trained; its trained objectives get the worst
    value and the trial carries its constraint violations). An architecture the study already
    evaluated is not trained again: its metrics are copied. Otherwise it is built, trained and
    evaluated; a diverged training is recorded as a failed trial and the search goes on.

    Other processes may search the same study at once (parallel workers, each with its own
    ``run_dir``, see ``nas.search._workers``): a worker that did not create the study samples
    with its own seed, an architecture another worker is training is left to it, and the
    search ends when the finished trials and those the others are running make ``n_trials``
    (waiting, every ``poll_s`` seconds, for the others' to be stored).

    ``progress(event, info)`` is called with ``"start"`` (trials already finished, total,
    whether this worker joined another's study), ``"proposing"`` before the first proposal (a
    cost-aware sampler prices its candidate pool then, seconds on a large space), then
    ``"trial"`` after each trial and ``"epoch"`` during training, for a progress bar, and
    ``"waiting"`` while it waits for another worker.
    """
    from safetensors.torch import save_file

    exp, space, evaluator = prepared.experiment, prepared.space, prepared.evaluator
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = storage_url(exp, run_dir)
    costs = cost_digests(space, evaluator.cost_models)
    study = open_study(exp, space, storage, costs, run_dir=run_dir)
    home = study.user_attrs.get("nas.run_dir")
    ours = str(run_dir.resolve())
    # the study's first worker, or the folder whose own study.db it is (moved or copied whole
    # since), keeps the seed; a worker that joins it gets a stream of its own
    joined = home != ours and storage != _default_storage(run_dir)
    if evaluator.data is not None and PREPROCESS_ATTR not in study.user_attrs:
        study.set_user_attr(PREPROCESS_ATTR, evaluator.data.preprocess)
    seed = exp.search.seed
    if joined and seed is not None:
        seed = worker_seed(seed, worker_key(run_dir))
    # a resumed search: the default sampler redoes the first run's draws and goes on as one
    # run would; Optuna's samplers cannot, and get another seed (not to repeat the first draws)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
    sampler = _sampler(exp, space, evaluator, seed=seed, resumed_after=done)
    claims = Claims(study, run_dir) if exp.needs_training else None
    mirror = _Mirror(study, sampler, space, claims)
    objectives = exp.objectives
    free_constraints = [c for c in exp.constraints if not c.metric.needs_training]
    counts = {"trained": 0, "evaluated": 0, "reused": 0, "infeasible": 0, "failed": 0}
    chance = near_chance(evaluator.space.num_classes)
    n_near_chance = 0
    start = time.perf_counter()
    n_new = 0
    mirror.sync()
    if progress:
        progress(
            "start",
            {"finished": mirror.finished, "total": exp.search.n_trials, "joined": joined},
        )

    def timed_out() -> bool:
        limit = exp.search.timeout_s
        return limit is not None and time.perf_counter() - start > limit

    def wait(reason: str, until: Callable[[], bool]) -> None:
        """Poll the storage until ``until()`` (or ``search.timeout_s``), saying why once."""
        said = False
        while True:
            mirror.sync()
            if until() or timed_out():
                return
            if progress and not said:
                progress("waiting", {"reason": reason})
                said = True
            time.sleep(poll_s)

    rivals = 0  # proposals in a row that another worker was already training
    backoff = random.Random()  # unseeded: two workers that met must part
    try:
        while True:
            mirror.sync()
            if mirror.finished >= exp.search.n_trials:
                break
            if timed_out():
                log.info("search.timeout_s reached after %d new trials", n_new)
                break
            if mirror.finished + mirror.running >= exp.search.n_trials:
                # the others' trials complete the study: wait for them, so that this worker's
                # report (and the stage after the search) holds every trial
                wait(
                    f"for the {mirror.running} trial(s) other workers are running",
                    lambda: mirror.finished >= exp.search.n_trials or not mirror.running,
                )
                continue
            if progress and n_new == 0 and not rivals:  # the first proposal can take seconds
                progress("proposing", {"trial": len(mirror.shadow.trials)})
            trial = mirror.shadow.ask()
            weights: dict[str, Any] = {}
            arch = space.sample(trial)
            metrics = evaluator.free_metrics(arch)
            effective_id = space.effective(arch).arch_id
            attrs: dict[str, Any] = {
                "arch_id": arch.arch_id,
                EFFECTIVE_ATTR: effective_id,
                "arch": space.format(arch),
                "architecture": arch.to_dict(),
                UID_ATTR: uuid.uuid4().hex,
            }
            if joined:  # its weights are in this worker's folder, not the study's
                attrs[TRIAL_RUN_DIR] = ours
            cons = violations(free_constraints, metrics)
            state = TrialState.COMPLETE
            infeasible = any(v > 0 for v in cons.values())
            if claims is not None and not infeasible and effective_id not in mirror.known:
                # claim it, then look again: a worker stores its trial before it clears its
                # claim, so one stored while this worker proposed is seen now, and one in
                # progress is the rival's
                rival = claims.claim(effective_id, trial.params)  # it read the claims again
                mirror.pull()
                if effective_id in mirror.known:
                    claims.clear()  # stored meanwhile: reused below
                elif rival is not None:
                    # another worker trains it: not stored here; the sampler, seeing it as
                    # running now, proposes another (after a few tries, wait for its result)
                    mirror.shadow.tell(trial, state=TrialState.FAIL)
                    time.sleep(backoff.uniform(0, poll_s / 4))  # not to meet the rival again
                    rivals += 1
                    if rivals >= 3:
                        rivals = 0
                        wait(
                            f"for {space.format(arch)}, which another worker is training",
                            lambda e=effective_id, c=claims: (
                                e in mirror.known or e not in c.others
                            ),
                        )
                    continue
                else:
                    rivals = 0
            if infeasible:
                status = "infeasible"
                metrics.update(WORST)
            elif effective_id in mirror.known:
                status = "reused"
                prev = mirror.known[effective_id]
                metrics.update({m: prev.user_attrs[m] for m in WORST if m in prev.user_attrs})
                attrs["duplicate_of"] = prev.number
                attrs.pop(TRIAL_RUN_DIR, None)
                found = _reusable_weights(space, arch, prev, study.user_attrs, run_dir)
                if found is not None:  # the same network, trained once
                    attrs["weights"] = prev.user_attrs["weights"]
                    if str(found) != home:
                        attrs[TRIAL_RUN_DIR] = str(found)
            elif not exp.needs_training:
                status = "evaluated"  # nothing to train: every metric is free
            else:
                assert claims is not None  # a search that trains claims what it trains

                def on_epoch(epoch: int, epochs: int, loss: float, _n: int = trial.number) -> None:
                    claims.beat()
                    if progress:
                        progress(
                            "epoch", {"trial": _n, "epoch": epoch, "epochs": epochs, "loss": loss}
                        )

                model, result = evaluator.train(arch, progress=on_epoch)
                attrs["train"] = {
                    k: v for k, v in result.to_dict().items() if isinstance(v, (int, float, bool))
                }
                if result.diverged or not math.isfinite(result.val_accuracy):
                    status = "diverged"
                    state = TrialState.FAIL
                else:
                    status = "trained"
                    metrics.update(trained_metrics(result))
                    n_near_chance += result.val_accuracy <= chance
                    if save_weights:
                        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
            attrs["status"] = status
            with interrupts_deferred():  # a trial is stored whole: its weights, then its row
                if weights:
                    path = run_dir / "weights" / f"{arch.arch_id}.safetensors"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(path, suffix=".safetensors") as tmp:
                        save_file(weights, str(tmp), metadata={"arch_id": arch.arch_id})
                    attrs["weights"] = str(path.relative_to(run_dir))
                values = (
                    [metrics[m.name] for m in objectives] if state == TrialState.COMPLETE else None
                )
                _store(mirror, trial, attrs, metrics, cons, exp.constraints, values)
                if claims is not None:
                    claims.clear()
            counts["failed" if status == "diverged" else status] += 1
            n_new += 1
            if progress:
                progress(
                    "trial",
                    {
                        "trial": trial.number,
                        "status": status,
                        "arch": attrs["arch"],
                        # an untrained trial's placeholder (WORST) is no measurement: not shown
                        **{
                            m.name: None
                            if status == "infeasible" and m.name in WORST
                            else metrics.get(m.name)
                            for m in objectives
                        },
                    },
                )
    finally:
        if claims is not None and claims.mine is not None:
            with contextlib.suppress(Exception):  # the storage may be what failed
                claims.clear()
    return SearchOutcome(
        study_name=exp.study_name,
        storage=storage,
        n_trials=mirror.finished,
        n_new=n_new,
        n_trained=counts["trained"],
        n_evaluated=counts["evaluated"],
        n_reused=counts["reused"],
        n_infeasible=counts["infeasible"],
        n_failed=counts["failed"],
        seconds=time.perf_counter() - start,
        sampler=type(sampler).__name__,
        n_near_chance=n_near_chance,
        near_chance=chance,
    )
