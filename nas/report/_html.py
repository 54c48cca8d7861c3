"""``report.html``: one self-contained page with a run's summary, figures and tables.

Everything is inside the file (PNGs as base64 ``data:`` URIs, the CSS and a few lines of
table-sorting script), so it opens offline, from a mail attachment or a CI artifact. Links
(architecture files, model cards, CSVs) are relative to the run directory and work when the
page sits in it. Every piece of text from the study (names, architecture strings) is escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from nas._errors import NasConfigError
from nas._io import atomic_write_text
from nas.report._labels import ARROWS, metric_source
from nas.search._pareto import Normalization

__all__ = ["FIGURES", "write_html_report"]

log = logging.getLogger(__name__)

#: The figures a run directory may hold, in page order, with their captions.
FIGURES: tuple[tuple[str, str], ...] = (
    (
        "pareto.png",
        "Every pair of objectives. Pareto members (over all objectives) highlighted, dominated "
        "trials faint, constraint violators marked x. Cost-model metrics are predicted.",
    ),
    (
        "pareto_devices.png",
        "Per device, side by side: the reference objective against each device's predicted "
        "cost, with the Pareto front on that device highlighted.",
    ),
    (
        "parallel.png",
        "Parallel coordinates: every objective scaled to [0, 1] over the feasible trials, "
        "0 = best observed and 1 = worst on every axis (maximized objectives flipped). "
        "Pareto members coloured, dominated trials faint.",
    ),
    (
        "hypervolume.png",
        "Hypervolume of the feasible trials after each trial, in normalized units; the "
        "reference point is stated in the figure and above.",
    ),
    (
        "pareto_final.png",
        "The search's points (costs predicted by the cost models, error from proxy training) "
        "with the finished models' variants on top in their own markers (measured: held-out "
        "accuracy, latency timed on this machine in the variant's runtime).",
    ),
)

_SOURCE_TEXT = {
    "predicted": "predicted (cost model)",
    "measured": "measured (proxy training, validation split)",
    "exact": "exact (counted from the architecture)",
    "unknown": "",
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
table.sortable th { cursor: pointer; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; word-break: break-all; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; max-width: 60em; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""

# Click a header to sort by it (numbers by the cell's data-sort value), again to reverse.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var asc = th.dataset.dir !== "asc";
      th.dataset.dir = asc ? "asc" : "desc";
      var body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[col];
        var raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
        var num = parseFloat(raw);
        return isNaN(num) ? [1, raw] : [0, num];
      };
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return asc ? c : -c;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(*parts: str) -> str:
    """A relative URL from path parts: each part percent-encoded, joined by '/'."""
    return "/".join(quote(p, safe="") for p in parts)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    if _is_missing(value):
        return "\u2013"  # en dash: not measured
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{round(v):,}" if abs(v) >= 1e4 else f"{v:.4g}"  # 150,000 not 1.5e+05
    return str(value)


def _cell(value: Any, *, link: str | None = None, code: bool = False) -> str:
    text = _e(_fmt(value))
    if code:
        text = f"<code>{text}</code>"
    if link is not None:
        text = f'<a href="{_e(link)}">{text}</a>'
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if numeric:
        sort = "" if _is_missing(value) else repr(float(value))
        return f'<td class="num" data-sort="{_e(sort)}">{text}</td>'
    return f"<td>{text}</td>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, sortable: bool) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _header(name: str) -> str:
    source = metric_source(name)
    return f"{name} ({source})" if source == "predicted" else name


def _objectives_table(
    objectives: Sequence[str], directions: Sequence[str], reference: Mapping[str, Any] | None
) -> str:
    """Objectives with direction and source, and the hypervolume reference point in raw units."""
    raw: dict[str, tuple[float, float, float]] = {}
    if reference:
        try:
            norm = Normalization.from_dict(
                {key: reference[key] for key in ("lower", "upper", "reference")}
            )
        except (KeyError, NasConfigError) as exc:
            log.warning("report.html: hypervolume reference not shown in raw units: %s", exc)
        else:
            if norm.n_objectives == len(objectives):
                corners = norm.invert(np.array([[0.0] * len(objectives), norm.reference]))
                sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
                best, ref = corners * sign  # back from minimization space
                worst = np.asarray(norm.upper) * sign
                raw = {
                    name: (float(best[i]), float(worst[i]), float(ref[i]))
                    for i, name in enumerate(objectives)
                }
    rows = []
    for name, direction in zip(objectives, directions, strict=True):
        best, worst, ref = raw.get(name, (math.nan, math.nan, math.nan))
        rows.append(
            [
                _cell(name, code=True),
                _cell(f"{direction} {ARROWS[direction]}"),
                _cell(_SOURCE_TEXT[metric_source(name)]),
                _cell(best),
                _cell(worst),
                _cell(ref),
            ]
        )
    headers = [
        "objective",
        "direction",
        "value in the search",
        "best feasible (normalized 0)",
        "worst feasible (normalized 1)",
        "hypervolume reference point",
    ]
    return _table(headers, rows, sortable=False)


def _summary(
    study_name: str,
    trials: pd.DataFrame,
    n_pareto: int,
    hypervolume: float | None,
    reference: Mapping[str, Any] | None,
    constraints: Mapping[str, str],
) -> str:
    items: list[tuple[str, str]] = [("study", study_name), ("trials", str(len(trials)))]
    if "status" in trials.columns and len(trials):
        counts = trials["status"].fillna("unknown").astype(str).value_counts()
        items.append(("trials by status", ", ".join(f"{s}: {n}" for s, n in counts.items())))
    if constraints:
        bounds = "; ".join(f"{metric} {bound}" for metric, bound in constraints.items())
        shut = ""
        columns = [c for c in trials.columns if str(c).startswith("constraint[")]
        if columns and len(trials):
            out = int((trials[columns].astype(float) > 0).any(axis=1).sum())
            shut = f" (trials that break one: {out} of {len(trials)}, none on the front)"
        items.append(("constraints", bounds + shut))
    items.append(("Pareto members", str(n_pareto)))
    if hypervolume is not None and reference:
        ref = ", ".join(f"{r:g}" for r in reference.get("reference", []))
        items.append(
            (
                "hypervolume",
                f"{hypervolume:.4f} (objectives normalized to [0, 1] by the observed range of "
                f"the feasible trials, 0 = best; reference point ({ref}) in normalized units)",
            )
        )
    else:
        items.append(("hypervolume", "none (no feasible trial)"))
    rows = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="summary">\n{rows}\n</table>'


def _device_text(d: Mapping[str, Any]) -> str:
    """How a device's latency and energy were obtained, from its description in a run's
    manifest: an analytic profile's constants, or a table's measured/estimated values and, for
    estimated energy, the power and where that figure comes from."""
    if d.get("kind") == "analytic":
        return (
            f"analytic profile, latency and energy estimated from its constants "
            f"({d.get('mac_pj_at_8bit')} pJ per 8-bit MAC, {d.get('sram_pj_per_byte')}/"
            f"{d.get('dram_pj_per_byte')} pJ per SRAM/DRAM byte, "
            f"{d.get('static_power_w')} W static): {d.get('description') or ''}"
        )
    kinds = d.get("value_kinds") or {}
    energy = d.get("energy") or {}
    how = f"energy {kinds.get('energy', 'of unknown origin')}"
    if energy.get("power_w") is not None:
        how += f" at {energy['power_w']:g} W"
    if energy.get("power_source"):
        how += f" ({energy['power_source']})"
    return (
        f"lookup table ({d.get('path') or 'path not recorded'}), latency "
        f"{kinds.get('latency', 'of unknown origin')}, {how}: {d.get('description') or ''}"
    )


def _devices_section(devices: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per device, how its costs were obtained (nothing without devices)."""
    if not devices:
        return []
    rows = [[_cell(name, code=True), _cell(_device_text(d))] for name, d in devices.items()]
    return [
        "<h2>Devices</h2>",
        "<p class=\"note\">Where each device's latency and energy come from (the run's "
        "<code>manifest.json</code> records the rest).</p>",
        _table(["device", "latency and energy"], rows, sortable=False),
    ]


