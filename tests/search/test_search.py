"""The search loop on real (tiny) training: outputs, resume, dedup, constraints, failures."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from safetensors.torch import load_file

from nas import NasConfigError
from nas.pipeline import run_experiment
from nas.search import load_experiment, load_study, trials_frame, write_report
from nas.space import load_space


def test_run_writes_every_output(tiny_experiment, tmp_path):
    exp = load_experiment(tiny_experiment(objectives="[error, params, latency_ms@cpu]"))
    result = run_experiment(exp, tmp_path / "run")
    run = result.run_dir
    for name in ("trials.csv", "pareto.csv", "pareto.png", "hypervolume.png", "manifest.json"):
        assert (run / name).stat().st_size > 0, name
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 6
    assert {"error", "params", "latency_ms@cpu", "energy_mj@cpu", "arch_id", "pareto"} <= set(
        trials
    )
    pareto = pd.read_csv(run / "pareto.csv")
    assert len(pareto) >= 1
    files = sorted(p.stem for p in (run / "architectures").glob("*.json"))
    assert files == sorted(pareto["arch_id"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["experiment"]["out"] == str(tmp_path / "run")  # where it went, not runs/tiny
    assert manifest["search"]["sampler"] == "TPESampler"
    assert manifest["space"]["name"] == "tiny_cell"
    assert manifest["seeds"] == {"search": 0, "train": 0, "data_split": 0}
    assert manifest["environment"]["packages"]["optuna"] == optuna.__version__
    # the runtimes the finished models are measured in (INT8 kernels change between releases)
    import onnxruntime

    assert manifest["environment"]["packages"]["onnxruntime"] == onnxruntime.__version__
    assert manifest["pareto"]["hypervolume_reference"]["reference"] == [1.1, 1.1, 1.1]
    # the study is a plain Optuna study that other tools read as is
    study = optuna.load_study(study_name="tiny", storage=result.search.storage)
    assert study.metric_names == ["error", "params", "latency_ms@cpu"]
    t = study.best_trials[0]
    assert {"arch_id", "architecture", "error", "params", "latency_ms@cpu"} <= set(t.user_attrs)


def test_same_command_continues_and_never_retrains(tiny_experiment, tmp_path):
    path = tiny_experiment(n_trials=4)
    first = run_experiment(load_experiment(path), tmp_path / "run")
    assert first.search.n_new == 4
    again = run_experiment(load_experiment(path), tmp_path / "run")
    assert again.search.n_new == 0 and again.search.n_trials == 4
    more = run_experiment(load_experiment(path, ["search.n_trials=7"]), tmp_path / "run")
    assert more.search.n_new == 3 and more.search.n_trials == 7
    frame = trials_frame(load_study(more.search.storage, "tiny"))
    assert len(frame) == 7


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("train.epochs=2", "train.epochs 1, not 2"),
        ("data.val_fraction=0.3", "data.val_fraction"),
        ('constraints.params="<= 900"', "constraints {}, not {'params': '<= 900.0'}"),
    ],
)
def test_a_study_refuses_trials_measured_another_way(tiny_experiment, tmp_path, change, named):
    path = tiny_experiment(n_trials=2)
    run_experiment(load_experiment(path), tmp_path / "run")
    with pytest.raises(NasConfigError, match=re.escape(named) + ".*another search.study_name"):
        run_experiment(load_experiment(path, [change, "search.n_trials=3"]), tmp_path / "run")
    more = ["search.n_trials=3", "search.sampler=random", "train.threads=1"]  # these may change
    assert run_experiment(load_experiment(path, more), tmp_path / "run").search.n_new == 1


def test_duplicate_architectures_are_not_trained_again(tiny_experiment, tmp_path):
    # 27 architectures; 40 trials must revisit some, and those are copied, not trained
    exp = load_experiment(tiny_experiment(n_trials=40))
    result = run_experiment(exp, tmp_path / "run")
    s = result.search
    assert s.n_trained <= 27 and s.n_reused >= 13
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    trained = frame[frame["status"] == "trained"]
    assert trained["arch_id"].is_unique
    reused = frame[frame["status"] == "reused"]
    for _, row in reused.iterrows():
        original = frame[frame["number"] == row["duplicate_of"]].iloc[0]
        # the same architecture, or another spelling of the same model (its effective form)
        assert original["effective_id"] == row["effective_id"]
        assert original["error"] == row["error"]
    assert len(list((tmp_path / "run" / "weights").glob("*.safetensors"))) == s.n_trained
    # a reused trial names the weights it was scored with when they fit its network
    space = load_space(exp.space)
    shared = 0
    for _, row in reused.iterrows():
        original = frame[frame["number"] == row["duplicate_of"]].iloc[0]
        if isinstance(row["weights"], str):
            assert row["weights"] == original["weights"]
            model = space.build(space.parse(row["arch"]))
            state = load_file(str(tmp_path / "run" / row["weights"]))
            model.load_state_dict(state)  # strict: every key and shape fits
            shared += 1
    assert shared > 0


def test_cheap_constraint_violators_are_never_trained(tiny_experiment, tmp_path):
    path = tiny_experiment('constraints: {params: "<= 800"}', n_trials=10)
    events = []
    result = run_experiment(
        load_experiment(path), tmp_path / "run", progress=lambda e, i: events.append((e, i))
    )
    assert [e for e, _ in events[:2]] == ["start", "proposing"]  # a sign of life before trial 0
    # the progress line shows no error for an untrained trial (the study stores a placeholder)
    shown = [i for e, i in events if e == "trial" and i["status"] == "infeasible"]
    assert shown and all(i["error"] is None and i["params"] > 800 for i in shown)
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert "train" not in frame and frame["train.epochs_run"].notna().any()  # columns, not a repr
    bad = frame[frame["params"] > 800]
    assert len(bad) > 0 and (bad["status"] == "infeasible").all()
    assert bad["error"].isna().all()  # not measured, shown as missing
    assert not bad["feasible"].any() and not bad["pareto"].any()
    assert result.search.n_infeasible == len(bad)
    weights = {p.stem for p in (tmp_path / "run" / "weights").glob("*")}
    assert not weights & set(bad["arch_id"])
    study = load_study(result.search.storage, "tiny")
    for t in study.trials:
        assert list(t.constraints) == ["params <= 800"]
        assert (t.constraints["params <= 800"] > 0) == (t.user_attrs["params"] > 800)


def test_diverging_training_is_a_failed_trial_and_search_goes_on(tiny_experiment, tmp_path):
    path = tiny_experiment(n_trials=3)
    exp = load_experiment(path, ["train.lr=1e12", "train.optimizer=sgd"])
    result = run_experiment(exp, tmp_path / "run")
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(frame) == 3
    failed = frame[frame["state"] == "FAIL"]
    assert len(failed) >= 1 and (failed["status"] == "diverged").all()
    assert result.search.n_failed == len(failed)


def test_pareto_command_reproduces_the_report_from_storage(tiny_experiment, tmp_path, capsys):
    result = run_experiment(load_experiment(tiny_experiment()), tmp_path / "run")
    study = load_study(result.search.storage, "tiny")
    report = write_report(study, tmp_path / "again")
    a = pd.read_csv(tmp_path / "run" / "pareto.csv")
    b = pd.read_csv(tmp_path / "again" / "pareto.csv")
    assert list(a["arch_id"]) == list(b["arch_id"])
    assert report.n_pareto == len(a)
    # weights are found through the study even when the report goes elsewhere
    doc = json.loads(next((tmp_path / "again" / "architectures").glob("*.json")).read_text())
    assert "weights" in doc
    # nas pareto: into a report's folder again, yes; into a folder of other files, no (it
    # wrote its files among someone else's)
    from nas.cli import main

    args = ["pareto", "--storage", result.search.storage, "--study", "tiny", "--out"]
    assert main([*args, str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main([*args, str(tmp_path / "run"), "-q"]) == 0  # the summary line alone
    assert capsys.readouterr().out.count("\n") == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main([*args, str(tmp_path / "mine")]) == 2
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "nsga3", "gp", "random"])
def test_every_sampler_runs_cost_only_search(tmp_path, sampler):
    """Cost-only searches need no data and no training (ImageNet-resolution space)."""
    path = tmp_path / "exp.yaml"
    path.write_text(f"""
