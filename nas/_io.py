"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json_object",
    "read_text",
]


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (ONNX export);
    renamed over ``path`` when the block succeeds, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would: the
        # replaced file's, or 0666 less the umask
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: the set-and-restore dance
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


_BINARY_KINDS = {
    ".onnx": "an ONNX model",
    ".safetensors": "a safetensors weights file",
    ".pt2": "a torch.export program",
}


def not_utf8(
    path: Path, exc: UnicodeDecodeError, kind: str, expected: str
) -> tuple[str, int | None]:
    """Why ``path`` could not be decoded, and the line: a binary file (NUL bytes, or a known
    binary suffix; no line), or text in another encoding (the line of its first byte that is
    not UTF-8)."""
    data = exc.object if isinstance(exc.object, bytes) else b""
    if path.suffix in _BINARY_KINDS or b"\0" in data[:8192]:
        what = _BINARY_KINDS.get(path.suffix, "a binary file")
        return f"{what}, not {kind}; name {expected}", None
    line = data[: exc.start].count(b"\n") + 1
    return (
        f"not UTF-8 text (byte 0x{data[exc.start]:02x}, perhaps Latin-1 or Windows-1252); "
        "save the file as UTF-8"
    ), line


def read_text(
    path: str | Path, *, expected: str, kind: str = "text", missing: str = "file not found"
) -> str:
    """The text of ``path`` (``-``: standard input); a missing file, a folder or a binary file
    raise :class:`nas.NasConfigError` naming the file and what was ``expected`` there (a file
    of ``kind``)."""
    from nas._errors import NasConfigError

    if str(path) == "-":
        return sys.stdin.read()
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
    except FileNotFoundError:
        raise NasConfigError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise NasConfigError(f"{path}: is a folder; expected {expected}") from None
    except UnicodeDecodeError as exc:
        reason, line = not_utf8(path, exc, kind, expected)
        raise NasConfigError(f"{path}{'' if line is None else f':{line}'}: {reason}") from None
    except OSError as exc:
        raise NasConfigError(f"{path}: cannot read it ({exc.strerror})") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_object(
    path: str | Path,
    *,
    missing: str = "file not found",
    expected: str = "an arch.json (or model_int8.json)",
) -> dict[str, Any]:
    """A JSON object from ``path``; a missing file, bad JSON or a non-object raise
    :class:`nas.NasConfigError` naming the file (and the line for bad JSON); a binary file
    says it is one and names what was ``expected``."""
    from nas._errors import NasConfigError

    text = read_text(path, expected=expected, kind="JSON", missing=missing)

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:  # json keeps the last one silently: an edit that did not take
                lines = [n for n, line in enumerate(text.splitlines(), 1) if f'"{key}"' in line]
                where = f":{lines[1]}" if len(lines) == 2 else ""  # (else: unsure which)
                raise NasConfigError(
                    f"{path}{where}: key {key!r} appears twice in one object; keep one of them"
                )
            seen[key] = value
        return seen

    try:
        doc = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise NasConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise NasConfigError(f"{path}: expected a JSON object")
    return doc
