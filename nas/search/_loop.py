"""One worker's search: propose an architecture, claim it, evaluate it, store the trial, until
the study holds ``n_trials`` finished trials (:func:`run_search`).

The sampler works on a private in-memory study that mirrors the storage (:class:`_Mirror`); a
finished trial reaches the storage in one transaction. Other processes may search the same
study at once (parallel workers, ``nas.search._workers``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from nas._io import atomic_path
from nas.search._costaware import make_default_sampler, offset_seed
from nas.search._evaluate import WORST, Evaluator, trained_metrics, violations
from nas.search._experiment import Constraint, Experiment
from nas.search._samplers import make_sampler
from nas.search._study import (
    EFFECTIVE_ATTR,
    EVALUATED,
    PREPROCESS_ATTR,
    SEEDS_PREFIX,
    SPLIT_ATTR,
    UID_ATTR,
    Prepared,
    cost_digests,
    default_storage,
    near_chance,
    open_study,
    storage_url,
)
from nas.search._workers import TRIAL_RUN_DIR, Claims, weights_home, worker_key, worker_seed
from nas.space import Architecture, SearchSpace

__all__ = ["SearchOutcome", "interrupts_deferred", "run_search"]

log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]


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
    #: ``--space`` for the space the search ran, where it was fitted to the data (``<name>@<C>x
    #: <H>x<W>:<N>``: architecture ids and costs differ from the experiment's space); else ""
    adapted_space: str = ""
    #: the sampler seeds the study was searched with: ``{seed, from_trial, run_dir}``, by the
    #: number of stored trials each began at (a rerun with another ``search.seed``, a worker
    #: that joined with a seed of its own)
    seeds: tuple[dict[str, Any], ...] = ()


def run_search(
    prepared: Prepared,
    run_dir: str | Path,
    *,
    progress: Progress | None = None,
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
    return _Worker(
        prepared, Path(run_dir), progress, save_weights=save_weights, poll_s=poll_s
    ).run()


@dataclass
class _Proposal:
    """A trial the sampler proposed, and what its evaluation has found so far."""

    trial: optuna.Trial
    arch: Architecture
    effective_id: str  # the arch_id of its effective form: trials that share it share training
    attrs: dict[str, Any]  # the trial's user attributes
    metrics: dict[str, Any]
    violations: dict[str, float]  # of the free constraints, known before training

    @property
    def infeasible(self) -> bool:
        return any(v > 0 for v in self.violations.values())


class _Worker:
    """This process's part of a study: :func:`run_search`'s loop and what it keeps between
    trials (the study and its mirror, this worker's claim, the counts it reports)."""

    def __init__(
        self,
        prepared: Prepared,
        run_dir: Path,
        progress: Progress | None,
        *,
        save_weights: bool,
        poll_s: float,
    ) -> None:
        exp = self.exp = prepared.experiment
        self.space, self.evaluator = prepared.space, prepared.evaluator
        self.adapted = prepared.adapted
        self.run_dir, self.progress = run_dir, progress
        self.save_weights, self.poll_s = save_weights, poll_s
        run_dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage_url(exp, run_dir)
        costs = cost_digests(self.space, self.evaluator.cost_models)
        study = self.study = open_study(exp, self.space, self.storage, costs, run_dir=run_dir)
        self.home = study.user_attrs.get("nas.run_dir")
        self.ours = str(run_dir.resolve())
        # the study's first worker, or the folder whose own study.db it is (moved or copied whole
        # since), keeps the seed; a worker that joins it gets a stream of its own
        self.joined = self.home != self.ours and self.storage != default_storage(run_dir)
        data = self.evaluator.data
        if data is not None and PREPROCESS_ATTR not in study.user_attrs:
            study.set_user_attr(PREPROCESS_ATTR, data.preprocess)
        if data is not None and data.split_recipe and SPLIT_ATTR not in study.user_attrs:
            study.set_user_attr(SPLIT_ATTR, data.split_recipe)
        seed = exp.search.seed
        if self.joined and seed is not None:
            seed = worker_seed(seed, worker_key(run_dir))
        self.seed = seed
        # a resumed search: the default sampler redoes the first run's draws and goes on as one
        # run would; Optuna's samplers cannot, and get another seed (not to repeat the first draws)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
        self.sampler = _sampler(exp, self.space, self.evaluator, seed=seed, resumed_after=done)
        # claims: a search that trains claims what it trains; once several workers share the
        # study, every trial is claimed (one that trains nothing too), so that it ends at
        # n_trials exactly. A worker that joins says so at once: the one that created the
        # study then claims its trials too, though a cost-only search never trains
        self.claims = Claims(study, run_dir)
        self.mirror = _Mirror(study, self.sampler, self.space, self.claims)
        self.free_constraints = [c for c in exp.constraints if not c.metric.needs_training]
        self.counts: Counter[str] = Counter()
        self.chance = near_chance(self.evaluator.space.num_classes)
        self.n_near_chance = 0
        self.n_new = 0
        self.rivals = 0  # proposals in a row that another worker was already training
        self.backoff = random.Random()  # unseeded: two workers that met must part
        self.start = 0.0  # when run() begins: search.timeout_s counts from there

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> SearchOutcome:
        self.start = time.perf_counter()
        if self.joined:
            self.claims.announce()
        self.mirror.sync()
        seeds = self._record_seed()
        self._say(
            "start",
            finished=self.mirror.finished,
            total=self.exp.search.n_trials,
            joined=self.joined,
        )
        try:
            while self._step():
                pass
        finally:
            if self.claims.mine is not None:
                with contextlib.suppress(Exception):  # the storage may be what failed
                    self.claims.clear()
        counts = self.counts
        return SearchOutcome(
            study_name=self.exp.study_name,
            storage=self.storage,
            n_trials=self.mirror.finished,
            n_new=self.n_new,
            n_trained=counts["trained"],
            n_evaluated=counts["evaluated"],
            n_reused=counts["reused"],
            n_infeasible=counts["infeasible"],
            n_failed=counts["failed"],
            seconds=time.perf_counter() - self.start,
            sampler=type(self.sampler).__name__,
            n_near_chance=self.n_near_chance,
            near_chance=self.chance,
            adapted_space=self.space.source if self.adapted else "",
            seeds=seeds,
        )

    def _record_seed(self) -> tuple[dict[str, Any], ...]:
        """Record this run's sampler seed in the study when this worker's folder has not
        searched it with that seed yet (a study continued with another ``search.seed`` holds
        trials of both); every seed recorded, by the trial count it began at."""
        key = SEEDS_PREFIX + worker_key(self.run_dir)  # one per worker: no write races
        attrs = self.study.user_attrs
        mine = list(attrs.get(key) or [])
        full = self.mirror.finished >= self.exp.search.n_trials  # it draws nothing this run
        if not full and (not mine or mine[-1].get("seed") != self.seed):
            mine.append(
                {"seed": self.seed, "from_trial": self.mirror.finished, "run_dir": self.ours}
            )
            self.study.set_user_attr(key, mine)
        every = [
            s for k, v in {**attrs, key: mine}.items() if k.startswith(SEEDS_PREFIX) for s in v
        ]
        return tuple(sorted(every, key=lambda s: s["from_trial"]))

    def _step(self) -> bool:
        """One trial, or one wait for other workers; False when the search is over."""
        mirror, n_trials = self.mirror, self.exp.search.n_trials
        mirror.sync()
        if mirror.finished >= n_trials:
            return False
        if self._timed_out():
            log.info("search.timeout_s reached after %d new trials", self.n_new)
            return False
        if mirror.finished + mirror.running >= n_trials:
            # the others' trials complete the study: wait for them, so that this worker's
            # report (and the stage after the search) holds every trial
            self._wait(
                f"for the {mirror.running} trial(s) other workers are running",
                lambda: mirror.finished >= n_trials or not mirror.running,
            )
            return True
        if self.n_new == 0 and not self.rivals:  # the first proposal can take seconds
            self._say("proposing", trial=len(mirror.shadow.trials))
        proposal = self._propose()
        if self._left(proposal):
            return True
        status, state, weights = self._evaluate(proposal)
        self._keep(proposal, status, state, weights)
        return True

    def _propose(self) -> _Proposal:
        """The sampler's next architecture, with its free metrics."""
        trial = self.mirror.shadow.ask()
        arch = self.space.sample(trial)
        metrics = self.evaluator.free_metrics(arch)
        effective_id = self.space.effective(arch).arch_id
        attrs: dict[str, Any] = {
            "arch_id": arch.arch_id,
            EFFECTIVE_ATTR: effective_id,
            "arch": self.space.format(arch),
            "architecture": arch.to_dict(),
            UID_ATTR: uuid.uuid4().hex,
        }
        if self.joined:  # its weights are in this worker's folder, not the study's
            attrs[TRIAL_RUN_DIR] = self.ours
        found = violations(self.free_constraints, metrics)
        return _Proposal(trial, arch, effective_id, attrs, metrics, found)

    def _left(self, p: _Proposal) -> bool:
        """Claim ``p`` before evaluating it; True when it is left (dropped, not stored): another
        worker is training its architecture (the sampler, which now sees it running, proposes
        another; after 3 such proposals in a row this worker waits for that result), or the
        others' trials in progress complete the study.

        A trial that trains nothing (a stored result reused, a constraint broken) is claimed
        only once another worker has claimed in the study: alone, nothing can take its place."""
        claims, mirror, n_trials = self.claims, self.mirror, self.exp.search.n_trials
        trains = (
            self.exp.needs_training and not p.infeasible and p.effective_id not in mirror.known
        )
        if not (trains or claims.crowded):
            return False
        # claim it, then look again: a worker stores its trial before it clears its claim, so
        # one stored while this worker proposed is seen now, and one in progress is the rival's
        uid = p.attrs[UID_ATTR]
        rival = claims.claim(p.effective_id, p.trial.params, uid, trains=trains)  # re-read
        mirror.pull()
        claims.settle(mirror.known, mirror.seen)
        if p.effective_id in mirror.known:
            rival = None  # stored meanwhile: reused below
        if rival is None and mirror.finished + mirror.running < n_trials:
            if trains:
                self.rivals = 0
            return False
        claims.clear()
        mirror.shadow.tell(p.trial, state=TrialState.FAIL)  # not stored
        time.sleep(self.backoff.uniform(0, self.poll_s / 4))  # not to meet the rival again
        if rival is None:  # the study is full with the others' trials: the loop waits for them
            return True
        self.rivals += 1
        if self.rivals >= 3:
            self.rivals = 0
            self._wait(
                f"for {p.attrs['arch']}, which another worker is training",
                lambda: p.effective_id in mirror.known or p.effective_id not in claims.others,
            )
        return True

    # -- one trial --------------------------------------------------------------------------------

    def _evaluate(self, p: _Proposal) -> tuple[str, TrialState, dict[str, torch.Tensor]]:
        """``p``'s status, trial state and weights to save; its metrics (and what its trial
        records) go into ``p``."""
        if p.infeasible:
            p.metrics.update(WORST)
            return "infeasible", TrialState.COMPLETE, {}
        prev = self.mirror.known.get(p.effective_id)
        if prev is not None:
            self._reuse(p, prev)
            return "reused", TrialState.COMPLETE, {}
        if not self.exp.needs_training:
            return "evaluated", TrialState.COMPLETE, {}  # nothing to train: every metric is free
        return self._train(p)

    def _reuse(self, p: _Proposal, prev: optuna.trial.FrozenTrial) -> None:
        """``p`` builds the model ``prev`` trained: its metrics, and its weights when they load."""
        p.metrics.update({m: prev.user_attrs[m] for m in WORST if m in prev.user_attrs})
        p.attrs["duplicate_of"] = prev.number
        p.attrs.pop(TRIAL_RUN_DIR, None)
        found = _reusable_weights(self.space, p.arch, prev, self.study.user_attrs, self.run_dir)
        if found is not None:  # the same network, trained once
            p.attrs["weights"] = prev.user_attrs["weights"]
            if str(found) != self.home:
                p.attrs[TRIAL_RUN_DIR] = str(found)

    def _train(self, p: _Proposal) -> tuple[str, TrialState, dict[str, torch.Tensor]]:
        claims = self.claims
        # alone, the sampler's study numbers trials as the storage will; beside other workers
        # the number is the storage's, known once the trial is stored
        number = None if claims.crowded else p.trial.number

        def on_epoch(epoch: int, epochs: int, loss: float) -> None:
            claims.beat()
            self._say("epoch", trial=number, epoch=epoch, epochs=epochs, loss=loss)

        model, result = self.evaluator.train(p.arch, progress=on_epoch)
        p.attrs["train"] = {
            k: v for k, v in result.to_dict().items() if isinstance(v, (int, float, bool))
        }
        if result.diverged or not math.isfinite(result.val_accuracy):
            return "diverged", TrialState.FAIL, {}
        p.metrics.update(trained_metrics(result))
        self.n_near_chance += result.val_accuracy <= self.chance
        if not self.save_weights:
            return "trained", TrialState.COMPLETE, {}
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        return "trained", TrialState.COMPLETE, weights

    def _keep(
        self, p: _Proposal, status: str, state: TrialState, weights: dict[str, torch.Tensor]
    ) -> None:
        """Store ``p``'s trial (and its weights file), release the claim, say what it was."""
        from nas.export._bundle import weights_bytes

        p.attrs["status"] = status
        with interrupts_deferred():  # a trial is stored whole: its weights, then its row
            if weights:
                path = self.run_dir / "weights" / f"{p.arch.arch_id}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path, suffix=".safetensors") as tmp:
                    tmp.write_bytes(weights_bytes(weights, {"arch_id": p.arch.arch_id}))
                p.attrs["weights"] = str(path.relative_to(self.run_dir))
            number = self._publish(p, state)
            self.claims.clear()
        self.counts["failed" if status == "diverged" else status] += 1
        self.n_new += 1
        # an untrained trial's placeholder (WORST) is no measurement: not shown
        shown = {
            m.name: None if status == "infeasible" and m.name in WORST else p.metrics.get(m.name)
            for m in self.exp.objectives
        }
        self._say("trial", trial=number, status=status, arch=p.attrs["arch"], **shown)

    def _publish(self, p: _Proposal, state: TrialState) -> int:
        """Finish ``p``'s trial on the sampler's study with its attributes, metrics, objective
        values (a failed trial: none) and constraint violations, and write it to the storage;
        its number there."""
        trial, metrics, shadow = p.trial, p.metrics, self.mirror.shadow
        for key, value in {**p.attrs, **metrics}.items():
            trial.set_user_attr(key, value)
        if state != TrialState.COMPLETE:
            return self.mirror.publish(shadow.tell(trial, state=TrialState.FAIL))
        constraints = self.exp.constraints
        found = {**violations(constraints, metrics), **p.violations}
        for c in constraints:  # every trial carries every constraint (0 = unknown)
            trial.set_constraint(str(c), found.get(str(c), 0.0))
        values = [metrics[m.name] for m in self.exp.objectives]
        return self.mirror.publish(shadow.tell(trial, values))

    # -- waiting and telling ----------------------------------------------------------------------

    def _timed_out(self) -> bool:
        limit = self.exp.search.timeout_s
        return limit is not None and time.perf_counter() - self.start > limit

    def _wait(self, reason: str, until: Callable[[], bool]) -> None:
        """Poll the storage until ``until()`` (or ``search.timeout_s``), saying why once."""
        said = False
        while True:
            self.mirror.sync()
            if until() or self._timed_out():
                return
            if not said:
                self._say("waiting", reason=reason)
                said = True
            time.sleep(self.poll_s)

    def _say(self, event: str, **info: Any) -> None:
        if self.progress is not None:
            self.progress(event, info)


class _Mirror:
    """The study's finished trials, mirrored into an in-memory study the sampler works on.

    Sampling and evaluation happen on a private in-memory study; each finished trial is then
    written to the real storage with a single ``add_trial`` (one transaction instead of ~30
    small writes of params, user attributes and constraints). Before each trial the mirror pulls
    in trials that other workers added to the storage, so several processes can share one
    study. A trial being evaluated is not in the storage until it finishes; a killed process
    loses only its unfinished trial. With ``claims``, the architectures other workers are
    training (or evaluating, in a cost-only search) appear in the sampler's study as running
    trials, so that a sampler that looks at running trials (the default one) proposes others.
    """

    def __init__(
        self,
        study: optuna.Study,
        sampler: optuna.samplers.BaseSampler,
        space: SearchSpace,
        claims: Claims | None = None,
    ) -> None:
        self.study = study
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # (an internal study: no news)
        try:
            self.shadow = optuna.create_study(directions=study.directions, sampler=sampler)
        finally:
            optuna.logging.set_verbosity(verbosity)
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
        """Trials other workers have in progress (they will count towards ``n_trials``)."""
        return self.claims.running if self.claims is not None else 0

    def sync(self) -> None:
        """Pull finished trials of the storage, and other workers' claims, into the sampler's
        study."""
        self.pull()
        if self.claims is None:
            return
        self.claims.read(self.study.user_attrs, self.known, self.seen)
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

    def publish(self, frozen: optuna.trial.FrozenTrial) -> int:
        """Write a trial finished on the shadow study to the storage (one transaction); its
        number there. Alone in the study that is the shadow's number; beside other workers,
        whose trials may reach the storage between this one's ask and its write, it is read
        back."""
        uid = self._uid(frozen)
        self.seen.add(uid)
        self.study.add_trial(frozen)
        if self.claims is None or not self.claims.crowded:
            return frozen.number
        for t in reversed(self.study.get_trials(deepcopy=False, states=(frozen.state,))):
            if self._uid(t) == uid:
                return t.number
        return frozen.number  # (not found: a storage that lost it; the next pull will say)


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