name: cost_{sampler}
space: mbconv_imagenet
objectives: [macs, latency_ms@cpu, energy_mj@gpu]
search: {{sampler: {sampler}, n_trials: 12, seed: 1}}
""")
    result = run_experiment(load_experiment(path), tmp_path / "run")
    s = result.search
    assert s.n_trials == 12 and s.n_trained == 0 and s.n_evaluated + s.n_reused == 12
    assert s.n_evaluated >= 6
    assert result.report.n_pareto >= 1
    assert not (tmp_path / "run" / "weights").exists()


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "nsga3", "gp", "random"])
def test_samplers_are_made_without_optuna_warnings(sampler):
    """NSGA-III's ExperimentalWarning reached stderr as a raw Python warning, even with -q."""
    import warnings

    from nas.search._samplers import make_sampler

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_sampler(sampler, seed=0, n_trials=12)


def test_seeded_search_is_deterministic(tmp_path):
    frames = []
    for i in range(2):
        path = tmp_path / f"exp{i}.yaml"
        path.write_text("""
name: det
space: fbnet
objectives: [params, latency_ms@cpu]
search: {sampler: tpe, n_trials: 15, seed: 3}
""")
        run_experiment(load_experiment(path), tmp_path / f"run{i}")
        frames.append(pd.read_csv(tmp_path / f"run{i}" / "pareto.csv"))
    assert list(frames[0]["arch_id"]) == list(frames[1]["arch_id"])


