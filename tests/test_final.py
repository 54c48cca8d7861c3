"""The stage after the search, end to end on a small digits experiment (search, select, fine-tune
with distillation, prune, sparsify, quantize, measure, export), and its CLI commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas import load_architecture
from nas.cli import main

EXPERIMENT = """
name: final_small
space: mobilenet_small
data: {dataset: digits, val_fraction: 0.2, test_fraction: 0.2, limit: 500, seed: 0}
train: {epochs: 1, batch_size: 64, lr: 0.01, threads: 1}
objectives: [error, params]
search: {sampler: random, n_trials: 6, seed: 1}
select: {rule: accuracy, k: 2}
finetune:
  epochs: 2
  threads: 1
  distill: {teacher: best, temperature: 4, weight: 0.5}
compress:
  prune: {ratio: 0.5, round_to: 8, epochs: 1}
  sparsity: 0.5
  quantize: {calibration: 64, qat: never}
  latency: {threads: 1, warmup: 2, repeats: 12, rounds: 2, spin_up_s: 0}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("final")
    exp = root / "exp.yaml"
    exp.write_text(EXPERIMENT)
    assert main(["run", str(exp), "--out", str(root / "run"), "-q"]) == 0
    return root


def test_every_variant_is_measured_and_exported(finished):
    run = finished / "run"
    summary = pd.read_csv(run / "final" / "summary.csv")
    assert set(summary["variant"]) == {
        "fp32",
        "fp32/onnx",
        "int8",
        "pruned",
        "pruned/onnx",
        "pruned+int8",
        "sparse",
    }
    n_pareto = len(pd.read_csv(run / "pareto.csv"))
    assert summary["arch_id"].nunique() == min(2, n_pareto)
    assert (summary["split"] == "test").all()
    assert summary["latency_ms"].gt(0).all() and summary["size_bytes"].gt(0).all()
    for arch_id in summary["arch_id"].unique():
        rows = summary[summary["arch_id"] == arch_id].set_index("variant")
        assert rows.loc["pruned", "params_nonzero"] < rows.loc["fp32", "params_nonzero"]
        assert rows.loc["sparse", "params_nonzero"] < 0.6 * rows.loc["fp32", "params_nonzero"]
        assert rows.loc["sparse", "size_deflated_bytes"] < rows.loc["fp32", "size_deflated_bytes"]
        folder = run / "final" / arch_id
        for name in (
            "arch.json",
            "weights.safetensors",
            "model.onnx",
            "model.pt2",
            "model_int8.onnx",
            "model_int8.json",
            "MODEL_CARD.md",
        ):
            assert (folder / name).is_file(), name
        # each file says which model and variant it is, when it travels alone
        import onnx
        from safetensors import safe_open

        for file, variant in (
            ("model.onnx", "fp32"),
            ("model_int8.onnx", "int8"),
            ("../{}-pruned/model.onnx", "pruned"),
            ("../{}-pruned/model_int8.onnx", "pruned+int8"),
            ("../{}-sparse/model.onnx", "sparse"),
        ):
            props = {
                p.key: p.value
                for p in onnx.load(str(folder / file.format(arch_id))).metadata_props
            }
            assert (props["nas.arch_id"], props["nas.variant"]) == (arch_id, variant)
            assert ("nas.pruned" in props) == ("pruned" in variant)
        with safe_open(str(folder / "weights.safetensors"), "pt") as weights:
            assert weights.metadata()["arch_id"] == arch_id
        card = (folder / "MODEL_CARD.md").read_text()
        assert "load_architecture('model_int8.json')" in card
        # the card names the fastest variant of its folder within 1 point of the best accuracy
        mine = rows[rows["file"].str.startswith(f"{arch_id}/")]
        close = mine[mine["accuracy"] >= mine["accuracy"].max() - 0.01 - 1e-12]
        fastest = Path(close.loc[close["latency_ms"].idxmin(), "file"]).name
        assert f"Deploy `{fastest}`" in card
        assert "'epoch': 1" not in card, "the training history is a table, not a dict dump"
        assert "the raw pixel values divided by 16 (to 0..1), then standardized" in card
        assert "| weights.safetensors |" in card and f"| {arch_id}/" not in card  # its folder's
        assert "1 thread, median of 12 timed calls in 2 interleaved rounds" in card
        assert "torch_threads" not in card, "the process's threads are not the timing's"
        assert "| params (nonzero) |" in card
        # how the held-out split was made, as nas.train.load_data makes it (the experiment's)
        assert (
            "Data split: digits, the first 500 of numpy.random.default_rng(0).permutation(1797) "
            "of its 1797 examples; the test split is taken first, 20% of them by scikit-learn "
            "train_test_split(numpy.arange(500), test_size=0.2, random_state=0, "
            "stratify=labels); then validation, 20% of them, from the rest (kept in their "
            "order) by scikit-learn train_test_split(numpy.arange(400), test_size=0.25, "
            "random_state=0, stratify=labels); the parts each call returns are sorted back "
            "into order, and the rest is train (300 train / 100 val / 100 test examples)." in card
        )
        split = json.loads((folder / "arch.json").read_text())["data_split"]
        assert (split["seed"], split["limit"], split["test_fraction"]) == (0, 500, 0.2)
        # each folder ships alone: its measurements.json names files inside it
        for sub in run.joinpath("final").glob(f"{arch_id}*"):
            listed = json.loads((sub / "measurements.json").read_text())["measurements"]
            assert listed and all((sub / m["file"]).is_file() for m in listed), sub
            assert all("/" not in m["file"] for m in listed)
        pruned_card = (run / "final" / f"{arch_id}-pruned" / "MODEL_CARD.md").read_text()
        assert "then fine-tuned 1 epoch" in pruned_card and "1 epochs" not in pruned_card
        assert "Structurally pruned (asked 50% of its channels; removed " in pruned_card
        sparse_card = (run / "final" / f"{arch_id}-sparse" / "MODEL_CARD.md").read_text()
        assert "model_int8" not in sparse_card, "only files the folder holds are offered"
        assert "Only `weights.safetensors` (sparse, torch-eager) was timed" in sparse_card
        assert "The others, on this machine" not in sparse_card
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["final"]["selected"] == list(summary["arch_id"].unique())
    # each card names its own trial and its teacher (the first selected member taught the rest)
    trials = pd.read_csv(run / "trials.csv").drop_duplicates("arch_id").set_index("arch_id")
    for i, arch_id in enumerate(manifest["final"]["selected"]):
        card = (run / "final" / arch_id / "MODEL_CARD.md").read_text()
        assert f"- trial: {trials.loc[arch_id, 'number']}\n" in card and "- trials:" not in card
        teacher = card.split("- teacher: ")[1].splitlines()[0]
        selected = manifest["final"]["selected"]
        if len(selected) == 1:
            assert teacher == "none: 'best' is this model itself, the only one chosen"
        else:
            assert teacher.startswith("none: the most accurate" if i == 0 else selected[0])
        # a pruned model starts from, and (when fine-tunes distill) learns from, its parent
        pruned_card = (run / "final" / f"{arch_id}-pruned" / "MODEL_CARD.md").read_text()
        assert f"- started_from: {arch_id}, fine-tuned, then pruned ({arch_id}'s own " in (
            pruned_card
        )
        taught = f"{arch_id}, the model it was pruned from"
        alone = "none: its fine-tune after it was pruned did not distill"
        assert f"- teacher: {taught if i > 0 else alone}\n" in pruned_card
    assert (run / "pareto_final.png").stat().st_size > 0


