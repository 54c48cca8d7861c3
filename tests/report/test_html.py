"""Contracts of report.html and of which figures a report writes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from nas._errors import NasConfigError
from nas.pipeline import run_experiment
from nas.report import save_figure, write_html_report
from nas.search import load_experiment, load_study, write_report
from nas.search._pareto import normalization_for, pareto_mask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = ["error", "latency_ms@cpu-x86"]
DIRECTIONS = ["minimize", "minimize"]
EVIL = "<script>alert(1)</script> a&b"


def _trials(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "number": np.arange(n),
            "status": "trained",
            "arch_id": [f"id{i:02d}" for i in range(n)],
            "error": rng.uniform(0.05, 0.4, n),
            "latency_ms@cpu-x86": rng.uniform(1.0, 30.0, n),
            "arch": [f"stage1: mbconv<k3> & e{i}" for i in range(n)],
        }
    )
    frame.loc[0, "arch"] = EVIL
    frame.loc[0, ["error", "latency_ms@cpu-x86"]] = [0.01, 0.5]  # best in both: on the front
    frame["feasible"] = True
    frame["pareto"] = pareto_mask(frame[OBJECTIVES].to_numpy(), DIRECTIONS)
    return frame


def _run_dir(tmp_path: Path, trials: pd.DataFrame) -> Path:
    run = tmp_path / "run"
    (run / "architectures").mkdir(parents=True)
    for arch_id in trials.loc[trials["pareto"], "arch_id"]:
        (run / "architectures" / f"{arch_id}.json").write_text("{}")
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    save_figure(fig, run / "pareto.png")
    save_figure(fig, run / "pareto_final.png")
    trials.to_csv(run / "trials.csv", index=False)
    return run


def _images(page: str) -> list[bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [base64.b64decode(data) for data in found]


def test_html_is_self_contained_linked_and_escaped(tmp_path):
    trials = _trials()
    run = _run_dir(tmp_path, trials)
    values = trials[OBJECTIVES].to_numpy()
    norm = normalization_for(values, DIRECTIONS)
    reference = {"objectives": OBJECTIVES, **norm.to_dict()}
    path = write_html_report(
        run,
        trials,
        OBJECTIVES,
        DIRECTIONS,
        study_name="s<1>",
        hypervolume=0.75,
        reference=reference,
    )
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: no external resource of any kind, every image inlined as PNG
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    images = _images(page)
    assert len(images) == 2 and all(img[:8] == PNG_MAGIC for img in images)
    assert page.count("<img ") == 2
    # the summary: study, counts, hypervolume and its reference point, directions, provenance
    n_pareto = int(trials["pareto"].sum())
    assert "<title>NAS report: s&lt;1&gt;</title>" in page
    assert f"<tr><th>Pareto members</th><td>{n_pareto}</td></tr>" in page
    assert "<tr><th>trials</th><td>12</td></tr>" in page
    assert "0.7500" in page and "reference point (1.1, 1.1)" in page
    assert "minimize \u2193" in page and "predicted (cost model)" in page
    assert "latency_ms@cpu-x86 (predicted) \u2193</th>" in page
    # every Pareto member links to its architecture file (relative), and only those
    links = re.findall(r'href="architectures/([^"]+)\.json"', page)
    assert sorted(links) == sorted(trials.loc[trials["pareto"], "arch_id"])
    assert '<a href="trials.csv">' in page and "pareto.csv" not in page  # only existing files
    # arch strings are escaped, never markup
    assert EVIL not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a&amp;b" in page
    assert "mbconv<k3>" not in page
    assert "Finished models" not in page  # no final/summary.csv yet


def test_html_lists_finished_models_with_model_cards(tmp_path):
    trials = _trials()
    run = _run_dir(tmp_path, trials)
    final = run / "final"
    for folder in ("id00", "id00-pruned"):
        (final / folder).mkdir(parents=True)
        (final / folder / "MODEL_CARD.md").write_text("# card\n")
    pd.DataFrame(
        {
            "arch_id": ["id00", "id00", "id00"],
            "variant": ["fp32", "int8", "pruned"],
            "runtime": ["torch-eager", "onnxruntime", "torch-eager"],
            "accuracy": [0.95, 0.94, 0.93],
            "split": ["test"] * 3,
            "latency_ms": [1.5, 0.7, 1.1],
            "latency_ms_iqr": [0.1, 0.05, 0.1],
            "size_bytes": [120_000, 40_000, 80_000],
            "size_deflated_bytes": [110_000, 30_000, 70_000],
            "params_nonzero": [30_000, 30_000, 20_000],
            "file": ["id00/weights.safetensors", "id00/model_int8.onnx", "gone/model.onnx"],
        }
    ).to_csv(final / "summary.csv", index=False)
    page = write_html_report(run, trials, OBJECTIVES, DIRECTIONS, study_name="s").read_text(
        encoding="utf-8"
    )
    assert "Finished models (measured)" in page
    assert page.count('href="final/id00/MODEL_CARD.md"') == 2
    assert '<a href="final/summary.csv">' in page
    assert "latency_ms (measured, p50, batch 1)" in page and "120,000" in page
    assert "hypervolume</th><td>none" in page  # no reference given


def test_html_rejects_mismatched_inputs(tmp_path):
    trials = _trials()
    with pytest.raises(NasConfigError, match="1 directions for 2 objectives"):
        write_html_report(tmp_path, trials, OBJECTIVES, ["minimize"], study_name="s")
    with pytest.raises(NasConfigError, match="no column 'latency'"):
        write_html_report(tmp_path, trials, ["error", "latency"], DIRECTIONS, study_name="s")


def _cost_only_run(tmp_path: Path, name: str, objectives: str) -> Path:
    """A search that trains nothing (cost models only): a few seconds."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nspace: fbnet\nobjectives: {objectives}\n"
        "search: {sampler: random, n_trials: 8, seed: 0}\n"
    )
    return run_experiment(load_experiment(path), tmp_path / name).run_dir


