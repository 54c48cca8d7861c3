"""Several search processes on one study: who trains what, and where each trial's weights lie.

Workers share a study through its storage (``search.storage``), each with its own run folder
(``--out``). A finished trial reaches the storage in one transaction (``_Mirror``), so a trial
in progress is invisible there; a worker about to train an architecture therefore *claims* it
first, in a study user attribute of its own (``nas.worker.<key>``, one per run folder and
host), and clears the claim when the trial is stored. The other workers read the claims before
each trial: their sampler treats a claimed architecture as running (and proposes another), the
search stops when its finished and claimed trials make ``n_trials``, and an architecture
claimed elsewhere is never trained twice. Once several workers share a study, every trial is
claimed, the ones that train nothing too (a cost-only search's: a worker that joins a study
announces itself with an empty claim, so that the one that created it knows), so that the
study ends at ``n_trials`` exactly.

A claim whose worker died is stale: on the same host when its process is gone, elsewhere when
its heartbeat (refreshed during training) is older than :data:`STALE_S`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

__all__ = [
    "STALE_S",
    "TRIAL_RUN_DIR",
    "Claim",
    "Claims",
    "trial_weights",
    "weight_folders",
    "weights_home",
    "worker_key",
    "worker_seed",
]

#: prefix of the study user attributes that hold the workers' claims
CLAIM_PREFIX = "nas.worker."
#: trial user attribute: the run folder of the worker that stored the trial, where it differs
#: from the study's (``nas.run_dir``): its weights file lies there
TRIAL_RUN_DIR = "nas.run_dir"
#: seconds without a heartbeat after which another host's claim is taken as abandoned
STALE_S = 600.0
#: seconds between heartbeats of a claim while its architecture trains
BEAT_S = 60.0


def worker_key(run_dir: Path) -> str:
    """A worker's name in the study: its host and run folder (one process per folder)."""
    text = f"{socket.gethostname()}:{run_dir.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def worker_seed(seed: int, key: str) -> int:
    """The sampler seed of a worker that joins another's study: its own stream (workers with
    one seed would propose the same architectures), the same on every rerun of its folder."""
    return (seed + int(key, 16)) % 2**31


