"""The command line as a user meets it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import build_parser, main


def test_spaces_lists_builtins_with_sizes(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "nasbench201" in out and "15,625" in out and "fbnet" in out


def test_show_string_and_file(capsys, tmp_path):
    arch = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    assert main(["show", "--space", "nasbench201", arch, "--json"]) == 0
    out = capsys.readouterr().out
    assert "1,531,546" in out  # NAS-Bench-201's own count for this cell (1.531546 M)
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["space"] == "nasbench201"
    # an export folder, as --help says (it was refused: 'is not an arch.json file')
    from nas.export import write_architecture_file
    from nas.space import load_space

    space = load_space("nasbench201")
    (tmp_path / "export").mkdir()
    write_architecture_file(tmp_path / "export" / "arch.json", space, space.parse(arch))
    assert main(["show", str(tmp_path / "export")]) == 0
    assert "1,531,546" in capsys.readouterr().out
    assert main(["show", "--space", "nasbench201", ""]) == 2
    assert capsys.readouterr().err.startswith(
        "nas: error: expected an architecture string of space nasbench201, got an empty string"
    )


def test_sample_prints_parseable_strings(capsys):
    assert main(["sample", "--space", "fbnet", "-n", "3", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(len(line.split()) == 22 for line in lines)
    assert main(["sample", "--space", "fbnet", "--seed", "-1"]) == 2
    assert "--seed: expected an integer >= 0" in capsys.readouterr().err
    # distinct architectures (a calibration refuses one measured twice), never more than exist
    for n in (300, 9000):  # distinct draws; most of the space: a shuffle of it
        assert main(["sample", "--space", "nasbench201", "-n", str(n)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == len(set(lines)) == n
    assert main(["sample", "--space", "nasbench201", "-n", "15626"]) == 2
    assert "space 'nasbench201' has only 15,625 architectures" in capsys.readouterr().err


def test_output_piped_into_head_ends_quietly():
    shell = f"{sys.executable} -m nas sample --space fbnet -n 20000 | head -1"
    run = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert len(run.stdout.split()) == 22 and run.stderr == ""


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["show", "--space", "nasbench201", "|bad~0|"], "expected 3"),
        (["show", "--space", "nasbnch201", "x"], "did you mean 'nasbench201'"),
        (["show", "missing.json"], "file not found"),
        (["sample", "--space", ""], "expected a search space (a built-in name: "),
        (["sample", "--space", "{tmp}"], "is a folder; name a space's YAML file in it"),
        (["show", "--space", "mobilenet_small", "nope.json"], "names a file (and does not exist)"),
        (["pareto", "--storage", "sqlite:///{tmp}/none.db", "--study", "x"], "no such file"),
        (["export", "--storage", "{tmp}/none.db", "--study", "x", "--trial", "0"], "sqlite:///"),
        (["validate-table", "--space", "fbnet", "--table", "cpu", "--n", "0"], ">= 2, got '0'"),
        (["sample", "--space", "fbnet", "-n", "x"], "argument -n: expected an integer"),
        (["frob"], "COMMAND: unknown 'frob' (one of: run, search, "),
        (["rn"], "COMMAND: unknown 'rn' (did you mean 'run'? one of: run, search, "),
        (["profile", "--space", "fbnet", "--dtype", "int4"], "(did you mean 'int8'?)"),
        (
            ["sample", "--space", "fbnet", "--nn", "3"],
            "--nn 3 (did you mean -n?); see nas sample ",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, args, pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: ") and pattern in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # reading a study never creates its file


@pytest.mark.parametrize("command", ["pareto", "export"])
def test_reading_a_study_never_writes_into_a_database_it_does_not_hold(capsys, tmp_path, command):
    import sqlite3

    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.write_bytes(b"")
    with sqlite3.connect(other) as db:  # another program's database
        db.execute("CREATE TABLE notes (text)")
    db.close()
    before = other.read_bytes()
    extra = ["--trial", "0"] if command == "export" else []
    for path in (empty, other):
        args = [command, "--storage", f"sqlite:///{path}", "--study", "x", *extra]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        assert "holds no Optuna studies" in capsys.readouterr().err
    assert empty.read_bytes() == b"" and other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "other.db"]


def test_cost_never_writes_over_its_architecture_list(tmp_path, capsys):
    archs = tmp_path / "archs.txt"
    archs.write_text("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    args = ["cost", "--space", "nasbench201", "--table", "cpu", "--archs", str(archs)]
    assert main([*args, "--out", str(archs)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert archs.read_text().startswith("|nor_conv_3x3~0|")
    archs.write_text("# nothing yet\n\n")
    assert main(args) == 0
    assert "holds no architectures" in capsys.readouterr().err


def test_cost_and_validate_never_write_over_their_table_or_space(tmp_path, capsys):
    """``--out`` naming the table's rows or JSON, an analytic profile or the space file is
    refused before any work, and the file is left as it was."""
    import shutil

    from nas.cost import builtin_table_dir

    for suffix in (".json", ".csv"):
        shutil.copy(builtin_table_dir() / f"cpu-x86{suffix}", tmp_path / f"cpu-x86{suffix}")
    space = tmp_path / "my.yaml"
    space.write_text(
        (Path("search_spaces") / "mobilenet_small.yaml")
        .read_text()
        .replace("name: mobilenet_small", "name: my_small")
    )
    archs = tmp_path / "archs.txt"
    archs.write_text("")
    table = str(tmp_path / "cpu-x86.json")
    for out in ("cpu-x86.csv", "cpu-x86.json"):
        before = (tmp_path / out).read_bytes()
        cost = ["cost", "--space", "mobilenet_small", "--table", table, "--archs", str(archs)]
        validate = ["validate-table", "--space", "mobilenet_small", "--table", table, "-n", "2"]
        for argv in (cost, validate):
            assert main([*argv, "--out", str(tmp_path / out)]) == 2
            assert f"is the input file {tmp_path / out}" in capsys.readouterr().err
        assert (tmp_path / out).read_bytes() == before
    cost = ["cost", "--space", str(space), "--table", "edge-tpu", "--archs", str(archs)]
    assert main([*cost, "--out", str(space)]) == 2
    assert f"is the input file {space}" in capsys.readouterr().err
    assert main([*cost, "--out", str(builtin_table_dir() / "edge-tpu.yaml")]) == 2
    assert "edge-tpu.yaml, which writing would replace" in capsys.readouterr().err


def test_cost_reads_the_arch_column_of_the_csvs_the_tool_writes(tmp_path, capsys):
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    archs = tmp_path / "archs.txt"
    archs.write_text(arch + "\n")
    first = tmp_path / "costs.csv"
    args = ["cost", "--space", "nasbench201", "--table", "cpu"]
    assert main([*args, "--archs", str(archs), "--out", str(first)]) == 0
    again = tmp_path / "again.csv"  # its own output, as pareto.csv and trials.csv are read
    assert main([*args, "--archs", str(first), "--out", str(again)]) == 0
    assert again.read_text() == first.read_text()
    trials = tmp_path / "trials.csv"
    trials.write_text(f"number,arch,train\n0,{arch},\"{{'a': 1, 'b': 2}}\"\n1,nope,\n")
    assert main([*args, "--archs", str(trials)]) == 2
    assert f"{trials}:3: space 'nasbench201'" in capsys.readouterr().err  # the file's own line
    help_csv = tmp_path / "fbnet_archs.csv"  # HELP's CSVs name the column arch_str
    help_csv.write_text(f"arch_str,x\n{arch},1\n")
    assert main([*args, "--archs", str(help_csv)]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: {help_csv}:1: a CSV header without an 'arch' column (found arch_str); "
        "rename the architecture column to 'arch'\n"
    )
    summary = tmp_path / "summary.csv"  # final/summary.csv names models by arch_id alone
    summary.write_text("arch_id,variant\n4c43ceb3c718,fp32\n")
    assert main([*args, "--archs", str(summary)]) == 2
    err = capsys.readouterr().err
    assert "'arch_id' names architectures by id" in err and "rename" not in err


def test_files_of_another_kind_are_named_for_what_they_are(tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"space": {"name": "x"}, "study_name": "s"}')
    assert main(["show", str(manifest)]) == 2
    assert "not an architecture file (it has no 'choices')" in capsys.readouterr().err
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "mobilenet_small.yaml"
    archs = tmp_path / "a.txt"
    archs.write_text("")
    assert (
        main(["cost", "--space", "nasbench201", "--table", str(space), "--archs", str(archs)]) == 2
    )
    assert "a search space file, not a cost model" in capsys.readouterr().err
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: x\nsearch:\n\tn_trials: 3\n")
    assert main(["run", str(exp)]) == 2
    assert "exp.yaml:3: not valid YAML" in (err := capsys.readouterr().err) and "tabs" in err


def test_bad_experiment_leaves_no_run_directory(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: x\nspace: mobilenet_small\nobjectives: [error]\n"
        "data: {dataset: mnist, root: nowhere}\n"
    )
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nas", "run", str(exp), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("nas: error: " + str(exp))
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists()


def test_devices_lists_tables_and_analytic_profiles(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cpu-x86" in out and "table (latency measured, energy estimated)" in out
    assert "mobilenet_small" in out
    assert "edge-tpu" in out and "analytic" in out


def test_devices_lists_a_users_table_folder(tmp_path, capsys):
    profile = (Path(__file__).parents[1] / "latency_tables" / "edge-tpu.yaml").read_text()
    (tmp_path / "my-npu.yaml").write_text(profile.replace("device: edge-tpu", "device: my-npu"))
    (tmp_path / "broken.json").write_text("{}")
    assert main(["devices", "--table-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["my-npu", "analytic"] for line in lines)
    broken = next(line for line in lines if line.startswith("broken"))
    assert "unreadable" in broken and "broken.json" in broken  # listed, and the others still are
    assert any(line.startswith("cpu-x86") for line in lines)
    assert main(["devices", "--table-dir", str(tmp_path / "nope")]) == 2


def test_an_interrupt_says_whether_the_command_resumes(monkeypatch, capsys):
    import nas.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(nas.cli, "cmd_sample", interrupted)
    assert main(["sample", "--space", "mobilenet_small"]) == 130
    assert "keeps no partial work: run it again" in capsys.readouterr().err
    monkeypatch.setattr(nas.cli, "cmd_run", interrupted)
    assert main(["run", "experiments/quickstart.yaml"]) == 130
    assert "what was finished before it is kept: run the same" in capsys.readouterr().err


def test_sigterm_cleans_up_as_an_interrupt_does(monkeypatch, capsys):
    import signal
    import time

    import nas.cli

    def killed(args):  # a scheduler's kill while the command works
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(nas.cli, "cmd_run", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "experiments/quickstart.yaml"]) == 143
    assert "nas: terminated; what was finished before it is kept" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # the handler lives only while main runs


def test_a_signal_landing_in_a_weakref_callback_still_stops_the_command(monkeypatch, capsys):
    """A SIGTERM that arrived while torch ran a weakref callback was printed as 'Exception
    ignored in ...' and dropped: the profile ran on for two more minutes."""
    import gc
    import signal
    import time
    import weakref

    import nas.cli

    class Tensorish:
        pass

    def killed(args):
        obj = Tensorish()
        # the signal arrives inside the callback, whose exception Python drops
        ref = weakref.ref(obj, lambda _: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.1)))
        del obj
        gc.collect()
        assert ref() is None
        time.sleep(5)  # delivered again after the callback: it ends before this
        return 0  # the SIGTERM was lost in the callback

    monkeypatch.setattr(nas.cli, "cmd_run", killed)
    hook = sys.unraisablehook
    assert main(["run", "experiments/quickstart.yaml"]) == 143
    err = capsys.readouterr().err
    assert "nas: terminated; what was finished before it is kept" in err
    assert "Exception ignored" not in err
    assert sys.unraisablehook is hook


