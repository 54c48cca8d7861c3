"""Helpers shared by the benchmark scripts: machine description and docs/benchmarks.md updates."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    from nas.pipeline import environment

    env = environment()
    return (
        f"{env['cpu']}, {env['cpu_count']} cores, torch {env['packages']['torch']} "
        f"({env['torch_threads']} threads), optuna {env['packages']['optuna']}, "
        f"onnxruntime {env['packages']['onnxruntime']}, Python {env['python']}, "
        f"{dt.date.today().isoformat()}"
    )


def update_section(key: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- key -->`` markers in docs/benchmarks.md."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = DOC.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, DOC)
