"""Several search processes on one study: claims, seeds, weights in each worker's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.pipeline import run_experiment
from nas.search import Experiment, load_experiment, trial_weights
from nas.search._study import UID_ATTR, make_storage
from nas.search._workers import CLAIM_PREFIX, STALE_S, Claims, worker_key
from nas.space import load_space

REPO = Path(__file__).resolve().parents[2]


def _study(tmp_path: Path) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    return optuna.create_study(study_name="s", storage=make_storage(url), load_if_exists=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claimed_architecture_is_left_to_its_worker_until_stored(tmp_path):
    study = _study(tmp_path)
    a, b = Claims(study, tmp_path / "a"), Claims(study, tmp_path / "b")
    assert a.key != b.key == worker_key(tmp_path / "b")
    a.read(study.user_attrs, ())
    assert a.claim("e1", {"p": 1}) is None  # ours to train
    b.read(study.user_attrs, ())
    assert set(b.others) == {"e1"} and b.others["e1"].params == {"p": 1}
    rival = b.claim("e1", {"p": 1})
    assert rival is not None and rival.worker == a.key
    assert b.claim("e2", {"p": 2}) is None  # another architecture is free
    # stored by its worker (a known effective id): no longer running, even before it clears
    b.read(study.user_attrs, ["e1"])
    assert "e1" not in b.others
    a.clear()
    assert study.user_attrs[CLAIM_PREFIX + a.key] is None
    a.read(study.user_attrs, ())
    assert set(a.others) == {"e2"}


def test_two_workers_claiming_at_once_leave_it_to_the_earlier_claim(tmp_path):
    study = _study(tmp_path)
    a, b = Claims(study, tmp_path / "a"), Claims(study, tmp_path / "b")
    b.read(study.user_attrs, ())  # b has not seen a's claim yet when it claims
    assert a.claim("e1", {}) is None
    assert b.claim("e1", {}) is not None  # its re-read finds a's earlier claim: it backs off
    assert study.user_attrs[CLAIM_PREFIX + b.key] is None
    a.read(study.user_attrs, ())
    assert a.others == {}


def test_every_trial_in_progress_counts_until_it_is_stored(tmp_path):
    """A trial that reuses a stored result is claimed too (it fills a place of n_trials), but
    is no rival; a claim is done once its trial (by UID) is stored."""
    study = _study(tmp_path)
    a, b, c = (Claims(study, tmp_path / w) for w in "abc")
    c.read(study.user_attrs)
    assert not c.crowded and c.running == 0  # alone: trials that train nothing go unclaimed
    assert a.claim("e1", {}, "u1") is None  # trains e1
    assert b.claim("e2", {}, "u2", trains=False) is None  # reuses e2, stored earlier
    c.read(study.user_attrs, known=["e2"])
    assert c.crowded and c.running == 2 and set(c.others) == {"e1"}
    assert c.claim("e2", {}, "u3", trains=False) is None  # reusing e2 is no one's rival
    c.settle(known=["e2"], stored=["u1"])  # a stored its trial and has not cleared yet
    assert c.running == 1 and c.others == {}
    c.settle(known=["e1", "e2"], stored=["u1", "u2"])
    assert c.running == 0


def test_a_dead_workers_claim_is_stale(tmp_path):
    study = _study(tmp_path)
    now = time.time()
    claim = {"effective_id": "e1", "params": {}, "run_dir": "/x", "since": now, "beat": now}
    here = {**claim, "host": os.uname().nodename, "pid": _dead_pid()}
    study.set_user_attr(CLAIM_PREFIX + "deadbeef0001", here)
    far = {**claim, "effective_id": "e2", "host": "elsewhere", "pid": 1}
    study.set_user_attr(CLAIM_PREFIX + "deadbeef0002", far)
    old = {**far, "effective_id": "e3", "beat": now - STALE_S - 1}
    study.set_user_attr(CLAIM_PREFIX + "deadbeef0003", old)
    study.set_user_attr(CLAIM_PREFIX + "deadbeef0004", {"not": "a claim"})
    c = Claims(study, tmp_path / "c")
    c.read(study.user_attrs, ())
    # another host's claim lives while its heartbeat is fresh; this host's while its pid runs
    assert set(c.others) == {"e2"}


def _worker_experiment(tiny_experiment, tmp_path: Path, sampler: str, n_trials: int) -> Path:
    """The tiny experiment with ``sampler``, searching a study in ``tmp_path/shared.db``."""
    path = tiny_experiment(n_trials=n_trials)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    text = path.read_text().replace("sampler: tpe,", f"sampler: {sampler},")
    text = text.replace("seed: 0}\nobjectives", "seed: 0, threads: 1}\nobjectives")  # a core each
    old = f"n_trials: {n_trials}, seed: 0}}"
    path.write_text(text.replace(old, old[:-1] + f", storage: '{url}'}}"))
    assert url in path.read_text() and f"sampler: {sampler}" in path.read_text()
    assert "threads: 1" in path.read_text()
    return path


def test_two_worker_processes_share_one_study(tiny_experiment, tmp_path):
    """Started together on one storage: each trains what the other is not training, keeps its
    weights in its own folder, and their reports find every trial's weights."""
    exp = _worker_experiment(tiny_experiment, tmp_path, "auto", 8)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nas", "search", str(exp), "--out", str(tmp_path / w)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("another worker's study" in err for _, err in outs) == 1  # one joined the other
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    trials = study.get_trials(deepcopy=False)
    # every trial is claimed once both workers are in: the study ends at n_trials exactly
    assert len(trials) == 8, [t.user_attrs["status"] for t in trials]
    trained = [t for t in trials if t.user_attrs["status"] == "trained"]
    effective = [t.user_attrs["effective_id"] for t in trained]
    assert len(effective) == len(set(effective)), "an architecture was trained twice"
    homes = {t.user_attrs.get("nas.run_dir", study.user_attrs["nas.run_dir"]) for t in trained}
    # each trial's weights lie in the folder of the worker that trained it (usually both train
    # some; on a busy machine one worker may be slow to start)
    assert homes <= {str((tmp_path / w).resolve()) for w in ("a", "b")}
    for t in trials:
        if t.user_attrs.get("weights"):
            assert trial_weights(t, study.user_attrs) is not None, t.number
    assert not any(k.startswith(CLAIM_PREFIX) and v for k, v in study.user_attrs.items())
    for w in ("a", "b"):  # each report holds the whole study, weights linked from either folder
        frame = pd.read_csv(tmp_path / w / "trials.csv")
        assert len(frame) == len(trials)
        for arch in (tmp_path / w / "architectures").glob("*.json"):
            assert '"weights"' in arch.read_text(), arch