def test_pruned_and_int8_variants_load_in_a_fresh_process(finished):
    run = finished / "run" / "final"
    pruned = next(p for p in run.iterdir() if p.name.endswith("-pruned"))
    doc = json.loads((pruned / "arch.json").read_text())
    assert doc["pruned"], "pruned widths live in arch.json"
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_architecture(pruned / "arch.json")(x)
        expected_int8 = load_architecture(pruned / "model_int8.json")(x)
    code = (
        "import sys, torch, nas; x = torch.randn(3, 1, 8, 8, generator=torch.Generator()"
        ".manual_seed(0));"
        "a = nas.load_architecture(sys.argv[1])(x); b = nas.load_architecture(sys.argv[2])(x);"
        "torch.save({'a': a.detach(), 'b': b}, sys.argv[3])"
    )
    out = finished / "fresh.pt"
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(pruned / "arch.json"),
            str(pruned / "model_int8.json"),
            str(out),
        ],
        check=True,
    )
    got = torch.load(out, weights_only=True)
    assert torch.equal(got["a"], expected) and torch.equal(got["b"], expected_int8)


def test_deploy_folders_hold_no_run_bookkeeping(finished):
    final = finished / "run" / "final"
    for folder in final.iterdir():
        if folder.is_dir() and folder.name != "checkpoints":
            assert not any(p.is_dir() for p in folder.iterdir()), folder
            assert (final / "checkpoints" / folder.name).is_dir()  # its fine-tune's checkpoint


def test_rerun_keeps_finished_models_as_they_are(finished, capsys):
    run = finished / "run"
    before = pd.read_csv(run / "final" / "summary.csv")
    first = before["arch_id"].iloc[0]
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "finetune" not in err  # no epoch ran again
    assert f"{first}: finished by an earlier run with the same settings, kept" in err
    # nothing re-measured: the latencies are the first run's, not a second timing
    pd.testing.assert_frame_equal(before, pd.read_csv(run / "final" / "summary.csv"))


def test_a_copied_run_keeps_its_finished_models(finished, capsys, tmp_path):
    """A run folder copied (or moved) whole redid every finished model: its study's storage
    path, recorded as where the model came from, was compared as one of its settings."""
    run = tmp_path / "elsewhere" / "run"
    shutil.copytree(finished / "run", run)
    before = pd.read_csv(run / "final" / "summary.csv")
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    for arch_id in before["arch_id"].unique():
        assert f"{arch_id}: finished by an earlier run with the same settings, kept" in err
    assert "exporting" not in err and "measuring" not in err
    pd.testing.assert_frame_equal(before, pd.read_csv(run / "final" / "summary.csv"))