def test_mnist_idx_search_adapts_the_space(tmp_path):
    from tests.conftest import shared_file

    shared_file("mnist-test-10k/t10k-images-idx3-ubyte.gz")
    repo = Path(__file__).resolve().parents[2]
    exp = load_experiment(
        repo / "experiments" / "mnist.yaml",
        ["search.n_trials=2", "data.limit=600", "train.epochs=1"],
    )
    result = run_experiment(exp, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["space"]["input"] == [1, 28, 28]
    assert manifest["data"]["train_val"] == [480, 120]
    assert result.search.n_trials == 2
    # what nas show / cost / sample take to read its architectures (said after the search)
    assert result.search.adapted_space == "mobilenet_small@1x28x28:10"
    assert load_space(result.search.adapted_space).hash == manifest["space"]["hash"]


def test_example_experiments_validate():
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "experiments").glob("*.yaml")):
        exp = load_experiment(path)
        assert exp.objectives, path


def test_cost_only_example_has_a_trade_off(tmp_path):
    """The shipped cost-only experiment maximizes MACs against latency: a front of many
    cells, the largest first reached at each latency, not the empty cell alone."""
    path = Path(__file__).resolve().parents[2] / "experiments" / "nasbench201_cost.yaml"
    exp = load_experiment(path, ["search.n_trials=80"])
    assert [m.direction for m in exp.objectives] == ["maximize", "minimize", "minimize"]
    run_experiment(exp, tmp_path / "run")
    front = pd.read_csv(tmp_path / "run" / "pareto.csv")
    assert front["macs"].nunique() >= 5
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert front["macs"].max() == trials["macs"].max()  # the largest cell seen is on the front
    minimized = load_experiment(path, ["objectives=[macs, latency_ms@cpu, latency_ms@ethos-u55]"])
    with pytest.raises(NasConfigError, match=r"created to \['maximize', 'minimize', 'minimize'\]"):
        run_experiment(minimized, tmp_path / "run")  # the same study, other directions