def _figures(run_dir: Path) -> str:
    parts = []
    for name, caption in FIGURES:
        path = run_dir / name
        if not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f'<figure id="{_e(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{_e(name)}">\n<figcaption><b>{_e(name)}</b>: {_e(caption)}</figcaption>'
            "</figure>"
        )
    return "\n".join(parts) if parts else '<p class="note">No figures.</p>'


def _pareto_table(
    run_dir: Path, pareto: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]
) -> str:
    headers = [
        "arch_id",
        "trial",
        *(f"{_header(o)} {ARROWS[d]}" for o, d in zip(objectives, directions, strict=True)),
        "status",
        "architecture",
    ]
    rows = []
    for _, row in pareto.iterrows():
        arch_id = row.get("arch_id")
        link = None
        if isinstance(arch_id, str) and (run_dir / "architectures" / f"{arch_id}.json").is_file():
            link = _href("architectures", f"{arch_id}.json")
        cells = [
            _cell(arch_id, link=link, code=True),
            _cell(int(row["number"]) if "number" in row.index else None),
            *(_cell(float(row[o])) for o in objectives),
            _cell(row.get("status")),
            _cell(row.get("arch"), code=True),
        ]
        rows.append(cells)
    return _table(headers, rows, sortable=True)


def _final_table(run_dir: Path) -> str | None:
    summary = run_dir / "final" / "summary.csv"
    if not summary.is_file():
        return None
    try:
        frame = pd.read_csv(summary)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        log.warning("report.html: %s not shown: %s", summary, exc)
        return None
    columns = [
        ("arch_id", "arch_id"),
        ("variant", "variant"),
        ("runtime", "runtime"),
        ("accuracy", "accuracy (measured)"),
        ("split", "split"),
        ("latency_ms", "latency_ms (measured, p50, batch 1)"),
        ("latency_ms_iqr", "latency_ms IQR"),
        ("size_bytes", "size_bytes"),
        ("size_deflated_bytes", "size_deflated_bytes"),
        ("params_nonzero", "params (nonzero)"),
        ("params", "params (nonzero)"),  # the column's name in summaries before params_nonzero
    ]
    present = [(c, h) for c, h in columns if c in frame.columns]
    rows = []
    for record in frame.to_dict("records"):
        cells = [_cell(record[c], code=c == "arch_id") for c, _ in present]
        file = record.get("file")
        folder = Path(str(file)).parent if isinstance(file, str) else None
        if folder is not None and folder.parts and (run_dir / "final" / folder).is_dir():
            card = run_dir / "final" / folder / "MODEL_CARD.md"
            link = _href("final", *folder.parts, "MODEL_CARD.md") if card.is_file() else None
            cells.append(_cell(f"final/{folder.as_posix()}/", link=link))
        else:
            cells.append(_cell(None))
        rows.append(cells)
    table = _table([h for _, h in present] + ["folder (model card)"], rows, sortable=True)
    link = _href("final", "summary.csv")
    return (
        f'<p class="note">Every variant of every finished model, measured after fine-tuning '
        f"(not predicted): accuracy on the held-out split, latency timed on the machine that "
        f'ran the final stage, size on disk. From <a href="{link}">final/summary.csv</a>.</p>\n'
        + table
    )