def test_rerun_redoes_a_model_whose_files_are_gone(finished, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    before = pd.read_csv(run / "final" / "summary.csv")
    first = before["arch_id"].iloc[0]
    kept = json.loads((run / "final" / "checkpoints" / first / "finished.json").read_text())
    (run / "final" / first / "model_int8.onnx").unlink()
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"{first}: finished by an earlier run" not in err
    redone = json.loads((run / "final" / "checkpoints" / first / "finished.json").read_text())
    # the same settings; where it came from is the copy's study now
    assert redone["settings"]["origin"].pop("storage") == f"sqlite:///{run / 'study.db'}"
    kept["settings"]["origin"].pop("storage")
    assert redone["settings"] == kept["settings"]
    assert " epoch 1/" not in err  # its fine-tunes' checkpoints were finished: no epoch ran
    assert f"finetune {first}: all 2 epochs done by an earlier run, not training again" in err
    for line in (  # one line per stage, so a long finish is never silent
        f"{first}: exporting FP32 (safetensors, ONNX, torch.export)",
        f"{first}: quantizing to INT8 (pt2e, 64 calibration images)",
        f"{first}-pruned: pruning 50% of channels (Torch-Pruning)",
        f"{first}-sparse: magnitude pruning to 50% sparsity",
        f"{first}: measuring 7 variants (accuracy on test, size, latency at batch 1)",
    ):
        assert line in err
    assert (run / "final" / first / "model_int8.onnx").is_file()
    after = pd.read_csv(run / "final" / "summary.csv")
    cols = ["arch_id", "variant", "accuracy", "params_nonzero", "size_bytes"]
    pd.testing.assert_frame_equal(before[cols], after[cols])


def test_an_interrupted_finish_leaves_no_half_written_folder(finished, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    first = pd.read_csv(run / "final" / "summary.csv")["arch_id"].iloc[0]
    shutil.rmtree(run / "final" / first)  # to be redone
    pruned_card = (run / "final" / f"{first}-pruned" / "MODEL_CARD.md").read_text()

    def interrupted(*args, **kwargs):  # Ctrl-C after the files are written, before measuring
        raise KeyboardInterrupt

    monkeypatch.setattr("nas.final._finish._measure", interrupted)
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run), "-q"]) == 130
    assert not (run / "final" / first).exists()  # built aside, never moved in half-done
    # the earlier, finished pruned folder stays whole until its replacement is finished
    assert (run / "final" / f"{first}-pruned" / "MODEL_CARD.md").read_text() == pruned_card
    monkeypatch.undo()
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run), "-q"]) == 0
    assert (run / "final" / first / "MODEL_CARD.md").is_file()
    assert {p.name for p in (run / "final" / "checkpoints" / first).iterdir()} == {
        "checkpoint.pt",
        "finished.json",
        "inputs.json",
    }


def test_an_interrupted_run_lists_the_models_it_finished(finished, tmp_path, monkeypatch, capsys):
    """Ctrl-C during the second model left no summary.csv though the first was complete."""
    import nas.final

    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    before = pd.read_csv(run / "final" / "summary.csv")
    (run / "final" / "summary.csv").unlink()
    ids = list(pd.read_csv(run / "trials.csv").drop_duplicates("arch_id")["arch_id"][:2])
    real = nas.final.finish_architecture
    started = []

    def interrupted_second(run_dir, space, arch, *args, **kwargs):
        started.append(arch.arch_id)
        if len(started) == 2:  # Ctrl-C as the second model starts fine-tuning
            raise KeyboardInterrupt
        return real(run_dir, space, arch, *args, **kwargs)

    monkeypatch.setattr("nas.final._members.finish_architecture", interrupted_second)
    args = ["run", str(finished / "exp.yaml"), "--out", str(run), "-q", "--set"]
    args += ["select.rule=ids", "--set", f"select.ids=['{ids[0]}', '{ids[1]}']"]
    capsys.readouterr()
    assert main(args) == 130
    assert sorted(started) == sorted(ids)
    assert (  # in numbers
        "nas: interrupted; the search's 6 trials and 1 finished model kept: run the same "
        "command to continue" in capsys.readouterr().err
    )
    summary = pd.read_csv(run / "final" / "summary.csv")
    assert list(summary["arch_id"].unique()) == started[:1]
    assert set(summary["variant"]) == set(before["variant"])
    assert all((run / "final" / f).is_file() for f in summary["file"])  # relative to final/


def test_an_interrupted_redo_keeps_listing_the_models_it_had_not_reached(
    finished, tmp_path, monkeypatch
):
    """A rerun with other settings, stopped as it began redoing the second model, wrote a
    summary.csv without that model, though its earlier finished folders were all still there."""
    import nas.final

    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    ids = list(pd.read_csv(run / "trials.csv").drop_duplicates("arch_id")["arch_id"][:2])
    args = ["run", str(finished / "exp.yaml"), "--out", str(run), "-q"]
    for key in ("select.rule=ids", f"select.ids={ids}", "compress.prune=null"):
        args += ["--set", key]
    assert main([*args, "--set", "compress.sparsity=null"]) == 0
    before = pd.read_csv(run / "final" / "summary.csv")
    real = nas.final.finish_architecture
    started = []

    def interrupted_second(run_dir, space, arch, *args, **kwargs):
        started.append(arch.arch_id)
        if len(started) == 2:
            raise KeyboardInterrupt
        return real(run_dir, space, arch, *args, **kwargs)

    monkeypatch.setattr("nas.final._members.finish_architecture", interrupted_second)
    args += ["--set", "compress.sparsity=null", "--set", "compress.latency.repeats=10"]
    assert main(args) == 130  # other settings: the first is re-measured, the second not reached
    summary = pd.read_csv(run / "final" / "summary.csv")
    assert sorted(summary["arch_id"].unique()) == sorted(before["arch_id"].unique())
    redone, waiting = summary["arch_id"] == started[0], summary["arch_id"] == started[1]
    assert redone.sum() == (before["arch_id"] == started[0]).sum()
    # the model not reached yet: its earlier rows as they were, its files still there
    pd.testing.assert_frame_equal(
        summary[waiting].reset_index(drop=True),
        before[before["arch_id"] == started[1]].reset_index(drop=True),
    )
    assert all((run / "final" / f).is_file() for f in summary["file"])