def test_resumed_search_does_not_replay_the_first_draws(tiny_experiment, tmp_path):
    """Continuing a study with an Optuna sampler (which cannot redo the stored trials' draws)
    draws new architectures instead of repeating the first run's."""
    path = tiny_experiment(n_trials=3)
    run_experiment(load_experiment(path), tmp_path / "run")
    more = run_experiment(load_experiment(path, ["search.n_trials=6"]), tmp_path / "run")
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    first, second = frame[frame["number"] < 3], frame[frame["number"] >= 3]
    assert list(second["arch_id"]) != list(first["arch_id"])
    assert more.search.n_new == 3


def test_a_resumed_search_with_the_default_sampler_is_the_uninterrupted_one(
    tiny_experiment, tmp_path
):
    """The default (cost-aware) sampler redoes a stored study's draws: stopped after 4 trials
    and continued, a search trains what one run of 9 trials trains, in the same order."""
    path = tiny_experiment(n_trials=9)
    path.write_text(path.read_text().replace("sampler: tpe, ", ""))
    run_experiment(load_experiment(path), tmp_path / "whole")
    run_experiment(load_experiment(path, ["search.n_trials=4"]), tmp_path / "run")
    # moved whole between the two runs: its own study.db, not another worker's study
    (tmp_path / "run").rename(tmp_path / "moved")
    again = run_experiment(load_experiment(path), tmp_path / "moved")
    whole, resumed = (pd.read_csv(tmp_path / d / "trials.csv") for d in ("whole", "moved"))
    assert list(resumed["arch_id"]) == list(whole["arch_id"])
    assert resumed["error"].tolist() == whole["error"].tolist()
    assert "nas.run_dir" not in resumed  # no trial was stored as another worker's
    assert again.search.n_new == 5


@pytest.mark.parametrize("space_name", ["mobilenet_small", "fbnet", "nasbench201"])
def test_samplers_see_every_parameter_jointly(tmp_path, space_name):
    """The study's intersection search space is the whole space: nothing is conditional, so
    multivariate TPE and GP model every dimension instead of sampling some at random."""
    from optuna.search_space import IntersectionSearchSpace

    from nas.space import load_space

    path = tmp_path / "exp.yaml"
    path.write_text(f"""
name: joint
space: {space_name}
objectives: [params, latency_ms@cpu]
search: {{sampler: tpe, n_trials: 15, seed: 0}}
""")
    result = run_experiment(load_experiment(path), tmp_path / "run")
    study = load_study(result.search.storage, "joint")
    joint = IntersectionSearchSpace().calculate(study)
    assert set(joint) == set(load_space(space_name).parameters())


def test_search_with_a_measured_table(tmp_path):
    """Devices can be lookup tables: the shipped measured cpu-x86 tables (fp32 in torch, int8
    in ONNX Runtime) cost mbconv_imagenet."""
    path = tmp_path / "exp.yaml"
    path.write_text("""
name: measured
space: mbconv_imagenet
objectives: [params, latency_ms@cpu-x86, energy_mj@cpu-x86, latency_ms@cpu-x86-int8]
search: {sampler: tpe, n_trials: 8, seed: 0}
""")
    result = run_experiment(load_experiment(path), tmp_path / "run")
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert result.search.n_trials == 8 and (frame["latency_ms@cpu-x86"] > 0).all()
    assert (frame["latency_ms@cpu-x86-int8"] > 0).all()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {"cpu-x86", "cpu-x86-int8"} <= set(manifest["devices"])


def test_a_table_for_another_space_is_refused_before_anything_runs(tmp_path):
    from nas import NasConfigError
    from nas.search import prepare

    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nspace: nasbench201\nobjectives: [params, latency_ms@cpu-x86]\n")
    with pytest.raises(
        NasConfigError, match=r"covers the spaces .*not 'nasbench201'.*nas profile"
    ):
        prepare(load_experiment(path))


