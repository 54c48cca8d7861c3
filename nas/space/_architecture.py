"""The Architecture value: a frozen, hashable choice of every searchable parameter of a space."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nas._errors import NasConfigError

__all__ = ["SCHEMA_VERSION", "Architecture", "canonical_json", "short_hash"]

SCHEMA_VERSION = 1

Choice = str | int


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every content hash is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(obj: Any, n: int = 12) -> str:
    """First ``n`` hex digits of the SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


@dataclass(frozen=True, eq=False)
class Architecture:
    """One architecture of a search space: the value of every parameter of the space.

    Two architectures are equal when their space (name and content hash) and choices are equal;
    ``arch_id`` is a short hash of exactly that content, so it names an architecture across
    processes, machines and studies (Archai's ``archid``). Construct architectures through a
    space (``space.sample``, ``space.random``, ``space.parse``, ``space.from_choices``), which
    validates and canonicalizes the choices.

    Example:
        >>> a = Architecture("toy", "0123456789ab", {"op": "conv"})
        >>> Architecture.from_dict(a.to_dict()) == a
        True
        >>> a.arch_id == Architecture("toy", "0123456789ab", {"op": "conv"}).arch_id
        True
    """

    space: str
    space_hash: str
    choices: Mapping[str, Choice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise NasConfigError(
                f"architecture space must be a non-empty string, got {self.space!r}"
            )
        if not isinstance(self.space_hash, str) or not self.space_hash:
            raise NasConfigError("architecture space_hash must be a non-empty string")
        if not isinstance(self.choices, Mapping):
            raise NasConfigError(f"architecture choices must be a mapping, got {self.choices!r}")
        for key, value in self.choices.items():
            if (
                not isinstance(key, str)
                or isinstance(value, bool)
                or not isinstance(value, Choice)
            ):
                raise NasConfigError(
                    f"architecture choice {key!r}: expected a string or integer, got {value!r}"
                )
        object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))

    def _content(self) -> dict[str, Any]:
        return {"space": self.space, "space_hash": self.space_hash, "choices": dict(self.choices)}

    @functools.cached_property
    def arch_id(self) -> str:
        """12 hex digits naming this architecture (hash of space, space hash and choices).

        Computed once per value (the instance is frozen; searches hash the same architectures
        many times)."""
        return short_hash(self._content())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return self._content() == other._content()

    def __hash__(self) -> int:
        return hash(self.arch_id)

    def __reduce__(self) -> tuple[Any, ...]:
        # A frozen value: copies and pickles rebuild it from its plain-dict form.
        return (Architecture.from_dict, (self.to_dict(),))

    def __deepcopy__(self, memo: dict[int, Any]) -> Architecture:
        return self

    def __repr__(self) -> str:
        return f"Architecture(space={self.space!r}, arch_id={self.arch_id!r})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: schema version, space, space hash, arch_id and choices."""
        return {"schema_version": SCHEMA_VERSION, "arch_id": self.arch_id, **self._content()}

    def to_json(self) -> str:
        """:meth:`to_dict` as canonical JSON (sorted keys, no whitespace): the same text for
        the same architecture on every machine."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "architecture") -> Architecture:
        """Inverse of :meth:`to_dict`; checks the schema version and, when present, the arch_id."""
        if not isinstance(data, Mapping):
            raise NasConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, str) and version.strip() == str(SCHEMA_VERSION):
            raise NasConfigError(
                f"{source}: schema_version: expected the number {SCHEMA_VERSION}, got the string "
                f'{version!r}; write "schema_version": {SCHEMA_VERSION}'
            )
        if version != SCHEMA_VERSION:
            raise NasConfigError(
                f"{source}: schema_version {version!r} is not supported; this version of nas "
                f"reads schema_version {SCHEMA_VERSION}"
            )
        missing = [key for key in ("space", "space_hash", "choices") if key not in data]
        if "choices" in missing:  # another kind of JSON file altogether
            raise NasConfigError(
                f"{source}: not an architecture file (it has no 'choices'); "
                "name an arch.json: runs/<name>/architectures/<arch_id>.json or "
                "final/<arch_id>/arch.json"
            )
        if missing:
            raise NasConfigError(f"{source}: missing key '{missing[0]}'")
        arch = cls(data["space"], data["space_hash"], data["choices"])
        if "arch_id" in data and data["arch_id"] != arch.arch_id:
            raise NasConfigError(
                f"{source}: arch_id {data['arch_id']!r} does not match its content "
                f"({arch.arch_id!r}); the file was edited by hand or corrupted: restore it, or "
                "delete its arch_id to accept the choices as they stand"
            )
        return arch