def test_nas_train_into_one_folder_lists_every_model_trained_there(finished, tmp_path):
    """A second nas train into the same --out dropped the first model from summary.csv."""
    from nas.export import read_architecture_file, write_architecture_file

    first = next((finished / "run" / "architectures").glob("*.json"))
    space, arch, doc = read_architecture_file(first)
    other = next(a for a in space.random_distinct(4, rng=0) if a.arch_id != arch.arch_id)
    second = write_architecture_file(
        tmp_path / "other.json", space, other, extra={"preprocess": doc["preprocess"]}
    )
    archs = [first, second]
    out = tmp_path / "trained"
    args = ["--experiment", str(finished / "exp.yaml"), "--out", str(out), "-q"]
    args += ["--set", "compress=null", "--set", "finetune.distill=null"]
    args += ["--set", "finetune.epochs=1"]
    for arch in [*archs, archs[0]]:  # the first again, with other settings: replaced in place
        assert main(["train", str(arch), *args]) == 0
        args[-1] = "finetune.epochs=2"
    summary = pd.read_csv(out / "final" / "summary.csv")
    ids = [json.loads(a.read_text())["arch_id"] for a in archs]
    counts = summary["arch_id"].value_counts()
    assert set(counts.index) == set(ids) and counts.nunique() == 1  # none listed twice
    assert list(summary["arch_id"].unique()) == ids  # the latest (the first, again) first
    record = json.loads((out / "final" / "checkpoints" / ids[0] / "finished.json").read_text())
    assert record["settings"]["finetune"]["epochs"] == 2
    assert all((out / "final" / f).is_file() for f in summary["file"])


def _zero_fraction(folder: Path) -> float:
    weights = [p for p in load_architecture(folder / "arch.json").parameters() if p.ndim > 1]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_changed_compress_settings_redo_those_variants(finished, capsys, tmp_path):
    """The README's 'other settings redo it': a new sparsity or prune ratio redoes those
    variants (never resuming the old ones' checkpoints under the new label), and keeps the
    float model's finished fine-tune."""
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    first = pd.read_csv(run / "final" / "summary.csv")["arch_id"].iloc[0]
    sparse_before = _zero_fraction(run / "final" / f"{first}-sparse")
    pruned_before = load_architecture(run / "final" / f"{first}-pruned" / "arch.json")
    changed = ["--set", "compress.sparsity=0.8", "--set", "compress.prune.ratio=0.25"]
    changed += ["--set", "compress.sparse_epochs=2"]
    assert main(["run", str(finished / "exp.yaml"), "--out", str(run), *changed]) == 0
    err = capsys.readouterr().err
    assert f"finetune {first}: all 2 epochs done by an earlier run, not training again" in err
    assert f"finetune {first}-pruned epoch 1/1" in err
    assert f"finetune {first}-sparse epoch 2/2" in err  # sparse_epochs, not 2 // 3 -> 1
    assert sparse_before < 0.6 < 0.75 < _zero_fraction(run / "final" / f"{first}-sparse")
    pruned = load_architecture(run / "final" / f"{first}-pruned" / "arch.json")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(pruned) > count(pruned_before)  # a quarter of the channels cut, not a half
    card = (run / "final" / f"{first}-sparse" / "MODEL_CARD.md").read_text()
    assert "magnitude pruning of 80% of the weights" in card and "fine-tuned 2 epochs" in card
    card = (run / "final" / f"{first}-pruned" / "MODEL_CARD.md").read_text()
    assert "asked 25% of channels; removed" in card and "fine-tuned 1 epoch" in card