@dataclass(frozen=True)
class Claim:
    """An architecture a worker is training."""

    worker: str
    effective_id: str
    params: Mapping[str, Any]
    run_dir: str
    host: str
    pid: int
    since: float
    beat: float
    uid: str = ""  # the trial's UID (``nas.uid``): done once it is stored ("": older claims)

    def stale(self, now: float) -> bool:
        if self.host == socket.gethostname():
            return not _alive(self.pid)
        return now - self.beat > STALE_S

    def to_dict(self) -> dict[str, Any]:
        return {
            "effective_id": self.effective_id,
            "params": dict(self.params),
            "run_dir": self.run_dir,
            "host": self.host,
            "pid": self.pid,
            "since": self.since,
            "beat": self.beat,
            "uid": self.uid,
        }

    @classmethod
    def from_attr(cls, worker: str, value: Any) -> Claim | None:
        if not isinstance(value, dict):
            return None  # cleared (None), or not ours
        try:
            return cls(
                worker=worker,
                effective_id=str(value["effective_id"]),
                params=dict(value["params"]),
                run_dir=str(value["run_dir"]),
                host=str(value["host"]),
                pid=int(value["pid"]),
                since=float(value["since"]),
                beat=float(value.get("beat", value["since"])),
                uid=str(value.get("uid") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


class Claims:
    """This worker's claim in ``study`` and the live claims of the others.

    Every trial a worker evaluates is claimed while other workers search the study (a trial
    that only reuses a stored result, or is skipped by a constraint, too: it fills a place of
    ``n_trials`` as a trained one does). :attr:`running` counts the others' claims whose trials
    are not stored yet; :attr:`others` holds those of architectures not stored yet, by
    effective id: what they are training."""

    def __init__(self, study: optuna.Study, run_dir: Path) -> None:
        self.study = study
        self.key = worker_key(run_dir)
        self.run_dir = str(run_dir.resolve())
        self.mine: Claim | None = None
        self.others: dict[str, Claim] = {}  # effective_id -> claim of another worker
        self.running = 0  # the other workers' trials in progress
        self.crowded = False  # another worker has claimed in this study
        self._claims: list[Claim] = []  # the others' live claims at the last read
        self._known: frozenset[str] = frozenset()
        self._stored: frozenset[str] = frozenset()

    def read(
        self, attrs: Mapping[str, Any], known: Iterable[str] = (), stored: Iterable[str] = ()
    ) -> None:
        """The others' live claims in the study's user attributes ``attrs``, settled against
        what the storage holds (:meth:`settle`)."""
        now = time.time()
        self._claims = []
        for name, value in attrs.items():
            if not name.startswith(CLAIM_PREFIX) or name == CLAIM_PREFIX + self.key:
                continue
            self.crowded = True  # (a cleared claim too: that worker has been here)
            claim = Claim.from_attr(name[len(CLAIM_PREFIX) :], value)
            if claim is not None and not claim.stale(now):
                self._claims.append(claim)
        self.settle(known, stored)

    def settle(self, known: Iterable[str], stored: Iterable[str]) -> None:
        """Which of the others' claims (as last read) are running, now that the storage holds
        the architectures ``known`` (effective ids) and the trials ``stored`` (UIDs): a worker
        stores its trial before it clears its claim, so a claim whose trial is stored is done.
        A claim written before claims named their trial is done when its architecture is."""
        self._known, self._stored = frozenset(known), frozenset(stored)
        running = [
            c
            for c in self._claims
            if not (c.uid in self._stored if c.uid else c.effective_id in self._known)
        ]
        self.running = len(running)
        self.others = {}
        for claim in running:
            if claim.effective_id in self._known:
                continue  # reusing a stored result: it trains nothing
            held = self.others.get(claim.effective_id)
            if held is None or claim.since < held.since:
                self.others[claim.effective_id] = claim

    def claim(
        self, effective_id: str, params: Mapping[str, Any], uid: str = "", *, trains: bool = True
    ) -> Claim | None:
        """Claim the trial ``uid`` of ``effective_id`` for this worker; None when it is ours,
        else another worker's claim of the architecture (when it ``trains``: this worker then
        leaves it to that one).

        A claim is written, then the claims are read again: a worker that finds another's
        claim of the same architecture then backs off, whichever came first. The storage has no
        compare-and-set, and clocks (the claims' ``since``) do not order writes: of two workers
        that claim at once, one backs off or both do (they then propose again; the caller waits
        a random moment first, so that they do not meet again), never neither."""
        if trains and effective_id in self.others:
            return self.others[effective_id]
        now = time.time()
        self.mine = Claim(
            self.key, effective_id, dict(params), self.run_dir,
            socket.gethostname(), os.getpid(), now, now, uid,
        )  # fmt: skip
        self._write(self.mine)
        self.read(self.study.user_attrs, self._known, self._stored)
        rival = self.others.get(effective_id) if trains else None
        if rival is not None:
            self.clear()
        return rival

    def announce(self) -> None:
        """Tell the other workers of the study that this one searches it too (an empty claim):
        from then on they claim every trial they evaluate, as this one does."""
        self.crowded = True
        if CLAIM_PREFIX + self.key not in self.study.user_attrs:
            self.study.set_user_attr(CLAIM_PREFIX + self.key, None)

    def beat(self) -> None:
        """Refresh this worker's claim (during a long training) at most every :data:`BEAT_S`."""
        now = time.time()
        if self.mine is not None and now - self.mine.beat >= BEAT_S:
            self.mine = replace(self.mine, beat=now)
            self._write(self.mine)

    def clear(self) -> None:
        if self.mine is not None:
            self.mine = None
            self.study.set_user_attr(CLAIM_PREFIX + self.key, None)

    def _write(self, claim: Claim) -> None:
        self.study.set_user_attr(CLAIM_PREFIX + self.key, claim.to_dict())


def trial_weights(
    trial: optuna.trial.FrozenTrial, study_attrs: Mapping[str, Any], *folders: Path | None
) -> Path | None:
    """The file of a trial's proxy-trained weights, or None when it has none or none of the
    places it may lie holds it (:func:`weights_home`)."""
    home = weights_home(trial, study_attrs, *folders)
    return None if home is None else home / trial.user_attrs["weights"]


def weights_home(
    trial: optuna.trial.FrozenTrial, study_attrs: Mapping[str, Any], *folders: Path | None
) -> Path | None:
    """The run folder that holds a trial's weights file (``weights/<arch_id>.safetensors``,
    relative to it): the first of :func:`weight_folders` that has it; None when the trial has
    no weights or no such folder holds them."""
    weights = trial.user_attrs.get("weights")
    if not weights:
        return None
    for folder in weight_folders(trial, study_attrs, *folders):
        if (folder / weights).is_file():
            return folder
    return None


def weight_folders(
    trial: optuna.trial.FrozenTrial, study_attrs: Mapping[str, Any], *folders: Path | None
) -> list[Path]:
    """Where a trial's weights may lie, in order, without repeats: the run folder of the worker
    that stored it, ``folders`` (the reader's run folder, the study's SQLite folder: a run
    folder moved or copied whole), and the run folder the study recorded."""
    places = [trial.user_attrs.get(TRIAL_RUN_DIR), *folders, study_attrs.get("nas.run_dir")]
    return list(dict.fromkeys(Path(p) for p in places if p))
