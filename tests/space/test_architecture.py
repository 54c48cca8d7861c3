from __future__ import annotations

import json

import pytest

from nas import NasConfigError
from nas.space import Architecture, load_space


def test_round_trip_and_identity():
    space = load_space("mobilenet_small")
    arch = space.random(0)
    again = Architecture.from_dict(json.loads(arch.to_json()))
    assert again == arch and hash(again) == hash(arch)
    assert again.arch_id == arch.arch_id and len(arch.arch_id) == 12
    assert arch.to_dict()["schema_version"] == 1


def test_frozen():
    arch = load_space("nasbench201").random(0)
    with pytest.raises(AttributeError):
        arch.space = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        arch.choices["0->1"] = "none"  # type: ignore[index]


def test_tampered_or_foreign_documents_are_rejected():
    arch = load_space("nasbench201").random(0)
    doc = arch.to_dict()
    doc["choices"]["0->1"] = "none" if doc["choices"]["0->1"] != "none" else "skip_connect"
    with pytest.raises(NasConfigError, match="does not match its content"):
        Architecture.from_dict(doc)
    doc = arch.to_dict() | {"schema_version": 99}
    with pytest.raises(NasConfigError, match="schema_version 99 is not supported"):
        Architecture.from_dict(doc)


def test_architecture_from_another_space_is_refused():
    nb = load_space("nasbench201")
    fb = load_space("fbnet")
    with pytest.raises(NasConfigError, match="is from space 'nasbench201'"):
        fb.build(nb.random(0))


def test_padding_makes_equal_architectures_equal():
    space = load_space("mobilenet_small")
    params = space.parameters()
    base = {k: c[0] for k, c in params.items()}
    base["s1.depth"] = 1
    other = dict(base)
    other["s1.l2"] = params["s1.l2"][-1]  # a layer beyond depth 1: irrelevant
    a, b = space.from_choices(base), space.from_choices(other)
    assert a == b
    assert a.choices["s1.l2"] == "skip"