def test_files_that_are_not_what_a_command_takes_say_what_it_takes(tmp_path, capsys):
    """nas train on weights advised 'name an arch.json (or model_int8.json)', and then refused
    the INT8 file; a path to a file that is no cost model was an 'unknown device' with the
    example './/tmp/...json'."""
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"\0" * 16)
    assert main(["train", str(weights), "--experiment", "experiments/quickstart.yaml"]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: {weights}: nas train takes a float model's arch.json "
        f"({tmp_path / 'arch.json'}, which names its weights), not its weights or a compiled "
        "graph\n"
    )
    onnx = tmp_path / "model.onnx"
    args = ["cost", "--space", "nasbench201", "--archs", "-", "--table", str(onnx)]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"nas: error: {onnx}: not a cost model: name a ")


def test_an_out_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["bench", "nasbench201", "--out", str(tmp_path / "file" / "x")]) == 2
    assert "is not a folder; choose another --out" in capsys.readouterr().err


def test_an_out_file_that_cannot_be_written_is_refused_before_any_work(capsys, tmp_path):
    archs = tmp_path / "archs.txt"
    archs.write_text("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    (tmp_path / "a_file").write_text("x")
    cost = ["cost", "--space", "nasbench201", "--table", "cpu", "--archs", str(archs), "--out"]
    for out, says in (
        (tmp_path, "is a folder; name a file in it, e.g. --out"),
        (tmp_path / "a_file" / "c.csv", "a_file is a file, not a folder"),
        (Path("/proc/c.csv"), "cannot write in /proc"),
    ):
        assert main([*cost, str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"nas: error: --out {out}: ") and says in err, err
        assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "archs.txt"]


def test_a_table_out_that_is_a_folder_is_refused_not_written_beside_it(capsys, tmp_path):
    """--out tables/ once wrote tables.json and tables.csv next to the folder."""
    (tmp_path / "tables").mkdir()
    csv = tmp_path / "m.csv"
    csv.write_text("arch,latency_ms\n")
    calibrate = ["calibrate", "--space", "nasbench201", "--measurements", str(csv)]
    assert main([*calibrate, "--out", str(tmp_path / "tables")]) == 2
    err = capsys.readouterr().err
    assert "tables: is a folder; name a file in it, e.g. --out " in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "tables"]