def test_nas_export_writes_a_trial_folder(finished, capsys):
    out = finished / "exported"
    storage = f"sqlite:///{finished / 'run' / 'study.db'}"
    assert (
        main(
            [
                "export",
                "--storage",
                storage,
                "--study",
                "final_small",
                "--trial",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    model = load_architecture(out / "arch.json")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert (out / "model.onnx").is_file() and (out / "MODEL_CARD.md").is_file()
    card = (out / "MODEL_CARD.md").read_text()
    assert "model_int8" not in card and "Which file to deploy" not in card  # nothing measured
    # the search's standardization travels with the export, as it does with finished models
    finished_doc = json.loads(next((finished / "run" / "final").glob("*/arch.json")).read_text())
    doc = json.loads((out / "arch.json").read_text())
    assert doc["preprocess"] == finished_doc["preprocess"]
    assert f"mean {finished_doc['preprocess']['mean']}" in card
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["nas.preprocess"]) == doc["preprocess"]  # the ONNX file alone says
    assert all(
        json.loads(p.read_text())["preprocess"] == doc["preprocess"]
        for p in (finished / "run" / "architectures").glob("*.json")
    )
    assert main(["export", "--storage", storage, "--study", "final_small", "--trial", "99"]) == 2
    assert "has trials 0..5" in capsys.readouterr().err
    # again into the same folder: fine; another trial into it, or into a finished model's: no
    args = ["export", "--storage", storage, "--study", "final_small", "--out"]
    assert main([*args, str(out), "--trial", "0"]) == 0
    capsys.readouterr()
    final = next(p for p in (finished / "run" / "final").iterdir() if (p / "arch.json").is_file())
    before = sorted((p.name, p.stat().st_mtime_ns) for p in final.iterdir())
    for folder in (out, final):
        assert main([*args, str(folder), "--trial", "1"]) == 2
        assert "is not empty and holds no earlier export of this trial" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in final.iterdir()) == before


def test_export_reads_the_weights_of_the_run_folder_it_is_given(finished, tmp_path, capsys):
    """A moved run exported its trials untrained (seeded weights, exit 0), and a copied run
    exported the original's weights: the study records the folder it was made in."""
    import shutil

    copy = tmp_path / "copied-run"
    shutil.copytree(finished / "run", copy)
    storage = f"sqlite:///{copy / 'study.db'}"
    args = ["export", "--storage", storage, "--study", "final_small", "--trial", "0", "--out"]
    assert main([*args, str(tmp_path / "ok")]) == 0
    exported = json.loads((tmp_path / "ok" / "arch.json").read_text())
    assert exported["weights_trained"] is True
    # which images its weights saw, as a finished model's arch.json says (nas train checks it)
    summary = pd.read_csv(finished / "run" / "final" / "summary.csv")
    finished_doc = json.loads(
        (finished / "run" / "final" / summary["arch_id"].iloc[0] / "arch.json").read_text()
    )
    assert exported["data_split"] == finished_doc["data_split"]
    assert (
        "proxy accuracy on the validation split" in (tmp_path / "ok" / "MODEL_CARD.md").read_text()
    )
    for weights in (copy / "weights").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])  # the copy's, not the original's
    capsys.readouterr()
    assert main([*args, str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "trial 0's weights do not load" in err and str(copy) in err
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))


def test_nas_train_finishes_one_arch_json(finished):
    arch = next((finished / "run" / "architectures").glob("*.json"))
    out = finished / "train"
    code = main(
        [
            "train",
            str(arch),
            "--experiment",
            str(finished / "exp.yaml"),
            "--out",
            str(out),
            "-q",
            "--set",
            "compress.prune=null",
            "--set",
            "compress.sparsity=null",
            "--set",
            "finetune.distill=null",
            "--set",
            "compress.quantize.tool=onnxruntime",
        ]
    )
    assert code == 0
    summary = pd.read_csv(out / "final" / "summary.csv").set_index("variant")
    assert set(summary.index) == {"fp32", "fp32/onnx", "int8"}
    # quantized by ONNX Runtime's quantizer, measured, and loadable like any int8 variant
    folder = out / "final" / json.loads(arch.read_text())["arch_id"]
    doc = json.loads((folder / "model_int8.json").read_text())
    assert doc["quantization"] == "ptq (onnxruntime)"
    assert summary.loc["int8", "accuracy"] >= summary.loc["fp32", "accuracy"] - 0.05
    int8 = load_architecture(folder / "model_int8.json")
    assert int8(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # where it came from travels on: the input's trial, the experiment wherever run from
    origin = json.loads((folder / "arch.json").read_text())["origin"]
    assert origin["parent"] == {"trial": json.loads(arch.read_text())["metrics"]["trial"]}
    assert origin["experiment"] == str((finished / "exp.yaml").resolve())
    assert Path(origin["experiment"]).is_absolute() and origin["arch_json"] == str(arch.resolve())
    card = (folder / "MODEL_CARD.md").read_text()
    weights = json.loads(arch.read_text())["weights"]
    assert f"- started_from: the weights of the input, {weights} beside {arch.resolve()}\n" in card


def test_nas_train_on_a_pruned_arch_json_keeps_its_widths(finished):
    pruned = next(p for p in (finished / "run" / "final").iterdir() if p.name.endswith("-pruned"))
    arch_id = pruned.name.removesuffix("-pruned")
    given = json.loads((pruned / "arch.json").read_text())
    out = finished / "train_pruned"
    args = ["train", str(pruned / "arch.json"), "--experiment", str(finished / "exp.yaml")]
    args += ["--out", str(out), "-q", "--set", "compress.prune.ratio=0.3", "--set"]
    args += ["finetune.distill=null"]
    assert main(args) == 0
    final = out / "final"
    # named, labelled and described as what they hold: the pruned model and its variants
    assert {p.name for p in final.iterdir() if (p / "arch.json").is_file()} == {
        f"{arch_id}-pruned",
        f"{arch_id}-pruned-pruned",
        f"{arch_id}-pruned-sparse",
    }
    summary = pd.read_csv(final / "summary.csv")
    assert set(summary["variant"]) == {
        "pruned",
        "pruned/onnx",
        "pruned+int8",
        "pruned-pruned",
        "pruned-pruned/onnx",
        "pruned-pruned+int8",
        "pruned-sparse",
    }
    assert all((final / f).is_file() for f in summary["file"])
    import onnx

    for variant, file in zip(summary["variant"], summary["file"], strict=True):
        if file.endswith(".onnx"):  # each file names its variant as summary.csv does
            props = {p.key: p.value for p in onnx.load(str(final / file)).metadata_props}
            assert props["nas.variant"] == variant.removesuffix("/onnx")
    folder = final / f"{arch_id}-pruned"
    model = load_architecture(folder / "arch.json")  # pruned widths travel with the weights
    unpruned = load_architecture(finished / "run" / "final" / arch_id / "arch.json")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) < count(unpruned)
    for sub in final.glob(f"{arch_id}-*"):  # every output loads (the sparse one's widths too)
        x = torch.zeros(1, 1, 8, 8)
        assert load_architecture(sub / "arch.json")(x).shape == (1, 10)
        if (sub / "model_int8.json").is_file():
            assert load_architecture(sub / "model_int8.json")(x).shape == (1, 10)
    doc = json.loads((folder / "arch.json").read_text())
    assert doc["pruning"] == given["pruning"]  # the input's record is kept
    assert doc["origin"]["parent"] == given["origin"]  # and where it came from
    card = (folder / "MODEL_CARD.md").read_text()
    share = count(model) / count(unpruned)
    assert (
        f"Structurally pruned (asked 50% of its channels; removed "
        f"{1 - count(model) / given['pruning']['params_parent']:.0%} of its parameters, "
        f"{given['pruning']['params_parent']:,} -> {count(model):,}): {count(model):,} params, "
        f"{share:.1%} of the {count(unpruned):,} of the unpruned architecture above." in card
    )
    again = json.loads((final / f"{arch_id}-pruned-pruned" / "arch.json").read_text())
    assert again["pruning"]["ratio"] == 0.3
    assert again["pruning"]["parent_pruning"] == given["pruning"]
    twice = load_architecture(final / f"{arch_id}-pruned-pruned" / "arch.json")
    assert again["pruning"]["params_ratio"] == round(count(twice) / count(unpruned), 6) < share
    card = (final / f"{arch_id}-pruned-pruned" / "MODEL_CARD.md").read_text()
    assert (
        f"structured pruning (Torch-Pruning, widths rounded to multiples of 8) of "
        f"{arch_id}-pruned: asked 30% of channels; removed "
        f"{1 - count(twice) / count(model):.0%} of parameters, {count(model):,} -> "
        f"{count(twice):,}, itself already pruned (50% of its channels), so the ratios "
        f"compound: {count(twice):,} params" in card
    )
    assert (
        "Structurally pruned 2 times (50%, then 30% of the remaining channels: the ratios "
        f"compound): {count(twice):,} params" in card
    )