def write_html_report(
    run_dir: str | os.PathLike[str],
    trials: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    *,
    study_name: str,
    hypervolume: float | None = None,
    reference: Mapping[str, Any] | None = None,
    filename: str = "report.html",
    constraints: Mapping[str, str] | None = None,
    devices: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a self-contained HTML report of the run in ``run_dir``.

    The page holds a summary (study, trial counts, Pareto size, hypervolume and its reference
    point), a table of the objectives (direction, whether the search predicted or measured
    them, best/worst/reference values), every figure of :data:`FIGURES` found in ``run_dir``
    inlined as a base64 PNG, a sortable table of the Pareto members linking to
    ``architectures/<arch_id>.json`` where that file exists, and, when
    ``final/summary.csv`` exists, a table of the finished models' measured variants linking to
    each folder's ``MODEL_CARD.md``.

    Args:
        run_dir: The run (or report) directory; the page is written there.
        trials: One row per trial as from :func:`nas.search.trials_frame`: the objective
            columns, bool ``pareto``, and ``number``, ``arch_id``, ``status``, ``arch`` when
            present.
        objectives: The objective names.
        directions: ``"minimize"`` or ``"maximize"`` per objective.
        study_name: Shown in the title.
        hypervolume: Final hypervolume in normalized units, or None when there is none.
        reference: The normalization of the hypervolume (``lower``, ``upper``, ``reference``
            as from :meth:`Normalization.to_dict`), or None.
        filename: Name of the page inside ``run_dir``.
        constraints: The search's constraints, metric -> bound (``"<= 1.0"``): stated in the
            summary beside the trials they excluded from the front.
        devices: Per device, its cost model as a run's ``manifest.json`` describes it: the
            page says how its latency and energy were obtained (measured, estimated from power
            x latency and where the power comes from, an analytic profile's constants).

    Returns:
        The path of the page, written atomically.

    Raises:
        NasConfigError: ``directions`` does not match ``objectives``, or ``trials`` lacks an
            objective column or the ``pareto`` column.
    """
    run_dir = Path(run_dir)
    if isinstance(objectives, str) or isinstance(directions, str):
        raise NasConfigError("objectives and directions must be sequences of strings, not str")
    if len(objectives) != len(directions):
        raise NasConfigError(
            f"got {len(directions)} directions for {len(objectives)} objectives; give one "
            "direction per objective"
        )
    if len(trials):
        for column in [*objectives, "pareto"]:
            if column not in trials.columns:
                raise NasConfigError(
                    f"trials has no column {column!r}",
                    allowed=[str(c) for c in trials.columns],
                    value=column,
                )
        pareto = trials[trials["pareto"].astype(bool)]
        if objectives:
            pareto = pareto.sort_values(objectives[0])
    else:
        pareto = trials
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    files = [
        f'<a href="{_href(name)}">{_e(name)}</a>'
        for name in ("trials.csv", "pareto.csv")
        if (run_dir / name).is_file()
    ]
    sections = [
        f"<h1>NAS report: {_e(study_name)}</h1>",
        f'<p class="note">Generated {_e(generated)}'
        + (f"; the tables are also in {', '.join(files)}." if files else ".")
        + "</p>",
        _summary(study_name, trials, len(pareto), hypervolume, reference, constraints or {}),
        "<h2>Objectives</h2>",
        '<p class="note">During the search, latency and energy (<code>latency_ms@&lt;device&gt;'
        "</code>, <code>energy_mj@&lt;device&gt;</code>) are <b>predicted</b> by each device's "
        "cost model, error and accuracy are <b>measured</b> after the short proxy training, "
        "and parameter/MAC counts are exact. Figures mark predicted axes "
        "&ldquo;(predicted)&rdquo;.</p>",
        _objectives_table(objectives, directions, reference),
        *_devices_section(devices or {}),
        "<h2>Figures</h2>",
        _figures(run_dir),
        f"<h2>Pareto members ({len(pareto)})</h2>",
    ]
    if len(pareto):
        sections.append(
            '<p class="note">Sorted by the first objective; click a column header to sort by '
            "it. Each arch_id links to its self-contained architecture file.</p>"
        )
        sections.append(_pareto_table(run_dir, pareto, objectives, directions))
    else:
        sections.append('<p class="note">No feasible trial, so no Pareto member.</p>')
    final = _final_table(run_dir)
    if final is not None:
        sections += ["<h2>Finished models (measured)</h2>", final]
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>NAS report: {_e(study_name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
    path = run_dir / filename
    atomic_write_text(path, page)
    log.info("wrote %s (%d KiB)", path, len(page) // 1024)
    return path
