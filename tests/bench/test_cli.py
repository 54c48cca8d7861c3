"""``nas bench`` end to end: the files it writes, and one-line errors that leave nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from nas.cli import main


def test_bench_writes_results(data_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "nasbench201", "--dataset", "cifar100", "--data", str(data_dir)]
    argv += ["--objectives", "error,latency_ms@pixel3,energy_mj@pi5", "--budget", "26"]
    argv += ["--seeds", "2", "--sampler", "random", "--baselines", "optuna-nsga2,random"]
    assert main([*argv, "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "objectives normalized by the whole space's range, reference point 1.1" in printed
    assert {p.name for p in out.iterdir()} == {
        "evaluations.csv",
        "runs.csv",
        "summary.csv",
        "gap.png",
        "settings.json",
    }
    evals = pd.read_csv(out / "evaluations.csv")
    assert list(evals.columns) == [
        "method",
        "seed",
        "eval",
        "arch",
        "error",
        "latency_ms@pixel3",
        "energy_mj@pi5",
        "hv_gap",
    ]
    assert len(evals) == 2 * 2 * 26  # random listed twice runs once
    assert evals.groupby(["method", "seed"])["arch"].nunique().eq(26).all()
    assert evals["eval"].min() == 1 and evals["eval"].max() == 26
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == ["random", "optuna-nsga2"]
    assert {"hv_gap_mean", "hv_gap_std", "igd_mean", "fraction_found_mean"} <= set(summary)
    assert summary["hv_gap_at_25_mean"].notna().all()
    assert summary["hv_gap_at_50_mean"].isna().all()  # budget 26 < 50
    assert (out / "gap.png").read_bytes()[:4] == b"\x89PNG"
    # a run with other settings never replaces these results; the same settings rerun
    before = (out / "summary.csv").read_bytes()
    other = [a if a != "26" else "27" for a in argv]
    assert main([*other, "--out", str(out), "-q"]) == 2
    assert "holds the results of another benchmark run (budget)" in capsys.readouterr().err
    assert (out / "summary.csv").read_bytes() == before
    assert main([*argv, "--out", str(out), "-q"]) == 0
    # nor does it write into a folder of other files (a search's run folder took them)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trials.csv").write_text("number\n")
    assert main([*argv, "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "holds other files, not a benchmark's results" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["trials.csv"]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--objectives", "error,latency_ms@pixl3"], "did you mean 'pixel3'"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--baselines", "optuna-tp"], "did you mean 'optuna-tpe'"),
        (["--budget", "0"], "argument --budget: expected an integer >= 1, got '0'"),
    ],
)
def test_bench_bad_input_is_one_line_and_exit_2(data_dir, tmp_path, capsys, extra, pattern):
    out = tmp_path / "bench"
    argv = ["bench", "nasbench201", "--data", str(data_dir), "--sampler", "random"]
    assert main([*argv, "--out", str(out), "--seeds", "1", "--budget", "5", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: ") and pattern in err
    assert not out.exists()