def test_compress_without_finetune_is_a_one_line_error(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: x\nspace: mobilenet_small\nobjectives: [params]\ncompress: {}\n")
    assert main(["run", str(exp), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "compress" in err and "add a 'finetune:' section" in err
    assert not (tmp_path / "run").exists()


def test_set_finetune_null_drops_the_stage_after_the_search(tmp_path):
    from nas.search import load_experiment

    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: x\nspace: mobilenet_small\nobjectives: [params]\nselect: {rule: knee, k: 2}\n"
        "finetune: {epochs: 3}\ncompress: {sparsity: 0.5}\n"
    )
    loaded = load_experiment(exp, ["finetune=null"])
    assert (loaded.select, loaded.finetune, loaded.compress) == (None, None, None)


def test_a_teacher_for_other_data_is_refused_before_training(finished, tmp_path, capsys):
    from safetensors.torch import save_file

    from nas.export import write_architecture_file
    from nas.space import load_space

    space = load_space("nasbench201")  # 3x32x32 images, not 1x8x8 digits
    arch = space.random(0)
    weights = tmp_path / "teacher.safetensors"
    save_file(space.build(arch, seed=0).state_dict(), str(weights))
    teacher = write_architecture_file(tmp_path / "teacher.json", space, arch, weights=weights)
    student = next((finished / "run" / "architectures").glob("*.json"))
    args = ["train", str(student), "--experiment", str(finished / "exp.yaml"), "-q"]
    args += ["--out", str(tmp_path / "out"), "--set", f"finetune.distill.teacher={teacher}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "finetune.distill.teacher: " in err and "takes input (3, 32, 32) with 10 classes" in err
    assert "but the data is (1, 8, 8) with 10 classes" in err
    assert not (tmp_path / "out" / "final").exists()


def test_nas_train_refuses_an_out_that_is_a_file_before_training(finished, tmp_path, capsys):
    """It fine-tuned an epoch, then crashed with NotADirectoryError and a traceback."""
    (tmp_path / "phone.csv").write_text("arch,latency_ms\n")
    student = next((finished / "run" / "architectures").glob("*.json"))
    args = ["train", str(student), "--experiment", str(finished / "exp.yaml"), "-q"]
    assert main([*args, "--out", str(tmp_path / "phone.csv")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"nas: error: --out {tmp_path / 'phone.csv'}: exists and is not a folder; "
        "choose another --out\n"
    )
    assert (tmp_path / "phone.csv").read_text() == "arch,latency_ms\n"


def test_nas_train_on_an_int8_file_names_the_float_model_beside_it(finished, tmp_path, capsys):
    first = pd.read_csv(finished / "run" / "final" / "summary.csv")["arch_id"].iloc[0]
    int8 = finished / "run" / "final" / first / "model_int8.json"
    args = ["train", str(int8), "--experiment", str(finished / "exp.yaml")]
    assert main([*args, "--out", str(tmp_path / "t"), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: {int8}: an INT8 variant (an ONNX Runtime graph) cannot be fine-tuned; name "
        f"the float model's arch.json ({int8.parent / 'arch.json'}), whose INT8 twin nas train "
        "then makes\n"
    )
    assert not (tmp_path / "t").exists()


def test_nas_train_refuses_a_split_whose_test_images_it_was_trained_on(finished, tmp_path, capsys):
    """With --set data.seed=1 it fine-tuned and reported 'test' accuracy on a split of whose
    test images 231 of 360 were training images of its weights."""
    first = pd.read_csv(finished / "run" / "final" / "summary.csv")["arch_id"].iloc[0]
    trained = finished / "run" / "final" / first / "arch.json"
    seed = json.loads(trained.read_text())["data_split"]["seed"]
    args = ["train", str(trained), "--experiment", str(finished / "exp.yaml"), "-q"]
    assert main([*args, "--set", f"data.seed={seed + 1}", "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: {trained}: its weights were trained on another split of digits (seed "
        f"{seed}) than this run makes (seed {seed + 1} from --set 'data.seed={seed + 1}'): some "
        "of this split's test images are images it was trained on, and its test accuracy "
        f"would be inflated; split as it was: --set data.seed={seed}\n"
    )
    assert not (tmp_path / "t").exists()


def test_nas_train_refuses_a_sparse_input_and_an_out_holding_its_input(finished, tmp_path, capsys):
    """A -sparse/arch.json was fine-tuned dense and written as the plain model's folder; an
    --out holding the input replaced the input's own weights and card."""
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    first = pd.read_csv(run / "final" / "summary.csv")["arch_id"].iloc[0]
    exp = ["--experiment", str(finished / "exp.yaml"), "-q"]
    sparse = run / "final" / f"{first}-sparse" / "arch.json"
    assert main(["train", str(sparse), *exp, "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.startswith(
        f"nas: error: {sparse}: a sparse variant (50% of its weights zero): fine-tuning it "
        f"would fill its zeros in (nas train keeps no mask); name the dense model's arch.json "
        f"({run / 'final' / first / 'arch.json'}), whose sparse twin"
    )
    dense = run / "final" / first / "arch.json"
    before = (dense.parent / "weights.safetensors").read_bytes()
    assert main(["train", str(dense), *exp, "--out", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"nas: error: --out {run}: {dense} lies in {run / 'final'}, where nas train writes "
        "the models it trains: it would replace its own input (weights, card and rows of "
        "final/summary.csv); choose another --out\n"
    )
    assert (dense.parent / "weights.safetensors").read_bytes() == before
    assert not (tmp_path / "t").exists()


def test_cards_say_what_a_prune_removed_and_how_int8_was_made(finished):
    run = finished / "run"
    first = pd.read_csv(run / "final" / "summary.csv")["arch_id"].iloc[0]
    card = (run / "final" / f"{first}-pruned" / "MODEL_CARD.md").read_text()
    record = json.loads((run / "final" / f"{first}-pruned" / "arch.json").read_text())["pruning"]
    removed = 1 - record["params"] / record["params_parent"]
    said = f"asked 50% of its channels; removed {removed:.0%} of its parameters, "
    assert said + f"{record['params_parent']:,} -> {record['params']:,}" in card
    card = (run / "final" / first / "MODEL_CARD.md").read_text()
    assert "INT8 (model_int8.onnx): post-training quantization (PTQ) with PyTorch PT2E" in card
    assert "calibrated on 64 training images" in card
    recipe = json.loads((run / "final" / first / "model_int8.json").read_text())
    assert recipe["quantization_recipe"]["calibration_images"] == 64


def test_changing_only_select_keeps_the_teacher_and_names_unlisted_folders(
    finished, capsys, caplog, tmp_path
):
    """Dropping a student re-fine-tuned its teacher: the record compared its role's words."""
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    # the run's finished model, as accurate as any trial (so the teacher again: kept as it is),
    # and the least accurate trial as its student: one model to finish here, not two
    done = list(pd.read_csv(run / "final" / "summary.csv")["arch_id"].unique())
    trials = pd.read_csv(run / "trials.csv").sort_values("error", kind="stable")
    assert trials.set_index("arch_id")["error"][done[0]].min() == trials["error"].min()
    ids = [done[0], trials["arch_id"].iloc[-1]]
    exp = str(finished / "exp.yaml")
    args = ["run", exp, "--out", str(run), "-q", "--set", "select.rule=ids", "--set"]
    assert main([*args, f"select.ids=['{ids[0]}', '{ids[1]}']"]) == 0
    order = list(pd.read_csv(run / "final" / "summary.csv")["arch_id"].unique())  # teacher first
    capsys.readouterr()
    caplog.clear()
    args = [*args[:-1], "--set", f"select.ids=['{order[0]}']"]
    assert main([a for a in args if a != "-q"]) == 0
    err = capsys.readouterr().err
    assert f"{order[0]}: finished by an earlier run with the same settings, kept" in err
    assert "finetune" not in err
    warned = [r.getMessage() for r in caplog.records if "not listed in summary.csv" in r.message]
    assert len(warned) == 1 and "are from an earlier run" in warned[0]
    assert all(f"{order[1]}{v}" in warned[0] for v in ("", "-pruned", "-sparse"))
    assert f"{order[0]}," not in warned[0]
    assert (run / "final" / order[1]).is_dir()  # kept, not deleted

    # a prune that removes nothing stops with one line; the float model's fine-tune is kept
    assert main([*args, "--set", "compress.prune.round_to=999"]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("nas: error: ") and "Traceback" not in err
    # (located at the --set that asked for it, not at the file, which did not)
    assert "--set 'compress.prune.round_to=999': compress.prune.round_to: " in line
    assert "removed nothing" in line
    assert (run / "final" / "checkpoints" / order[0] / "checkpoint.pt").is_file()

    # a fine-tune that explodes stops with one line naming the keys to change
    assert main([*args, "--set", "finetune.lr=1e4", "--set", "finetune.warmup_epochs=0"]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "--set 'finetune.lr=1e4': finetune.lr: " in line
    assert "diverged" in line and "finetune.warmup_epochs" in line
    assert (run / "final" / order[0] / "MODEL_CARD.md").is_file()  # finished work kept
    # its changed settings dropped the old checkpoint, and it diverged before writing one:
    # nothing of it is left to resume (the new settings' record went too; the finished one stays)
    state = run / "final" / "checkpoints" / order[0]
    assert not (state / "checkpoint.pt").exists() and not (state / "inputs.json").exists()


def test_a_fine_tune_that_stopped_before_its_first_checkpoint_leaves_no_folders(tmp_path):
    from nas.final._state import forget_unstarted, fresh_checkpoint, state_dir

    base = tmp_path / "out" / "final"
    state = fresh_checkpoint(state_dir(base, "a"), {"lr": 1e9}, "a")
    assert state.is_dir()
    forget_unstarted(state)
    assert not base.exists() and (tmp_path / "out").is_dir()  # --out is the command's to drop
    state = fresh_checkpoint(state_dir(base, "a"), {"lr": 1.0}, "a")
    (state / "checkpoint.pt").write_bytes(b"x")  # an epoch was saved: the same command resumes
    forget_unstarted(state)
    assert (state / "checkpoint.pt").is_file() and (state / "inputs.json").is_file()


def test_a_near_chance_variant_is_warned_of(caplog):
    from nas.compress import Measurement
    from nas.final._finish import _warn_near_chance

    row = dict(runtime="torch-eager", split="test", latency_ms=1.0, latency_ms_iqr=0.1)
    row |= dict(size_bytes=1, size_deflated_bytes=1, params_nonzero=1, file="a/w")
    measured = [
        Measurement(variant="sparse", accuracy=0.09, **row),
        Measurement(variant="fp32", accuracy=0.9, **row),
    ]
    _warn_near_chance(measured, 10, "0123456789ab")
    assert "0123456789ab sparse (torch-eager): test accuracy 0.090 is near chance" in caplog.text
    assert "lower compress.sparsity" in caplog.text and "fp32" not in caplog.text


def test_nas_train_refuses_finetune_null(finished, capsys):
    """--set finetune=null fine-tuned 30 epochs with built-in defaults and skipped compress."""
    arch = next((finished / "run" / "architectures").glob("*.json"))
    exp = str(finished / "exp.yaml")
    assert main(["train", str(arch), "--experiment", exp, "--set", "finetune=null"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: --set finetune=null: nas train fine-tunes") and (
        err.count("\n") == 1
    )


def test_a_teacher_file_is_compared_by_what_it_is_not_where_it_lies(tmp_path):
    """A teacher file moved (with its run) restarted every student's fine-tune and redid it."""
    from nas.final._state import comparable, fresh_checkpoint
    from nas.train._finetune import CHECKPOINT_NAME

    teacher = {"path": "/a/arch.json", "arch_id": "0123456789ab", "weights_sha256": "f00"}
    moved = teacher | {"path": "/b/arch.json"}
    retrained = teacher | {"weights_sha256": "ba5"}
    settings = {"arch": {}, "origin": {"storage": "sqlite:////a/study.db", "teacher": teacher}}
    elsewhere = {"arch": {}, "origin": {"storage": "sqlite:////b/study.db", "teacher": moved}}
    assert comparable(settings) == comparable(elsewhere)
    assert comparable(settings) != comparable(settings | {"origin": {"teacher": retrained}})

    state = tmp_path / "state"
    fresh_checkpoint(state, {"arch": {}, "teacher": teacher}, "m")
    (state / CHECKPOINT_NAME).write_bytes(b"epochs")
    fresh_checkpoint(state, {"arch": {}, "teacher": moved}, "m")  # the same teacher
    assert (state / CHECKPOINT_NAME).is_file()
    fresh_checkpoint(state, {"arch": {}, "teacher": retrained}, "m")  # another one
    assert not (state / CHECKPOINT_NAME).exists()