def test_ones_own_space_against_a_shipped_table_is_offered_a_table_of_ones_own(tmp_path):
    """The fix printed for one's own space wrote it into the checkout's shipped table only."""
    space = tmp_path / "mine.yaml"
    builtin = Path(__file__).parents[2] / "search_spaces" / "mobilenet_small.yaml"
    space.write_text(builtin.read_text().replace("name: mobilenet_small", "name: mine"))
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nspace: mine.yaml\nobjectives: [params, latency_ms@cpu-x86]\n")
    with pytest.raises(NasConfigError) as info:
        load_experiment(path)
    assert "add it to the table with: nas profile --space " in str(info.value)
    assert (
        "; or, to leave the shipped table as it is, give the same command --out "
        "my_tables/cpu-x86-mine.json, add my_tables to the experiment's table_dirs and use "
        "latency_ms@cpu-x86-mine" in str(info.value)
    )
    # a built-in space the table lacks has only the one fix (it is the team's table to fill)
    path.write_text("name: x\nspace: nasbench201\nobjectives: [params, latency_ms@cpu-x86]\n")
    with pytest.raises(NasConfigError) as info:
        load_experiment(path)
    assert "not 'nasbench201'" in str(info.value) and "my_tables" not in str(info.value)


def test_search_only_stops_before_the_finetune_stage(tiny_experiment, tmp_path):
    # `nas search` of an experiment that has a finetune stage: search and report only
    exp = load_experiment(tiny_experiment("finetune: {epochs: 1}", n_trials=2))
    result = run_experiment(exp, tmp_path / "run", finish=False)
    assert result.final == ()
    assert not (result.run_dir / "final").exists()
    assert (result.run_dir / "pareto.csv").is_file()
    assert json.loads((result.run_dir / "manifest.json").read_text())["status"] == "finished"