@pytest.mark.parametrize(
    ("objectives", "devices", "parallel"),
    [
        ("[params, macs, latency_ms@cpu, energy_mj@gpu]", True, True),
        ("[params, latency_ms@cpu, energy_mj@gpu]", True, False),
        ("[params, macs, latency_ms@cpu]", False, False),
    ],
)
def test_report_writes_device_and_parallel_figures_only_when_they_apply(
    tmp_path, objectives, devices, parallel
):
    run = _cost_only_run(tmp_path, "rep", objectives)
    assert (run / "pareto_devices.png").is_file() == devices
    assert (run / "parallel.png").is_file() == parallel
    page = (run / "report.html").read_text(encoding="utf-8")
    assert ('id="pareto_devices.png"' in page) == devices
    assert ('id="parallel.png"' in page) == parallel
    assert len(_images(page)) == 2 + devices + parallel  # + pareto.png, hypervolume.png
    pareto = pd.read_csv(run / "pareto.csv")
    for arch_id in pareto["arch_id"]:
        assert f'href="architectures/{arch_id}.json"' in page
        assert (run / "architectures" / f"{arch_id}.json").is_file()


def test_report_elsewhere_drops_stale_figures(tmp_path):
    """``nas pareto --out`` into a folder holding another study's report leaves no stale figure."""
    four = _cost_only_run(tmp_path, "four", "[params, macs, latency_ms@cpu, energy_mj@gpu]")
    three = _cost_only_run(tmp_path, "three", "[params, macs, latency_ms@cpu]")
    study = load_study(f"sqlite:///{three / 'study.db'}", "three")
    report = write_report(study, four)
    assert not (four / "parallel.png").exists() and not (four / "pareto_devices.png").exists()
    page = (four / "report.html").read_text(encoding="utf-8")
    assert "NAS report: three" in page and f"<td>{report.n_pareto}</td>" in page


def test_report_states_the_constraints_and_where_each_devices_costs_come_from(tmp_path):
    """A constraint that made 13 of 15 trials infeasible appeared nowhere in report.html, and
    energy estimated as 10 W x latency read only 'predicted (cost model)'."""
    import html

    path = tmp_path / "c.yaml"
    path.write_text(
        "name: c\nspace: mobilenet_small\nobjectives: [params, energy_mj@cpu-x86]\n"
        "devices: [cpu-x86, ethos-u55]\nconstraints: {latency_ms@ethos-u55: '<= 0.3'}\n"
        "search: {sampler: random, n_trials: 8, seed: 0}\n"
    )
    run = run_experiment(load_experiment(path), tmp_path / "c").run_dir
    text = html.unescape(re.sub(r"<[^>]+>", " ", (run / "report.html").read_text()))
    text = re.sub(r"\s+", " ", text)
    broke = int(
        (pd.read_csv(run / "trials.csv")["constraint[latency_ms@ethos-u55 <= 0.3]"] > 0).sum()
    )
    assert f"constraints latency_ms@ethos-u55 <= 0.3 (trials that break one: {broke} of 8" in text
    assert "cpu-x86 lookup table (" in text
    assert (
        "latency measured, energy estimated (power x latency) at 10 W (latency_tables/cpu" in text
    )
    assert "ethos-u55 analytic profile, latency and energy estimated from its constants" in text