def test_calibrate_and_import_do_not_replace_a_table_of_another_kind(capsys, tmp_path):
    from nas.space import load_space

    space = load_space("nasbench201")
    csv = tmp_path / "m.csv"
    rows = [f"{space.format(space.random(i))},{1 + 0.1 * i}" for i in range(5)]
    csv.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    table = tmp_path / "mydev.json"
    table.write_text(json.dumps({"device": "mydev", "value_kinds": {"latency": "measured"}}))
    calibrate = ["calibrate", "--space", "nasbench201", "--measurements", str(csv)]
    assert main([*calibrate, "--out", str(table)]) == 2
    err = capsys.readouterr().err
    assert "holds a table of measured latencies for device 'mydev'; the calibrated table" in err
    assert "pass --force to replace it" in err
    assert json.loads(table.read_text())["value_kinds"]["latency"] == "measured"  # untouched
    assert main([*calibrate, "--out", str(table), "--force"]) == 0
    assert main([*calibrate, "--out", str(table)]) == 0  # a calibrated table: recalibrate it
    capsys.readouterr()
    # a decimal comma splits a row into more fields than the header names
    csv.write_text("arch,latency_ms\n" + f"{space.format(space.random(0))},17,5\n")
    assert main([*calibrate, "--out", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err
    assert f"{csv}:2: 3 fields but the header names 2; a decimal comma?" in err
    assert "warning" not in err


def test_version_and_every_command_describes_itself(capsys):
    from nas import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"nas {__version__}\n"
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in action.choices.items():
        assert command.description and command.description.endswith("."), name


def test_spaces_checks_and_lists_the_space_files_it_is_given(capsys, tmp_path):
    from nas.space import builtin_space_dir

    good = builtin_space_dir() / "fbnet.yaml"
    assert main(["spaces", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith(f"fbnet ({good})")
    (tmp_path / "bad.yaml").write_text("name: x\ntype: chain\n")
    assert main(["spaces", str(tmp_path / "bad.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"nas: error: {tmp_path / 'bad.yaml'}:1: missing required key 'input'\n"
    )


def test_a_runs_architecture_file_gives_the_space_as_the_run_adapted_it(tmp_path, capsys):
    from nas.export import write_architecture_file
    from nas.space import load_space, space_from_dict

    spec = load_space("nasbench201").to_dict()
    spec["input"], spec["num_classes"] = [1, 8, 8], 10  # what a run on digits makes of it
    adapted = space_from_dict(spec)
    arch = adapted.random(0)
    path = write_architecture_file(tmp_path / "a.json", adapted, arch)
    assert load_space(str(path)).hash == adapted.hash != load_space("nasbench201").hash
    assert main(["show", adapted.format(arch), "--space", str(path)]) == 0
    assert arch.arch_id in capsys.readouterr().out  # the id the run's files use
    (tmp_path / "b.json").write_text("{}")
    assert main(["sample", "--space", str(tmp_path / "b.json")]) == 2
    assert "no 'space_spec' key: not an architecture file" in capsys.readouterr().err


def test_a_study_past_n_trials_says_that_nothing_was_searched(tmp_path, capsys):
    """`--set search.n_trials=40` on a study of 60 trials ran nothing, and said only '0 new'."""
    exp = str(Path(__file__).resolve().parents[1] / "experiments" / "nasbench201_cost.yaml")
    args = ["search", exp, "--out", str(tmp_path / "run"), "-q", "--set"]
    assert main([*args, "search.n_trials=12"]) == 0
    assert "nothing was searched" not in capsys.readouterr().err
    assert main([*args, "search.n_trials=12"]) == 0  # the study complete: nothing to say
    assert "nothing was searched" not in capsys.readouterr().err
    assert main([*args, "search.n_trials=5"]) == 0
    assert (
        "the study already held 12 trials, more than search.n_trials (5), so nothing was "
        "searched; raise search.n_trials to search on" in capsys.readouterr().err
    )


def test_an_interrupt_during_a_fine_tune_says_the_epochs_its_checkpoint_keeps():
    """Stopped at epoch 3 of 10 (checkpointed), it said '0 finished models kept' and the rerun
    then resumed after epoch 3."""
    from nas.cli._run import _Tuning

    tuning = _Tuning()
    for epoch, saved in ((1, True), (2, True), (3, True), (4, False)):
        tuning.update(
            "finetune_epoch", {"model": "abc-pruned", "epoch": epoch, "epochs": 10, "saved": saved}
        )
    assert tuning.said() == ", and abc-pruned's fine-tuning up to epoch 3/10"
    tuning.update("final_stage", {"model": "abc-pruned", "stage": "exporting"})
    assert tuning.said().endswith("epoch 3/10")  # its own next stage: still its checkpoint
    tuning.update("final_done", {"model": "abc", "variants": 7})
    assert tuning.said() == ""  # that model finished
    tuning.update("finetune_epoch", {"model": "d", "epoch": 5, "epochs": 5, "saved": True})
    # every epoch done, the model being compressed: its fine-tune is kept (it said nothing)
    assert tuning.said() == ", and d's finished fine-tuning (5 epochs)"


def test_configs_made_in_python_name_a_field_of_the_wrong_type():
    """PruneConfig(ratio="0.3") and the like failed later with "TypeError: '<' not supported
    between instances of 'float' and 'str'"; LatencyConfig raised a plain ValueError."""
    import numpy as np

    from nas import NasConfigError
    from nas.compress import CompressConfig, PruneConfig
    from nas.compress._measure import LatencyConfig
    from nas.search._experiment import SearchConfig
    from nas.train import DataConfig, FinetuneConfig, TrainConfig

    for make, message in (
        (lambda: PruneConfig(ratio="0.3"), r"^PruneConfig\.ratio: expected float, got '0\.3'"),
        (lambda: DataConfig("digits", val_fraction="0.2"), r"^DataConfig\.val_fraction: "),
        (lambda: TrainConfig(epochs=True), r"^TrainConfig\.epochs: expected int, got True"),
        (lambda: SearchConfig(seed=None), r"^SearchConfig\.seed: expected int, got None"),
        (lambda: FinetuneConfig(threads="2"), r"^FinetuneConfig\.threads: expected int or None"),
        (lambda: CompressConfig(sparsity="half"), r"^CompressConfig\.sparsity: expected float or"),
        (lambda: LatencyConfig(threads=0), r"^`threads, repeats, rounds >= 1`"),
    ):
        with pytest.raises(NasConfigError, match=message):
            make()
    # numbers of numpy's are numbers
    assert TrainConfig(epochs=np.int64(3), lr=np.float32(0.5)).epochs == 3