def test_a_worker_leaves_running_architectures_to_their_worker(tiny_experiment, tmp_path):
    """Another worker (simulated) claims architectures and stores them later: this one never
    trains a claimed architecture, even with a sampler that ignores running trials."""
    exp = load_experiment(_worker_experiment(tiny_experiment, tmp_path, "random", 12))
    space = load_space(tmp_path / "tiny.yaml")
    forms = {space.effective(a).arch_id: a for a in reversed(space.random_distinct(27, 1))}
    archs = list(forms.values())[:4]  # of 4 different models
    other = tmp_path / "other"
    started = threading.Event()

    def progress(event: str, _info: dict) -> None:
        if event == "start":
            started.set()

    def worker() -> None:
        run_experiment(exp, tmp_path / "run", finish=False, progress=progress)

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(timeout=120)
    storage = make_storage(f"sqlite:///{tmp_path / 'shared.db'}")
    shared = optuna.load_study(study_name="tiny", storage=storage)
    claims = []
    for i, arch in enumerate(archs):
        c = Claims(shared, other / str(i))
        c.claim(space.effective(arch).arch_id, arch.choices)
        claims.append(c)
    time.sleep(2)
    for arch, c in zip(archs, claims, strict=True):  # the other worker stores its trials
        shared.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                params={k: v for k, v in arch.choices.items() if k in space.parameters()},
                distributions={
                    k: optuna.distributions.CategoricalDistribution(list(v))
                    for k, v in space.parameters().items()
                    if k in arch.choices
                },
                values=[0.5, 1000.0],
                user_attrs={
                    "status": "trained",
                    "arch_id": arch.arch_id,
                    "effective_id": space.effective(arch).arch_id,
                    "architecture": arch.to_dict(),
                    "arch": space.format(arch),
                    "error": 0.5,
                    "accuracy": 0.5,
                    "params": 1000.0,
                },
            )
        )
        c.clear()
    thread.join(timeout=300)
    assert not thread.is_alive()
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    claimed = {space.effective(a).arch_id for a in archs}
    trained = frame[(frame["status"] == "trained") & frame["effective_id"].isin(claimed)]
    # each claimed architecture was trained once: by the other worker, never by this one
    assert sorted(trained["effective_id"]) == sorted(claimed), trained[["number", "arch"]]
    assert len(frame) >= 12


def test_the_same_folder_twice_is_still_refused_with_the_way_to_run_workers(tmp_path):
    from nas.pipeline import _run_dir_lock

    with _run_dir_lock(tmp_path):
        with pytest.raises(Exception, match="search.storage"):
            with _run_dir_lock(tmp_path):
                pass


