"""Strict reading of YAML documents with line numbers for every key.

Documents are parsed with :func:`yaml.safe_load`; the same text is composed once more into YAML
nodes only to learn the line of each key, so that every validation error can say
``FILE:LINE: KEY: ...``. :class:`Node` is the reader the space DSL and the experiment schema use:
it hands out typed values, remembers which keys were read, and rejects the rest by name.
"""

from __future__ import annotations

import ast
import difflib
import logging
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nas._errors import NasConfigError
from nas._io import not_utf8

log = logging.getLogger(__name__)

__all__ = ["Node", "load_yaml", "override_of"]

T = TypeVar("T")
_MISSING = object()
Path_ = tuple[object, ...]


def _lines(node: yaml.Node, path: Path_, out: dict[Path_, int], file: Path) -> None:
    """Record the 1-based line of every key (for mapping entries) and item below ``node``;
    a key given twice in one mapping is an error (YAML would keep the last silently)."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key: object = key_node.value
                if key_node.tag == "tag:yaml.org,2002:int":
                    key = int(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise NasConfigError(
                        f"{_format_path(path + (key,))}: key given twice (also on line "
                        f"{seen[key]}); keep one",
                        file=file,
                        line=line,
                    )
                seen[key] = line
                out[path + (key,)] = line
                _lines(value_node, path + (key,), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, path + (i,), out, file)


def load_yaml(path: str | Path, text: str | None = None) -> Node:
    """Read a YAML mapping from ``path`` (or ``text`` said to be ``path``) as a :class:`Node`."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NasConfigError("file not found; check the path", file=path) from None
        except UnicodeDecodeError as exc:
            reason, line = not_utf8(path, exc, "YAML", "a YAML file")
            raise NasConfigError(reason, file=path, line=line) from None
        except OSError as exc:
            raise NasConfigError(f"cannot read file ({exc.strerror})", file=path) from None
    if text.startswith("\ufeff"):  # a byte-order mark
        text = text[1:]
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "'\\t'" in problem:
            problem += " (indent with spaces: YAML does not allow tabs)"
        elif problem.startswith("expected <block end>"):
            problem += (
                " (check this line's indentation against the lines above: the keys of one "
                "mapping, and the items of one list, line up)"
            )
        elif problem.startswith("mapping values are not allowed"):
            problem += (
                " (a value holding ': ' must be quoted; or this line is indented deeper than "
                "the keys beside it)"
            )
        else:  # where a bracket left open began: a missing '}' is found lines later
            context = getattr(exc, "context_mark", None)
            opened = getattr(exc, "context", None) or ""
            if context is not None and line is not None and context.line + 1 != line and opened:
                problem += f" ({opened} on line {context.line + 1})"
        raise NasConfigError(f"not valid YAML: {problem}", file=path, line=line) from None
    lines: dict[Path_, int] = {}
    if root is not None:
        _lines(root, (), lines, path)
    if not isinstance(data, dict):
        raise NasConfigError(
            f"expected a YAML mapping at the top level, got {_kind(data)}", file=path, line=1
        )
    return Node(data, path=(), file=path, lines=lines)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def override_of(origins: Mapping[Path_, str], path: Path_) -> str | None:
    """The override (``--set ...``) that set the value at ``path`` or a mapping holding it,
    among ``origins`` (path -> override); None when the file set it."""
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return None