def test_run_directory_of_another_study_is_refused(tiny_experiment, tmp_path):
    from nas import NasConfigError

    run = tmp_path / "run"
    run_experiment(load_experiment(tiny_experiment(n_trials=2, objectives="[params]")), run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    other = tiny_experiment(n_trials=2, objectives="[params]")
    other.write_text(other.read_text().replace("name: tiny", "name: other"))
    with pytest.raises(NasConfigError, match=r"holds the run of study 'tiny'.*not 'other'"):
        run_experiment(load_experiment(other), run)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(NasConfigError, match=r"afile: is a file"):
        run_experiment(load_experiment(other), afile)


def test_interrupted_search_is_marked_in_the_manifest(tiny_experiment, tmp_path, monkeypatch):
    import nas.pipeline

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nas.pipeline, "run_search", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(tiny_experiment(objectives="[params]")), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "interrupted"

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(nas.pipeline, "run_search", crash)
    with pytest.raises(RuntimeError):
        run_experiment(load_experiment(tiny_experiment(objectives="[params]")), tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom"

    # a rerun that stops early keeps describing the finished models already on disk
    manifest["final"] = {"selected": ["abc"], "summary": "final/summary.csv"}
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(nas.pipeline, "run_search", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(tiny_experiment(objectives="[params]")), tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["final"]["selected"] == ["abc"]


def test_a_refused_run_leaves_no_run_directory(tiny_experiment, tmp_path):
    path = tiny_experiment(n_trials=1)
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    run_experiment(load_experiment(path, [f"search.storage={db}"]), tmp_path / "first")
    other = [f"search.storage={db}", "objectives=[error, macs]"]
    with pytest.raises(NasConfigError, match="was created with objectives"):
        run_experiment(load_experiment(path, other), tmp_path / "second")
    nowhere = f"search.storage=sqlite:///{tmp_path / 'no' / 'such.db'}"
    with pytest.raises(NasConfigError, match=r"the folder .*no does not exist"):
        run_experiment(load_experiment(path, [nowhere]), tmp_path / "third")
    assert not (tmp_path / "second").exists() and not (tmp_path / "third").exists()


def test_a_changed_space_names_what_differs_and_how_to_go_on(tiny_experiment, tmp_path):
    path = tiny_experiment(n_trials=1, objectives="[params]")
    run_experiment(load_experiment(path), tmp_path / "run")
    space_file = tmp_path / "tiny.yaml"
    text = space_file.read_text()
    space_file.write_text(text + "description: now with a description\n")
    with pytest.raises(
        NasConfigError,
        match=r"searched a different version of space 'tiny_cell' \(description: was \"\", "
        r'now "now with a description"\); put the space file back to continue, or for a new '
        r"search pass another --out",
    ):
        run_experiment(load_experiment(path), tmp_path / "run")
    reordered = text.replace(
        "[none, skip_connect, nor_conv_3x3]", "[skip_connect, none, nor_conv_3x3]"
    )
    space_file.write_text(reordered)  # the key that differs, and how, not just 'cell'
    with pytest.raises(
        NasConfigError,
        match=r"\(cell.ops\[0\]: was \"none\", now \"skip_connect\"; cell.ops\[1\]: was "
        r'"skip_connect", now "none"\)',
    ):
        run_experiment(load_experiment(path), tmp_path / "run")


def test_an_interrupt_while_a_trial_is_stored_waits_for_it(tiny_experiment, tmp_path, monkeypatch):
    # Ctrl-C arriving as the first trained trial's row is written: the row and its weights
    # are kept, then the run stops
    import signal

    from nas.search._loop import _Mirror

    publish = _Mirror.publish

    def publish_then_interrupt(self, frozen):
        signal.raise_signal(signal.SIGINT)
        publish(self, frozen)

    monkeypatch.setattr(_Mirror, "publish", publish_then_interrupt)
    # Ctrl-C live, as in a terminal (a background job of a script starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(load_experiment(tiny_experiment(n_trials=3)), tmp_path / "run")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    trials = load_study(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "tiny").get_trials()
    assert len(trials) == 1 and trials[0].user_attrs["status"] == "trained"
    assert (tmp_path / "run" / trials[0].user_attrs["weights"]).is_file()


def test_run_warns_when_training_is_too_short_to_rank(tiny_experiment, tmp_path, capsys):
    from nas.cli import main

    path = tiny_experiment(n_trials=3)
    # lr 1e-7: one epoch leaves every model at its initialization, near chance
    assert (
        main(["run", str(path), "--out", str(tmp_path / "run"), "-q", "--set", "train.lr=1e-7"])
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: 3 of the 3 architectures trained this run learnt next to nothing" in err
    assert "raise train.epochs (1) or change train.lr (1e-07)" in err
    longer = ["--set", "train.epochs=5", "--set", "train.batch_size=16", "--set", "train.lr=0.05"]
    assert main(["run", str(path), "--out", str(tmp_path / "ok"), "-q", *longer]) == 0
    assert "learnt next to nothing" not in capsys.readouterr().err


def test_near_chance_is_a_tenth_of_the_way_from_chance_to_perfect():
    from nas.search._study import near_chance

    assert near_chance(10) == pytest.approx(0.19)
    assert near_chance(2) == pytest.approx(0.55)


def test_a_moved_data_file_continues_its_study_and_another_file_does_not(tmp_path):
    from sklearn.datasets import load_digits

    from tests.conftest import TINY_SPACE

    digits = load_digits()
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    for folder in ("here", "moved"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "digits.npz", x=digits.images[:300], y=digits.target[:300])
    np.savez(tmp_path / "other.npz", x=digits.images[300:600], y=digits.target[300:600])

    def experiment(data_path: str, n_trials: int) -> Path:
        path = tmp_path / "exp.yaml"
        path.write_text(
            f"""
name: tiny
space: tiny.yaml
data: {{dataset: npz, path: {data_path}, seed: 0}}
train: {{epochs: 1, batch_size: 64, lr: 0.01, seed: 0}}
objectives: [error, params]
search: {{sampler: random, n_trials: {n_trials}, seed: 0}}
"""
        )
        return path

    run_experiment(load_experiment(experiment("here/digits.npz", 1)), tmp_path / "run")
    moved = load_experiment(experiment("moved/digits.npz", 2))
    assert run_experiment(moved, tmp_path / "run").search.n_new == 1
    with pytest.raises(NasConfigError, match=r"data\.path .*digits\.npz.*other\.npz"):
        run_experiment(load_experiment(experiment("other.npz", 3)), tmp_path / "run")


def test_a_study_refuses_a_cost_model_changed_since_it_was_searched(tiny_experiment, tmp_path):
    profile = (Path(__file__).parents[2] / "latency_tables" / "edge-tpu.yaml").read_text()
    mine = tmp_path / "mydev.yaml"
    mine.write_text(profile.replace("device: edge-tpu", "device: mydev"))
    path = tiny_experiment(
        "table_dirs: [.]\n", n_trials=2, objectives="[params, latency_ms@mydev]"
    )
    run_experiment(load_experiment(path), tmp_path / "run")
    original = mine.read_text()
    assert "layer_overhead_ms:" in original
    changed = "\n".join(
        "layer_overhead_ms: 0.5" if line.startswith("layer_overhead_ms:") else line
        for line in original.splitlines()
    )
    mine.write_text(changed + "\n")
    more = load_experiment(path, ["search.n_trials=3"])
    with pytest.raises(NasConfigError, match="version of the cost model of device 'mydev'"):
        run_experiment(more, tmp_path / "run")
    mine.write_text(original)
    assert (
        run_experiment(load_experiment(path, ["search.n_trials=3"]), tmp_path / "run").search.n_new
        == 1
    )


def test_run_warns_when_no_architecture_meets_the_constraints(tiny_experiment, tmp_path, capsys):
    from nas.cli import main

    # each reachable alone (a bound nothing reaches is refused before the search), not both
    path = tiny_experiment('constraints: {params: "<= 300", macs: ">= 100000"}', n_trials=3)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "-q"]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: no architecture of the 3 trials meets the constraints (params <= 300, macs "
        ">= 100000), so there is no Pareto front; loosen them" in err
    )


def test_a_cost_constraint_no_architecture_can_meet_is_refused_before_any_trial(
    tiny_experiment, tmp_path, capsys
):
    """latency_ms@t <= 0.0001 ran every trial, trained nothing, and said so only at the end."""
    from nas.cli import main

    path = tiny_experiment('constraints: {"latency_ms@cpu": "<= 0.000001"}', n_trials=3)
    assert main(["search", str(path), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: constraints.latency_ms@cpu: no architecture of space 'tiny_cell' meets" in err
    assert "'<= 1e-06': the lowest it can reach is " in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "study.db").exists()
    # a bound the cheapest architectures meet runs as before
    lowest = float(err.split("can reach is ")[1].split(" ")[0])
    path = tiny_experiment(
        f'constraints: {{"latency_ms@cpu": "<= {lowest * 1.5:.6g}"}}', n_trials=2
    )
    assert main(["search", str(path), "--out", str(tmp_path / "run2"), "-q"]) == 0
    # and params or MACs no architecture has, as for a cost
    path = tiny_experiment('constraints: {params: "<= 10"}', n_trials=3)
    assert main(["search", str(path), "--out", str(tmp_path / "run3"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: constraints.params: no architecture of space 'tiny_cell' meets '<= 10'" in err
    assert not (tmp_path / "run3").exists()


def test_a_select_budget_no_architecture_can_meet_is_refused_before_any_trial(
    tiny_experiment, tmp_path, capsys
):
    """A budget below every architecture's cost was found only after the whole search."""
    from nas.cli import main

    budget = (
        "finetune: {epochs: 1}\ndevices: [cpu]\n"
        'select: {rule: budgets, budgets: {"latency_ms@cpu": [0.000001]}}'
    )
    path = tiny_experiment(budget, n_trials=2)
    assert main(["search", str(path), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "select.budgets.latency_ms@cpu" in err
    assert "no architecture of space 'tiny_cell' costs latency_ms@cpu <= 1e-06" in err
    assert "raise the budget" in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "study.db").exists()


def test_a_second_process_in_a_running_run_directory_is_refused(tiny_experiment, tmp_path, capsys):
    """Two searches in one folder both added trials: past n_trials, one architecture twice."""
    import fcntl

    from nas.cli import main

    path = tiny_experiment(n_trials=2)
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "w") as held:  # another process holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        assert main(["search", str(path), "--out", str(run), "-q"]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"nas: error: --out {run}: another nas process (pid 4242) is running in this "
            "folder; wait for it to end, or pass another --out (for a parallel worker on the "
            "same study: another --out with the same search.storage)\n"
        )
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    assert main(["search", str(path), "--out", str(run), "-q"]) == 0  # released: it runs


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    # nohup and a script's background jobs start with SIGINT ignored: storing a trial must not
    # make such a process interruptible
    import signal

    from nas.search._loop import interrupts_deferred

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupted_cli_run_says_how_many_trials_it_kept(
    tiny_experiment, tmp_path, monkeypatch, capsys
):
    from nas.cli import main
    from nas.search import _evaluate

    path = tiny_experiment(n_trials=5)
    real, calls = _evaluate.train_and_evaluate, []

    def third_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C while the third trial trains
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("nas.search._evaluate.train_and_evaluate", third_interrupted)
    out = str(tmp_path / "run")
    assert main(["run", str(path), "--out", out, "-q"]) == 130
    err = capsys.readouterr().err
    assert "nas: interrupted; 2 of 5 trials (2 new this run) kept: run the same command" in err
    # and how to see them without searching on: the command, run as printed, reports them
    command = shlex.split(err.split("without searching on: ")[1])
    assert command[:2] == ["nas", "pareto"] and main(command[1:]) == 0
    assert len(pd.read_csv(tmp_path / "run" / "trials.csv")) == 2
    monkeypatch.undo()
    assert main(["run", str(path), "--out", out, "-q", "--set", "search.n_trials=3"]) == 0
    assert "3 trials, 1 new this run" in capsys.readouterr().out


def test_a_study_continued_with_another_seed_records_both(tmp_path):
    """The manifest said seed 5 for a study whose first 10 trials were sampled with seed 0."""
    path = Path(__file__).resolve().parents[2] / "experiments" / "nasbench201_cost.yaml"
    run = tmp_path / "run"
    run_experiment(load_experiment(path, ["search.n_trials=10"]), run)
    # a seed that draws nothing (the study already full) is not one it was searched with
    run_experiment(load_experiment(path, ["search.n_trials=10", "search.seed=9"]), run)
    for n in (14, 16):  # the same seed twice: recorded once
        run_experiment(load_experiment(path, [f"search.n_trials={n}", "search.seed=5"]), run)
    manifest = json.loads((run / "manifest.json").read_text())
    seeds = [(s["seed"], s["from_trial"]) for s in manifest["search"]["seeds"]]
    assert seeds == [(0, 0), (5, 10)] and manifest["seeds"]["search"] == 5
    # a seed numpy and Optuna cannot take is refused before anything runs
    with pytest.raises(NasConfigError, match=r"search\.seed: expected an integer <= 4294967295"):
        load_experiment(path, ["search.seed=4294967296"])


def test_a_cost_only_study_goes_on_whatever_the_training_settings(tmp_path):
    """A cost-only study refused --set train.epochs=3 ('trials measured both ways would share
    one front'), though it trains nothing; another space was 'a different version of space
    nasbench201 ... put the space file back'."""
    path = Path(__file__).resolve().parents[2] / "experiments" / "nasbench201_cost.yaml"
    run = tmp_path / "run"
    run_experiment(load_experiment(path, ["search.n_trials=4"]), run)
    more = ["search.n_trials=6", "train.epochs=3", "train.lr=0.5"]
    assert run_experiment(load_experiment(path, more), run).search.n_trials == 6
    with pytest.raises(NasConfigError, match=r"searched space 'nasbench201', not 'fbnet'; set "):
        run_experiment(load_experiment(path, ["search.n_trials=8", "space=fbnet"]), run)