def test_a_chosen_member_that_reused_anothers_training_starts_from_those_weights(
    tiny_experiment, tmp_path
):
    """A trial that reused another spelling's training names that one's weights file; the
    stage after the search fine-tunes from it, not from a fresh initialization."""
    path = tiny_experiment(n_trials=40)
    run = tmp_path / "run"
    run_experiment(load_experiment(path), run, finish=False)
    frame = pd.read_csv(run / "trials.csv")
    reused = frame[(frame["status"] == "reused") & frame["weights"].notna()]
    reused = reused[~reused["arch_id"].isin(frame[frame["status"] == "trained"]["arch_id"])]
    row = reused[reused["weights"] != "weights/" + reused["arch_id"] + ".safetensors"].iloc[0]
    overrides = [
        f"select={{rule: ids, ids: [{row['arch_id']}]}}",
        "finetune={epochs: 1}",
        "compress=null",
    ]
    result = run_experiment(load_experiment(path, overrides), run)
    (final,) = result.final
    doc = json.loads((final.folder / "arch.json").read_text())
    assert doc["origin"]["started_from"] == (
        f"the search's proxy-trained weights ({row['weights']})"
    )


def _cost_only(tmp_path: Path, n_trials: int) -> Experiment:
    """NAS-Bench-201's cost-only experiment (no training) on the study in ``shared.db``."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    sets = [f"search.n_trials={n_trials}", f"search.storage={url}"]
    return load_experiment(REPO / "experiments" / "nasbench201_cost.yaml", sets)


def _shared(tmp_path: Path) -> optuna.Study:
    storage = make_storage(f"sqlite:///{tmp_path / 'shared.db'}")
    return optuna.load_study(study_name="nasbench201_cost", storage=storage)


def test_a_cost_only_search_beside_another_worker_ends_at_n_trials(tmp_path):
    """Two cost-only workers stored 81 trials for n_trials 80: nothing trains, so nothing was
    claimed, and both stored the last trial. Beside a worker that holds a claim, this one now
    stops one short and waits for that trial."""
    run_experiment(_cost_only(tmp_path, 3), tmp_path / "run", finish=False)
    shared, other = _shared(tmp_path), tmp_path / "other"
    space = load_space("nasbench201")
    arch = space.random(7)
    claims = Claims(shared, other)
    claims.claim(space.effective(arch).arch_id, arch.choices, "their-trial", trains=False)
    waiting = threading.Event()

    def progress(event: str, _info: dict) -> None:
        if event == "waiting":
            waiting.set()

    thread = threading.Thread(
        target=run_experiment,
        args=(_cost_only(tmp_path, 10), tmp_path / "run"),
        kwargs={"finish": False, "progress": progress},
    )
    thread.start()
    assert waiting.wait(timeout=120)
    assert len(shared.get_trials(deepcopy=False)) == 9  # and one the other worker is running
    done = next(t for t in shared.get_trials(deepcopy=False) if t.number == 0)
    attrs = {**done.user_attrs, UID_ATTR: "their-trial"}
    shared.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            params=done.params,
            distributions=done.distributions,
            values=done.values,
            user_attrs=attrs,
        )
    )
    claims.clear()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert len(shared.get_trials(deepcopy=False)) == 10


def test_trial_numbers_said_beside_other_workers_are_the_storages(tmp_path, monkeypatch):
    """Beside another worker, the log's trial numbers were the sampler's private study's:
    another worker's trial stored between this one's proposal and its write shifts the
    storage's numbers, and `nas export --trial N` with a number from the log exported another
    architecture."""
    from nas.search._loop import _Mirror

    run_experiment(_cost_only(tmp_path, 2), tmp_path / "run", finish=False)
    _shared(tmp_path).set_user_attr(CLAIM_PREFIX + "other", None)  # another worker was here
    publish = _Mirror.publish

    def after_anothers(self, frozen):  # the other worker stores a trial first
        self.study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.FAIL,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs={**frozen.user_attrs, UID_ATTR: uuid.uuid4().hex, "status": "diverged"},
            )
        )
        return publish(self, frozen)

    monkeypatch.setattr(_Mirror, "publish", after_anothers)
    said = []

    def progress(event: str, info: dict) -> None:
        if event == "trial":
            said.append((info["trial"], info["status"], info["arch"]))

    run_experiment(_cost_only(tmp_path, 8), tmp_path / "run", finish=False, progress=progress)
    trials = _shared(tmp_path).get_trials(deepcopy=False)
    assert len(said) == 3 and len(trials) == 8  # 2 before, and 3 of each worker's
    for number, status, arch in said:
        stored = trials[number].user_attrs
        assert (stored["status"], stored["arch"]) == (status, arch), number