def _format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Node:
    """A value inside a YAML document, with its key path, file and line, for strict validation.

    A mapping node records every key read through it; :meth:`done` rejects the others by name
    with the nearest allowed key, so a typo never passes silently.
    """

    def __init__(
        self,
        value: Any,
        *,
        path: Path_ = (),
        file: str | Path | None = None,
        lines: dict[Path_, int] | None = None,
        origins: dict[Path_, str] | None = None,
        homes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.value = value
        self.path = path
        self.file = file
        self._lines = lines or {}
        self._origins = origins if origins is not None else {}  # shared by the whole tree
        # shared too: the mappings of the document (dotted path -> their keys), so a key
        # written in the wrong one is pointed to its own (see :meth:`with_homes`)
        self._homes: Mapping[str, Sequence[str]] = homes or {}
        self._read: set[str] = set()

    # -- errors ---------------------------------------------------------------------------------
    @property
    def line(self) -> int | None:
        path = self.path
        while path not in self._lines and path:
            path = path[:-1]
        return self._lines.get(path)

    @property
    def key(self) -> str:
        return _format_path(self.path)

    @property
    def origin(self) -> str | None:
        """The override that set this value (or a mapping holding it), None if from the file."""
        return override_of(self._origins, self.path)

    @property
    def overridden(self) -> dict[Path_, str]:
        """The paths of the document that overrides set and the override that set each (what
        :func:`override_of` looks a value up in)."""
        return {path: origin for path, origin in self._origins.items() if path}

    def error(self, message: str, **kwargs: Any) -> NasConfigError:
        """A :class:`NasConfigError` located at this node (or at the override that set it)."""
        if self.origin is not None:
            return NasConfigError(message, file=self.origin, key=self.key or None, **kwargs)
        return NasConfigError(
            message, file=self.file, line=self.line, key=self.key or None, **kwargs
        )

    def path_value(self, base_dir: Path | None) -> Path:
        """This string value as a path: relative ones are taken from ``base_dir`` (the file's
        folder), or from the working directory when the value was set on the command line."""
        path = Path(self.as_str()).expanduser()
        if path.is_absolute():
            return path
        if self.origin is not None or base_dir is None:
            return Path.cwd() / path
        return Path(base_dir) / path

    # -- structure ------------------------------------------------------------------------------
    def child(self, key: object, value: Any) -> Node:
        return Node(
            value,
            path=self.path + (key,),
            file=self.file,
            lines=self._lines,
            origins=self._origins,
            homes=self._homes,
        )

    def with_homes(self, homes: Mapping[str, Sequence[str]]) -> Node:
        """This node, knowing the document's mappings and their keys (``{"search":
        ["n_trials", ...], "compress.prune": [...]}``): an unknown key that belongs to
        another of them is then refused with where to write it (``n_trials`` at the top
        level: ``search.n_trials``) instead of the nearest spelling of a key here."""
        self._homes = homes
        return self

    def override(self, keys: Sequence[str], value: Any, origin: str) -> None:
        """Set the value at ``keys`` below this mapping, creating mappings on the way.

        Errors about the value (or anything inside it) then name ``origin``, such as
        ``--set 'search.n_trials=abc'``, instead of a line of the file.
        """
        target = self._mapping()
        for depth, part in enumerate(keys[:-1]):
            nxt = target.get(part)
            turned_off = self._origins.get(self.path + tuple(keys[: depth + 1]))
            if nxt is None and part in target and turned_off is not None:
                shown = ".".join(keys[: depth + 1])
                raise NasConfigError(
                    f"sets a key of '{shown}', which {turned_off} turned off; drop one of the two",
                    file=origin,
                )
            if nxt is None:
                nxt = target[part] = {}
                # a mapping the override made: its errors (an unknown key) name the override
                self._origins.setdefault(self.path + tuple(keys[: depth + 1]), origin)
            if not isinstance(nxt, dict):
                shown = ".".join(keys[: depth + 1])
                raise NasConfigError(
                    f"'{shown}' is {_kind(nxt)} in {self.file}, not a mapping", file=origin
                )
            target = nxt
        before = target.get(keys[-1])
        if isinstance(before, dict) and isinstance(value, dict):
            dropped = [str(k) for k in before if k not in value]
            if dropped:  # a mapping replaces a mapping: say what of the file's it drops
                log.warning(
                    "%s replaces all of %s in %s, dropping %s; to change single keys, set them "
                    "one by one (--set %s.%s=...)",
                    origin,
                    ".".join(keys),
                    self.file,
                    ", ".join(dropped),
                    ".".join(keys),
                    next(iter(value), "KEY"),
                )
        target[keys[-1]] = value
        self._origins[self.path + tuple(keys)] = origin

    def _mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {_kind(self.value)}")
        return self.value

    def has(self, key: str) -> bool:
        return key in self._mapping()

    def get(self, key: str, default: Any = _MISSING) -> Node:
        """The child under ``key``; a missing key is an error unless ``default`` is given."""
        mapping = self._mapping()
        self._read.add(key)
        if key not in mapping:
            if default is _MISSING:
                # (a key read already is a right one, not a misspelling of this)
                others = [str(k) for k in mapping if str(k) not in self._read]
                typo = difflib.get_close_matches(key, others, n=1, cutoff=0.75)
                if typo:  # point at the misspelt key, not at the mapping that lacks the right one
                    raise self.child(typo[0], None).error(
                        f"missing required key '{key}'; is '{typo[0]}' a misspelling of it?"
                    )
                raise self.error(f"missing required key '{key}'")
            return self.child(key, default)
        return self.child(key, mapping[key])

    def keys(self) -> list[str]:
        return [str(k) for k in self._mapping()]

    def items(self) -> Iterator[tuple[str, Node]]:
        for key in self.keys():
            yield key, self.get(key)

    def list(self, *, allow_scalar: bool = False, nonempty: bool = True) -> list[Node]:
        """The items of a list node (a scalar counts as a one-item list if ``allow_scalar``)."""
        value = self.value
        if not isinstance(value, list):
            if allow_scalar and not isinstance(value, dict) and value is not None:
                return [self]
            raise self.error(f"expected a list, got {_kind(value)}")
        if nonempty and not value:
            raise self.error("expected a non-empty list")
        return [self.child(i, v) for i, v in enumerate(value)]

    def done(self, allowed: Sequence[str] | None = None) -> None:
        """Reject every key of this mapping that was not read (or is not in ``allowed``)."""
        known = set(allowed) if allowed is not None else self._read
        for key in self._mapping():
            if str(key) not in known:
                raise self._unknown(str(key), known)

    def _unknown(self, key: str, known: set[str]) -> NasConfigError:
        """The error for ``key``, unknown here: where it belongs when it is a key of another
        mapping of the document (see :meth:`with_homes`), else the keys allowed here."""
        node = self.child(key, self._mapping()[key])
        if difflib.get_close_matches(key, list(known), n=1, cutoff=0.75):
            return node.error(f"unknown key '{key}'", allowed=sorted(known), value=key)
        here = ".".join(str(p) for p in self.path)
        homes = [h for h, keys in self._homes.items() if key in keys and h != here]
        spelt = key
        if not homes:  # a misspelling of a key of another mapping (ntrials: search.n_trials)
            others = list(dict.fromkeys(k for keys in self._homes.values() for k in keys))
            close = difflib.get_close_matches(key, others, n=1, cutoff=0.75)
            if close:
                spelt = close[0]
                homes = [h for h, keys in self._homes.items() if spelt in keys and h != here]
        if not homes:
            return node.error(f"unknown key '{key}'", allowed=sorted(known), value=key)
        paths = [f"{h}.{spelt}" if h else spelt for h in homes]
        where = f"in {here}" if here else "at the top level"
        what = "" if spelt == key else f" (did you mean '{spelt}'?)"
        shown = ", ".join(paths[:-1]) + f" or {paths[-1]}" if len(paths) > 1 else paths[0]
        if node.origin is not None:  # --set 'n_trials=5': the same value, in its place
            try:
                item = str(ast.literal_eval(node.origin.removeprefix("--set ")))
            except (ValueError, SyntaxError):  # an origin not of the form --set 'KEY=VALUE'
                item = ""
            set_key, _, text = item.partition("=")
            text = text if set_key.strip() == node.key else "..."
            fix = " or ".join(f"--set {path}={text}" for path in paths)
        else:
            parents = [p.rpartition(".")[0] or "the top level" for p in paths]
            fix = f"move it into {' or '.join(parents)}"
        return node.error(f"unknown key '{key}' {where}{what}; it belongs at {shown}: {fix}")

    # -- scalars --------------------------------------------------------------------------------
    def as_str(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"expected a non-empty string, got {_kind(self.value)}")
        return self.value

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.value!r}")
        return self.value

    def as_int(self, *, min: int | None = None, max: int | None = None) -> int:
        """An integer, also written as a whole number in e-notation (``2e6``, ``2.0e6``: YAML
        1.1 reads the first as text, the second as a float)."""
        value = self.value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
            value = float(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {value!r}")
        if min is not None and value < min:
            raise self.error(f"expected an integer >= {min}, got {value}")
        if max is not None and value > max:
            raise self.error(f"expected an integer <= {max}, got {value}")
        return value

    def as_float(
        self,
        *,
        min: float | None = None,
        max: float | None = None,
        gt: float | None = None,
        lt: float | None = None,
    ) -> float:
        """A finite number (also from a string such as ``1e-3``, which YAML 1.1 reads as text),
        within ``min <= value <= max`` and ``gt < value < lt`` where given."""
        value = self.value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise self.error(f"expected a finite number, got {value!r}")
        if min is not None and value < min:
            raise self.error(f"expected a number >= {min}, got {value}")
        if max is not None and value > max:
            raise self.error(f"expected a number <= {max}, got {value}")
        if gt is not None and lt is not None and not gt < value < lt:
            raise self.error(f"expected a number strictly between {gt:g} and {lt:g}, got {value}")
        if gt is not None and not value > gt:
            raise self.error(f"expected a number > {gt}, got {value}")
        if lt is not None and not value < lt:
            raise self.error(f"expected a number < {lt}, got {value}")
        return float(value)

    def as_choice(self, allowed: Sequence[str]) -> str:
        value = self.value
        if value not in allowed:
            raise self.error(f"unknown value {value!r}", allowed=allowed, value=value)
        return str(value)

    def as_ints(self, *, min: int | None = None) -> tuple[int, ...]:
        """A list of integers (a single integer counts as a one-item list), without repeats."""
        items = tuple(n.as_int(min=min) for n in self.list(allow_scalar=True))
        if len(set(items)) != len(items):
            raise self.error(f"repeated values in {list(items)}")
        return items

    def convert(self, fn: Callable[[Any], T]) -> T:
        """Apply ``fn`` to the value, turning its ValueError into a located error."""
        try:
            return fn(self.value)
        except NasConfigError as exc:
            if exc.file is not None:
                raise
            raise self.error(exc.reason) from None
        except (ValueError, TypeError) as exc:
            raise self.error(str(exc)) from None


#: plain field annotations and the types their values may have (numpy's numbers are numbers;
#: bool is not one here)
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "int": (numbers.Integral,),
    "float": (numbers.Real,),
    "bool": (bool,),
    "str": (str,),
}


def check_field_types(config: Any) -> None:
    """Refuse a field of a config dataclass whose value is not of its plain annotated type
    (``int``, ``float``, ``bool``, ``str``, each optionally ``| None``), naming the field: a
    config made in Python with ``ratio="0.3"`` failed later with a ``TypeError`` about ``<``."""
    import dataclasses

    for field in dataclasses.fields(config):
        spelled = str(field.type).replace(" ", "")
        optional = spelled.endswith("|None")
        allowed = _PLAIN_TYPES.get(spelled.removesuffix("|None"))
        value = getattr(config, field.name)
        if allowed is None or (optional and value is None):
            continue
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            what = spelled.removesuffix("|None") + (" or None" if optional else "")
            raise NasConfigError(
                f"{type(config).__name__}.{field.name}: expected {what}, got {value!r} "
                f"({type(value).__name__})"
            )
