"""Cell spaces (NAS-Bench-201 / DARTS style): a fixed macro skeleton around one searched DAG cell.

DSL (``type: cell``)::

    name: nasbench201
    type: cell
    input: {channels: 3, height: 32, width: 32}
    num_classes: 10
    ops: {none: zero, skip_connect: skip, nor_conv_3x3: rcb_k3, ...}
    cell: {nodes: 4, ops: [none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]}
    stem: {op: conv_k3_linear, width: 16}
    stages:
      - {cells: 5, width: 16}
      - {reduction: resnet_block, cells: 5, width: 32}
    head: {op: bnact_relu}
    classifier: {dropout: 0.0}

Node ``j`` of the cell sums ``op(i->j)(node i)`` over all ``i < j``; node 0 is the cell input and
the last node its output. Parameters are one per edge, named ``{i}->{j}``. The string form is the
NAS-Bench-201 arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nas._config import Node
from nas._errors import NasConfigError
from nas.space._architecture import Architecture, Choice
from nas.space._chain import classifier_layer
from nas.space._layers import Layer
from nas.space._network import Network
from nas.space._ops import parse_op
from nas.space._space import (
    SearchSpace,
    label_hint,
    read_classifier,
    read_fixed_op,
    read_header,
    read_op_choices,
    read_op_library,
)

__all__ = ["CellSpace"]

_EDGE = re.compile(r"^(?P<op>[^~|+]+)~(?P<src>\d+)$")


class Cell(nn.Module):
    """A DAG cell: ``node_j = sum_{i<j} edge_{i->j}(node_i)``; returns the last node."""

    def __init__(self, edges: dict[str, nn.Module], nodes: int) -> None:
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleDict({k.replace("->", "_to_"): m for k, m in edges.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for j in range(1, self.nodes):
            states.append(sum(self.edges[f"{i}_to_{j}"](states[i]) for i in range(j)))
        return states[-1]


class CellSpace(SearchSpace):
    """One DAG cell, searched edge by edge, repeated inside a fixed skeleton."""

    type_name = "cell"

    @classmethod
    def _parse(cls, node: Node) -> CellSpace:
        spec = read_header(node, cls.type_name)
        library = read_op_library(node.get("ops", None))
        cell_node = node.get("cell")
        cell_node.done(("nodes", "ops"))  # unknown keys before missing ones
        nodes = cell_node.get("nodes").as_int(min=2, max=12)
        cell_ops = read_op_choices(cell_node.get("ops"), library)
        for label in cell_ops:
            if "~" in label or "+" in label:
                raise cell_node.get("ops").error(f"op label {label!r} may not contain '~' or '+'")
        if all(spec.type == "zero" for spec in cell_ops.values()):
            raise cell_node.get("ops").error(
                "every op is a zero op, so every cell would output zeros; add one that "
                "computes (skip, or a convolution such as rcb_k3)"
            )
        stem_node = node.get("stem")
        stem_node.done(("op", "width"))
        stem: dict[str, Any] = {
            "op": read_fixed_op(stem_node.get("op"), library).name,
            "width": stem_node.get("width").as_int(min=1),
        }
        stages: list[dict[str, Any]] = []
        width = stem["width"]
        for s in node.get("stages").list():
            s.done(("cells", "width", "reduction"))
            red = s.get("reduction", None)
            stage: dict[str, Any] = {
                "cells": s.get("cells").as_int(min=1),
                "width": s.get("width").as_int(min=1),
                "reduction": read_fixed_op(red, library).name if red.value is not None else None,
            }
            if stage["reduction"] is None and stage["width"] != width:
                raise s.get("width").error(
                    f"width changes from {width} to {stage['width']} without a reduction op; "
                    "add 'reduction: resnet_block' (or another op) to this stage"
                )
            if stage["reduction"] is not None:
                problem = parse_op(stage["reduction"]).op().check(width, stage["width"], 2)
                if problem:
                    raise s.get("reduction").error(problem)
            for label, op in cell_ops.items():
                problem = op.op().check(stage["width"], stage["width"], 1)
                if problem:
                    raise cell_node.get("ops").error(f"op '{label}': {problem}")
            width = stage["width"]
            stages.append(stage)
        head_node = node.get("head", None)
        head = None
        if head_node.value is not None:
            head_node.done(("op",))
            head = {"op": read_fixed_op(head_node.get("op"), library).name}
        spec.update(
            {
                "ops": {label: op.name for label, op in cell_ops.items()},
                "cell": {"nodes": nodes, "ops": list(cell_ops)},
                "stem": stem,
                "stages": stages,
                "head": head,
                "classifier": read_classifier(node.get("classifier", None)),
            }
        )
        node.done()
        reductions = sum(s["reduction"] is not None for s in stages)
        side = min(spec["input"][1:])
        if side / 2**reductions < 1:
            raise node.get("stages").error(
                f"{reductions} reductions shrink the {side}x{side} input below 1 pixel"
            )
        return cls(spec)

    def __init__(self, spec: dict[str, Any]) -> None:
        self._ops = {label: parse_op(text) for label, text in spec["ops"].items()}
        self._nodes = spec["cell"]["nodes"]
        self._edges = [(i, j) for j in range(1, self._nodes) for i in range(j)]
        super().__init__(spec)

    def _parameters(self) -> dict[str, tuple[Choice, ...]]:
        ops = tuple(self._spec["cell"]["ops"])
        return {f"{i}->{j}": ops for i, j in self._edges}

    def size(self) -> int:
        return len(self._spec["cell"]["ops"]) ** len(self._edges)

    def _edge_ops(self, arch: Architecture) -> dict[str, str]:
        ops = self._spec["cell"]["ops"]
        return {f"{i}->{j}": str(arch.choices.get(f"{i}->{j}", ops[0])) for i, j in self._edges}

    def effective(self, arch: Architecture) -> Architecture:
        """The cell with the fewest live (non-zero) edges that computes what ``arch``'s does.

        First a node whose only input is a skip edge from node i is merged into i (its outgoing
        edges start at i instead, where that edge is free); where an edge from i is taken and
        the node has one outgoing edge, that edge's op moves onto its input edge and the skip
        onto its output (``i -skip-> k -op-> j`` computes what ``i -op-> k -skip-> j`` does).
        A node is then live when a live edge
        reaches it from a live node (node 0 always is) and it feeds the output node through live
        edges; an edge counts only between live nodes. Last, the inner nodes are relabelled to
        the smallest encoding the kept edges allow (a relabelling computes the same sums).
        NAS-Bench-201's 15,625 cells have 7,855 effective forms (its own count of distinct
        computations, 6,466, also compares sums across nodes, which no single cell can express).
        """
        self.check(arch)
        ops = self._spec["cell"]["ops"]
        zero = self._zero_op()
        if zero is None:
            return arch
        edges = self._edge_ops(arch)
        ops_at = {(i, j): edges[f"{i}->{j}"] for i, j in self._edges}
        # a node whose only input is a skip edge from node i is node i: its outgoing edges move
        # to start at i (where that edge is free), and the skip edge goes
        changed = True
        while changed:
            changed = False
            for k in range(1, self._nodes - 1):
                inputs = [(i, k) for i in range(k) if ops_at[(i, k)] != zero]
                if len(inputs) != 1 or self._ops[ops_at[inputs[0]]].type != "skip":
                    continue
                i = inputs[0][0]
                outputs = [j for j in range(k + 1, self._nodes) if ops_at[(k, j)] != zero]
                if not outputs:
                    continue
                if not any(ops_at[(i, j)] != zero for j in outputs):
                    for j in outputs:
                        ops_at[(i, j)], ops_at[(k, j)] = ops_at[(k, j)], zero
                    ops_at[(i, k)] = zero
                    changed = True
                elif len(outputs) == 1 and self._ops[ops_at[(k, outputs[0])]].type != "skip":
                    # i -skip-> k -op-> j, and k has no other edge: i -op-> k -skip-> j is the
                    # same (op applied once to node i's value), and is the form kept
                    j = outputs[0]
                    ops_at[(i, k)], ops_at[(k, j)] = ops_at[(k, j)], ops_at[(i, k)]
                    changed = True
        live = {edge for edge, label in ops_at.items() if label != zero}
        reached = {0}
        for j in range(1, self._nodes):  # edges only go forward: one pass in node order
            if any((i, j) in live and i in reached for i in range(j)):
                reached.add(j)
        feeds = self._read_nodes(lambda i, j: (i, j) in live)
        keep = {(i, j): ops_at[(i, j)] for i, j in live if i in reached and j in feeds}
        # relabel the inner nodes (any order the kept edges allow) to the smallest encoding
        rank = {label: n for n, label in enumerate(ops)}
        best: tuple[int, ...] | None = None
        for perm in itertools.permutations(range(1, self._nodes - 1)):
            order = (0, *perm, self._nodes - 1)
            if any(order[i] >= order[j] for i, j in keep):
                continue
            moved = {(order[i], order[j]): label for (i, j), label in keep.items()}
            code = tuple(rank[moved.get(edge, zero)] for edge in self._edges)
            if best is None or code < best:
                best = code
        assert best is not None  # the identity order always qualifies
        choices = {f"{i}->{j}": ops[n] for (i, j), n in zip(self._edges, best, strict=True)}
        return arch if choices == edges else self.from_choices(choices)

    def graph_pruned(self, arch: Architecture) -> Architecture:
        """``arch`` with every edge into a node the output node never reads set to the zero op.

        Unlike :meth:`effective`, edges leaving a node that receives only zeros stay: a runtime
        cannot drop them without knowing the node is zero.
        """
        self.check(arch)
        zero = self._zero_op()
        if zero is None:
            return arch
        edges = self._edge_ops(arch)
        read = self._read_nodes(lambda i, j: edges[f"{i}->{j}"] != zero)
        choices = {name: label if int(name.split("->")[1]) in read else zero
                   for name, label in edges.items()}  # fmt: skip
        return arch if choices == edges else self.from_choices(choices)

    def _zero_op(self) -> str | None:
        """The cell's zero op label (``none`` in NAS-Bench-201), if it has one."""
        ops = self._spec["cell"]["ops"]
        return next((label for label in ops if self._ops[label].type == "zero"), None)

    def _read_nodes(self, live: Callable[[int, int], bool]) -> set[int]:
        """The nodes whose value reaches the output node through edges ``live(i, j)``."""
        read = {self._nodes - 1}
        for i in range(self._nodes - 2, -1, -1):  # edges only go forward: one backward pass
            if any(live(i, j) and j in read for j in range(i + 1, self._nodes)):
                read.add(i)
        return read

    # -- layers and model -----------------------------------------------------------------------
    def _walk(self, arch: Architecture):
        """Yield (name, label, op, cin, cout, stride, in_shape) in execution order."""
        self.check(arch)
        edges = self._edge_ops(arch)
        c, h, w = self.input_shape
        stem = self._spec["stem"]
        yield "stem", stem["op"], parse_op(stem["op"]), c, stem["width"], 1
        cell_index = 0
        width = stem["width"]
        for stage in self._spec["stages"]:
            if stage["reduction"] is not None:
                op = parse_op(stage["reduction"])
                yield f"cells.{cell_index}", stage["reduction"], op, width, stage["width"], 2
                cell_index += 1
            width = stage["width"]
            for _ in range(stage["cells"]):
                for key, label in edges.items():
                    yield f"cells.{cell_index}.{key}", label, self._ops[label], width, width, 1
                cell_index += 1
        if self._spec["head"] is not None:
            head = self._spec["head"]["op"]
            yield "head", head, parse_op(head), width, width, 1

    def layer_slots(self) -> dict[str, tuple[str, ...]]:
        arch = self.from_choices({key: choices[0] for key, choices in self._params.items()})
        return {
            layer.name: ((layer.name.rsplit(".", 1)[1],) if "->" in layer.name else ())
            for layer in self.layers(arch)
        }

    def possible_layers(self) -> tuple[Layer, ...]:
        found: dict[str, Layer] = {}
        ops = self._spec["cell"]["ops"]
        for label in ops:  # every op on every edge position: one architecture per op suffices
            arch = self.from_choices({key: label for key in self._params})
            for layer in self.layers(arch):
                found.setdefault(layer.signature, layer)
        return tuple(found.values())

    def layers(self, arch: Architecture) -> tuple[Layer, ...]:
        out: list[Layer] = []
        shape = self.input_shape
        for name, label, op, _, cout, stride in self._walk(arch):
            in_shape = shape if "->" not in name else (cout, shape[1], shape[2])
            out.append(Layer.profiled(name, label, op, in_shape, stride, cout))
            if "->" not in name:
                shape = out[-1].out_shape
        out.append(classifier_layer(shape, self.num_classes))
        return tuple(out)

    def peak_activation_elems(self, layers: Sequence[Layer]) -> int:
        """All ``nodes`` states of a cell are alive until its output is summed."""
        peak = super().peak_activation_elems(layers)
        for layer in layers:
            if "->" in layer.name:
                c, h, w = layer.in_shape
                peak = max(peak, self._nodes * c * h * w)
        return peak

    def layer_module(self, name: str) -> str:
        # cells.4 (a reduction) is body[4]; cells.4.0->2 is the edge 0_to_2 of the cell body[4]
        if not name.startswith("cells."):
            return name
        index, _, edge = name.removeprefix("cells.").partition(".")
        return f"body.{index}" + (f".edges.{edge.replace('->', '_to_')}" if edge else "")

    def _build(self, arch: Architecture) -> nn.Module:
        body: list[nn.Module] = []
        pending: dict[str, nn.Module] = {}
        stem = head = None
        width = 0
        for name, _, op, cin, cout, stride in self._walk(arch):
            module = op.op().build(cin, cout, stride)
            width = cout
            if name == "stem":
                stem = module
            elif name == "head":
                head = module
            elif "->" in name:
                pending[name.rsplit(".", 1)[1]] = module
                if len(pending) == len(self._edges):
                    body.append(Cell(pending, self._nodes))
                    pending = {}
            else:
                body.append(module)
        if stem is None:
            raise RuntimeError("a cell space always has a stem")
        return Network(
            stem,
            body,
            head or nn.Identity(),
            width,
            self.num_classes,
            self._spec["classifier"]["dropout"],
        )

    # -- string form ----------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        self.check(arch)
        edges = self._edge_ops(arch)
        nodes = [
            "|" + "|".join(f"{edges[f'{i}->{j}']}~{i}" for i in range(j)) + "|"
            for j in range(1, self._nodes)
        ]
        return "+".join(nodes)

    def parse(self, text: str) -> Architecture:
        groups = self._nodes - 1

        def form() -> str:  # the expected form, with an example of this space (on errors only)
            return (
                f"expected {groups} groups joined by '+', one per node after node 0 of the "
                f"{self._nodes}; node j's group lists its j incoming edges as "
                f"<op>~<source node>, each between '|' (like {self.format(self.random(0))!r})"
            )

        if not isinstance(text, str):
            raise NasConfigError(f"space '{self.name}': {form()}")
        nodes = [part.strip() for part in text.strip().split("+")]
        if len(nodes) != groups:
            raise NasConfigError(
                f"space '{self.name}': {text!r} has {len(nodes)} "
                f"group{'s' * (len(nodes) != 1)}; {form()}"
            )
        ops = self._spec["cell"]["ops"]
        choices: dict[str, Choice] = {}
        for j, part in enumerate(nodes, start=1):
            if not (part.startswith("|") and part.endswith("|")):
                raise NasConfigError(
                    f"space '{self.name}': node {j}'s group {part!r} must start and end with "
                    f"'|'; {form()}"
                )
            edges = [e.strip() for e in part[1:-1].split("|")]
            if len(edges) != j:
                raise NasConfigError(
                    f"space '{self.name}': node {j} needs {j} edges (from nodes "
                    f"{', '.join(map(str, range(j)))}), got {len(edges)} in {part!r}; {form()}"
                )
            for i, edge in enumerate(edges):
                m = _EDGE.match(edge)
                if not m or int(m["src"]) != i:
                    raise NasConfigError(
                        f"space '{self.name}': edge {edge!r} of node {j} must be '<op>~{i}' "
                        f"(its source, node {i}); {form()}"
                    )
                op = m["op"].strip()
                if op not in ops:
                    raise NasConfigError(
                        f"space '{self.name}': edge {edge!r} of node {j}: unknown op "
                        f"'{op}'{label_hint(op, self._ops)}",
                        allowed=ops,
                        value=op,
                    )
                choices[f"{i}->{j}"] = op
        return self.from_choices(choices, source=f"space '{self.name}' string {text!r}")
