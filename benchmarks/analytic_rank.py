"""How well analytic cost models rank NAS-Bench-201 cells by measured latency.

For all 15,625 NB201 cells (``nas.load_space("nasbench201")``) this computes MACs (the FLOPs
proxy), parameters and the predicted latency of every analytic device profile in
``latency_tables/``, then reports Spearman's rho and Kendall's tau of each predictor against the
measured/estimated latencies of the HELP dataset (``../shared/data/help-latency``): the
HW-NAS-Bench columns ``eyeriss``, ``fpga``, ``pixel3``, ``raspi4`` and the mean over all 27
device columns. Nothing is fitted to these targets: every constant comes from a profile's cited
sources. An ablation shows what each modelling rule of the Eyeriss profile contributes, and where
``../shared/data/hw-nas-bench-nb201-sample`` is present the profiles are also checked against
the 77 measured Coral Edge TPU latencies in it. The same predictors are then checked on the
5,000 FBNet architectures of HELP (``fbnet_latency_ms.csv``, MBConv blocks at 32x32, the
built-in ``fbnet`` space), where a model is mostly 1x1 convolutions with many weights.

    python benchmarks/analytic_rank.py [--stride 8] [--all-devices] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402

from nas import load_space  # noqa: E402
from nas.cost import AnalyticDevice, CostModel, builtin_table_dir, load_cost_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HELP_CSV = DATA / "help-latency" / "nasbench201_latency_ms.csv"
FBNET_ARCHS_CSV = DATA / "help-latency" / "fbnet_archs.csv"
FBNET_CSV = DATA / "help-latency" / "fbnet_latency_ms.csv"
EDGE_SAMPLE_CSV = DATA / "hw-nas-bench-nb201-sample" / "nas201_cifar10_rows0-102.csv"
TARGETS = ("eyeriss", "fpga", "pixel3", "raspi4")


def analytic_devices() -> list[str]:
    """Names of the built-in device files of ``kind: analytic`` (lookup tables are skipped)."""
    names = []
    for path in sorted(builtin_table_dir().glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "analytic":
            names.append(path.stem)
    return names


def eyeriss_ablations(eyeriss: AnalyticDevice) -> dict[str, AnalyticDevice]:
    """The Eyeriss profile with one modelling rule switched back to the plain roofline each."""
    replace = dataclasses.replace
    return {
        "eyeriss (profile as shipped)": eyeriss,
        "pooling as depthwise work": replace(eyeriss, pool_on_mac_array="depthwise"),
        "pooling costs memory only": replace(eyeriss, pool_on_mac_array="none"),
        "spill: all (no partial spill)": replace(eyeriss, spill="all", weights_on_chip=False),
        "identity/zero edges not free": replace(eyeriss, free_identity=False),
        # not a rule but the datasheet's off-chip bandwidth: how much of the error it causes
        "off-chip bandwidth x1000 (memory never binds)": replace(
            eyeriss, memory_bandwidth_bytes_per_s=eyeriss.memory_bandwidth_bytes_per_s * 1000
        ),
        "all three rules off (plain roofline)": replace(
            eyeriss, pool_on_mac_array="none", spill="all", free_identity=False
        ),
    }


def predict(
    arch_strs: Sequence[str], models: dict[str, CostModel], space_name: str = "nasbench201"
) -> pd.DataFrame:
    """MACs, params and ``latency_ms@<name>`` of every model, one row per architecture.

    Each architecture's layers are computed once and shared by every predictor.
    """
    space = load_space(space_name)
    rows: dict[str, list[float]] = {"macs": [], "params": []}
    rows.update({f"latency_ms@{name}": [] for name in models})
    for text in arch_strs:
        layers = space.layers(space.parse(text))
        rows["macs"].append(sum(layer.macs for layer in layers))
        rows["params"].append(sum(layer.params for layer in layers))
        for name, model in models.items():
            rows[f"latency_ms@{name}"].append(model.estimate(layers).latency_ms)
    return pd.DataFrame(rows)


def correlations(
    preds: pd.DataFrame, measured: pd.DataFrame, columns: Sequence[str], method: str
) -> pd.DataFrame:
    """Rank correlation of every predictor (rows) with every measured column (columns)."""
    fn = stats.spearmanr if method == "spearman" else stats.kendalltau
    return pd.DataFrame(
        {col: [fn(preds[p], measured[col])[0] for p in preds.columns] for col in columns},
        index=preds.columns,
    )


def markdown(table: pd.DataFrame, first: str = "predictor") -> str:
    head = f"| {first} | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    body = [
        f"| {idx} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for idx, row in table.iterrows()
    ]
    return "\n".join([head, rule, *body])


def fbnet_section(
    models: dict[str, CostModel],
    ablation_models: dict[str, CostModel],
    main_cols: list[str],
    stride: int,
) -> str:
    """The same predictors on HELP's FBNet architectures (HW-NAS-Bench's FBNet latencies)."""
    archs = pd.read_csv(FBNET_ARCHS_CSV).iloc[::stride].reset_index(drop=True)
    measured = pd.read_csv(FBNET_CSV).iloc[::stride].reset_index(drop=True)
    if not archs["index"].equals(measured["index"]):
        raise SystemExit(f"{FBNET_ARCHS_CSV} and {FBNET_CSV} list different architectures")
    start = time.perf_counter()
    preds = predict(archs["arch_str"], {**models, **ablation_models}, "fbnet")
    seconds = time.perf_counter() - start
    table = correlations(preds[main_cols], measured, [*TARGETS], "spearman")
    abl_cols = [f"latency_ms@{n}" for n in ablation_models]
    ablation = correlations(preds[abl_cols], measured, ["eyeriss"], "spearman")
    ablation.index = list(ablation_models)
    ablation.columns = ["Spearman vs eyeriss (FBNet)"]
    return (
        f"**FBNet space** ({len(archs):,} architectures of HELP's `fbnet_latency_ms.csv`, the "
        f"built-in `fbnet` space at 32x32; {seconds:.1f} s; Spearman's rho; `eyeriss`, `fpga` "
        "are HW-NAS-Bench's estimates, `pixel3`, `raspi4` measured)\n\n"
        + markdown(table)
        + "\n\nEyeriss profile ablation on FBNet:\n\n"
        + markdown(ablation, "variant")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="use every N-th cell (default 1)")
    parser.add_argument("--all-devices", action="store_true", help="table of all 27 columns")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.stride < 1:
        parser.error(f"--stride must be >= 1, got {args.stride}")
    if not HELP_CSV.is_file():
        print(
            f"skipped: {HELP_CSV} is absent (external benchmark data, see "
            f"../shared/data/INDEX.md)",
            file=sys.stderr,
        )
        return

    measured = pd.read_csv(HELP_CSV).iloc[:: args.stride].reset_index(drop=True)
    devices = [c for c in measured.columns if c not in ("index", "arch_str")]
    models: dict[str, CostModel] = {name: load_cost_model(name) for name in analytic_devices()}
    ablation_models: dict[str, CostModel] = {}
    if isinstance(models.get("eyeriss"), AnalyticDevice):
        ablation_models = dict(eyeriss_ablations(models["eyeriss"]))  # type: ignore[arg-type]
    start = time.perf_counter()
    preds = predict(measured["arch_str"], {**models, **ablation_models})
    seconds = time.perf_counter() - start

    main_cols = ["macs", "params", *(f"latency_ms@{n}" for n in models)]
    tables = {}
    for method in ("spearman", "kendall"):
        table = correlations(preds[main_cols], measured, [*TARGETS], method)
        table[f"mean of {len(devices)}"] = correlations(
            preds[main_cols], measured, devices, method
        ).mean(axis=1)
        tables[method] = table
    abl_cols = [f"latency_ms@{n}" for n in ablation_models]
    ablation = correlations(preds[abl_cols], measured, ["eyeriss"], "spearman")
    ablation.index = list(ablation_models)
    ablation.columns = ["Spearman vs eyeriss"]

    cells = (
        f"All {len(measured):,} NAS-Bench-201 cells"
        if args.stride == 1
        else f"{len(measured):,} NAS-Bench-201 cells (every {args.stride}th of 15,625)"
    )
    sections = [
        f"{cells}: layers and predictions in {seconds:.1f} s. Targets: HELP's NB201 "
        "latencies (`eyeriss`, `fpga` are HW-NAS-Bench's simulator estimates, `pixel3`, "
        f"`raspi4` measured); last column: mean over all {len(devices)} HELP device columns. "
        "`macs` is the FLOPs proxy (ANCHORS: FLOPs reach Spearman 0.44 on Eyeriss, 0.79 mean, "
        "in HELP's paper). No constant is fitted to these targets.",
        "**Spearman's rho**\n\n" + markdown(tables["spearman"]),
        "**Kendall's tau**\n\n" + markdown(tables["kendall"]),
        "**Eyeriss profile ablation** (one modelling rule back to the plain roofline at a "
        "time). The `pool_on_mac_array: dense` rule follows how HW-NAS-Bench's Eyeriss "
        "estimator treats pooling (its NB201 table charges `avg_pool_3x3` exactly like "
        "`nor_conv_3x3`); it is a structural fact read off that table, not a fitted constant.\n\n"
        + markdown(ablation, "variant"),
    ]
    if EDGE_SAMPLE_CSV.is_file():
        sample = pd.read_csv(EDGE_SAMPLE_CSV)
        sample = sample[sample["edgetpu_latency_ms"] >= 0].reset_index(drop=True)
        edge_preds = predict(sample["arch_str"], models)[main_cols]
        edge = correlations(
            edge_preds, sample, ["edgetpu_latency_ms", "edgegpu_latency_ms"], "spearman"
        )
        sections.append(
            f"**Measured Coral Edge TPU** (HW-NAS-Bench, the {len(sample)} cells of indices "
            "0..102 that have an `edgetpu` value; Spearman's rho; small sample)\n\n"
            + markdown(edge)
        )
    if FBNET_CSV.is_file() and FBNET_ARCHS_CSV.is_file():
        sections.append(fbnet_section(models, ablation_models, main_cols, args.stride))
    if args.all_devices:
        full = correlations(preds[main_cols], measured, devices, "spearman").T
        full.columns = [c.removeprefix("latency_ms@") for c in full.columns]
        sections.append("**Spearman's rho, every HELP column**\n\n" + markdown(full, "device"))
    report = "\n\n".join(sections)
    print(report)
    if args.write:
        cmd = "python benchmarks/analytic_rank.py"
        if args.stride != 1:
            cmd += f" --stride {args.stride}"
        if args.all_devices:
            cmd += " --all-devices"
        update_section(
            "analytic-rank",
            "### Analytic cost models vs measured NAS-Bench-201 latency\n\n"
            f"Command: `{cmd} --write`  \nMachine: {machine()}\n\n{report}\n",
        )


if __name__ == "__main__":
    main()
