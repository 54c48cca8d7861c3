"""Chain spaces (MobileNet / FBNet / MnasNet style): stem, searchable stages, head, classifier.

DSL (``type: chain``)::

    name: mobilenet_digits
    type: chain
    input: {channels: 1, height: 8, width: 8}
    num_classes: 10
    width_divisor: 8                 # optional: every width must be a multiple of this
    ops:                             # optional op library: label -> op spec
      mb_k3_e3: mbconv_k3_e3_relu6
    stem: {op: conv_k3_relu6, width: 16, stride: 1}
    stages:
      - {depth: [1, 2], width: [16, 24], stride: 1, ops: [mb_k3_e3, mbconv_k5_e6]}
    head: {op: conv1x1, width: 64}   # optional
    classifier: {dropout: 0.1}       # optional

Parameters: ``s{i}.depth``, ``s{i}.width``, ``s{i}.stride`` (when a stage has 2+ choices) and
``s{i}.l{j}`` (the op of layer j, for every j below the stage's largest depth). Layers beyond the
chosen depth are padded with ``skip`` in the canonical architecture, so the parameter list has a
fixed length and every sampler sees every dimension.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from torch import nn

from nas._config import Node
from nas._errors import NasConfigError
from nas.space._architecture import Architecture, Choice
from nas.space._layers import Layer
from nas.space._network import Network
from nas.space._ops import OpSpec, parse_op
from nas.space._space import (
    SearchSpace,
    ceil_div,
    label_hint,
    read_classifier,
    read_fixed_op,
    read_header,
    read_op_choices,
    read_op_library,
)

__all__ = ["ChainSpace"]

PAD = "skip"
Shape = tuple[int, int, int]
_STAGE_TOKEN = re.compile(r"^([ws])(\d+)$")


class ChainSpace(SearchSpace):
    """A sequence of stages; each stage picks depth, width, stride and one op per layer."""

    type_name = "chain"

    @classmethod
    def _parse(cls, node: Node) -> ChainSpace:
        spec = read_header(node, cls.type_name)
        library = read_op_library(node.get("ops", None))
        divisor = node.get("width_divisor", 1).as_int(min=1)
        spec["width_divisor"] = divisor
        used: dict[str, OpSpec] = {}

        def width(n: Node) -> int:
            w = n.as_int(min=1)
            if w % divisor:
                lower, upper = w // divisor * divisor, (w // divisor + 1) * divisor
                near = f"{lower} or {upper}" if lower else str(upper)
                raise n.error(
                    f"width {w} is not a multiple of width_divisor {divisor}; use {near}"
                )
            return w

        stem_node = node.get("stem")
        stem_node.done(("op", "width", "stride"))  # unknown keys first: 'channels:' for 'width:'
        stem = {
            "op": read_fixed_op(stem_node.get("op"), library).name,
            "width": width(stem_node.get("width")),
            "stride": stem_node.get("stride", 1).as_int(min=1),
        }
        stages: list[dict[str, Any]] = []
        for s in node.get("stages").list():
            s.done(("depth", "width", "stride", "ops"))
            stage_ops = read_op_choices(s.get("ops"), library)
            used.update(stage_ops)
            stages.append(
                {
                    "depth": sorted(s.get("depth").as_ints(min=1)),
                    "width": [width(w) for w in s.get("width").list(allow_scalar=True)],
                    "stride": sorted(s.get("stride", 1).as_ints(min=1)),
                    "ops": list(stage_ops),
                }
            )
            if len(set(stages[-1]["width"])) != len(stages[-1]["width"]):
                raise s.get("width").error(
                    f"repeated values in {stages[-1]['width']}; keep one of each"
                )
        head = None
        if node.get("head", None).value is not None:
            h = node.get("head")
            h.done(("op", "width"))
            head = {"op": read_fixed_op(h.get("op"), library).name, "width": width(h.get("width"))}
        spec["ops"] = {label: op.name for label, op in used.items()}
        spec["stem"] = stem
        spec["stages"] = stages
        spec["head"] = head
        spec["classifier"] = read_classifier(node.get("classifier", None))
        node.done()
        space = cls(spec)
        space._validate(node)
        return space

    def __init__(self, spec: dict[str, Any]) -> None:
        self._ops = {label: parse_op(text) for label, text in spec["ops"].items()}
        self._stages = spec["stages"]
        super().__init__(spec)

    def _validate(self, node: Node) -> None:
        """Check every op at every width and stride it can meet, and the resolution."""
        stem = self._spec["stem"]
        zero = (
            "'zero' outputs all zeros, which in a chain makes every later layer's input, and the "
            "network's output, a constant; it belongs on the edges of cell spaces (type: cell)"
        )
        for i, stage in enumerate(self._stages):
            for label in stage["ops"]:
                if self._ops[label].type == "zero":
                    where = node.get("stages").child(i, None).child("ops", None)
                    raise where.error(
                        f"op '{label}': {zero}; use 'skip' to drop a layer (an identity, or a "
                        "strided 1x1 conv + BN where the width or resolution changes)"
                    )
        c, h, w = self.input_shape
        problem = parse_op(stem["op"]).op().check(c, stem["width"], stem["stride"])
        if problem:
            raise node.get("stem").error(problem)
        h, w = ceil_div(h, stem["stride"]), ceil_div(w, stem["stride"])
        res = min(h, w)
        stages_node = node.get("stages")
        prev = [stem["width"]]
        for i, stage in enumerate(self._stages):
            where = stages_node.child(i, None)
            for label in stage["ops"]:
                op = self._ops[label].op()
                for stride in stage["stride"]:
                    for cout in stage["width"]:
                        for cin in prev:
                            problem = op.check(cin, cout, stride) or op.check(cout, cout, 1)
                            if problem:
                                raise where.child("ops", None).error(f"op '{label}': {problem}")
            biggest = max(stage["stride"])
            if res / biggest < 1:
                raise where.child("stride", None).error(
                    f"stride {biggest} shrinks the {res}x{res} feature map below 1 pixel; "
                    "use a smaller stride or a larger input"
                )
            res = ceil_div(res, biggest)
            prev = stage["width"]
        head = self._spec["head"]
        if head is not None:
            for cin in prev:
                problem = parse_op(head["op"]).op().check(cin, head["width"], 1)
                if problem:
                    raise node.get("head").error(problem)

    # -- parameters -----------------------------------------------------------------------------
    def _parameters(self) -> dict[str, tuple[Choice, ...]]:
        params: dict[str, tuple[Choice, ...]] = {}
        for i, stage in enumerate(self._stages):
            for key in ("depth", "width", "stride"):
                if len(stage[key]) > 1:
                    params[f"s{i}.{key}"] = tuple(stage[key])
            if len(stage["ops"]) > 1:
                for j in range(max(stage["depth"])):
                    params[f"s{i}.l{j}"] = tuple(stage["ops"])
        return params

    def _padding(self, key: str) -> Choice | None:
        return PAD if ".l" in key else None

    def _stage(self, choices: Any, i: int) -> tuple[int, int, int, list[str]]:
        """(depth, width, stride, active op labels) of stage ``i``."""
        stage = self._stages[i]
        depth, width, stride = (
            choices.get(f"s{i}.{k}", stage[k][0]) for k in ("depth", "width", "stride")
        )
        ops = [choices.get(f"s{i}.l{j}", stage["ops"][0]) for j in range(depth)]
        return depth, width, stride, ops

    def _canonical(self, choices: dict[str, Choice]) -> dict[str, Choice]:
        out = dict(choices)
        for i, stage in enumerate(self._stages):
            depth = choices.get(f"s{i}.depth", stage["depth"][0])
            for j in range(max(stage["depth"])):
                key = f"s{i}.l{j}"
                if key in out:
                    if j >= depth:  # type: ignore[operator]
                        out[key] = PAD
                    elif out[key] == PAD and PAD not in stage["ops"]:
                        raise NasConfigError(f"parameter {key!r}: '{PAD}' only pads unused layers")
        return out

    def effective(self, arch: Architecture) -> Architecture:
        """``arch`` without its identity layers, which compute nothing.

        A skip layer whose input already has its output's width and resolution is
        ``nn.Identity``: every skip of a stage but the first, and the first where the stage
        keeps the previous width at stride 1. A stage keeps its other layers in order and is
        padded with identity skips up to the smallest depth it allows, so ``w48 skip`` and
        ``w48 skip skip skip`` build the same model (whatever the first skip does).
        """
        self.check(arch)
        skips = sorted(label for label, op in self._ops.items() if op.type == "skip")
        if not skips:
            return arch
        choices = dict(arch.choices)
        cin = self._spec["stem"]["width"]
        for i, stage in enumerate(self._stages):
            _, width, stride, ops = self._stage(arch.choices, i)
            keep = [
                label
                for j, label in enumerate(ops)
                if label not in skips or (j == 0 and (stride != 1 or cin != width))
            ]
            cin = width
            if len(keep) == len(ops):
                continue
            depth = min(d for d in stage["depth"] if d >= max(len(keep), 1))
            pad = next(label for label in skips if label in stage["ops"])
            keep += [pad] * (depth - len(keep))
            if f"s{i}.depth" in self._params:
                choices[f"s{i}.depth"] = depth
            for j, label in enumerate(keep):
                if f"s{i}.l{j}" in self._params:
                    choices[f"s{i}.l{j}"] = label
        return arch if choices == arch.choices else self.from_choices(choices)

    def size(self) -> int:
        total = 1
        for stage in self._stages:
            n_ops = len(stage["ops"])
            per_depth = sum(n_ops**d for d in stage["depth"])
            total *= per_depth * len(stage["width"]) * len(stage["stride"])
        return total

    # -- layers and model -----------------------------------------------------------------------
    def _plan(self, arch: Architecture) -> list[tuple[str, str, OpSpec, int, int]]:
        """(name, label, op, cout, stride) for every layer before the classifier."""
        self.check(arch)
        stem = self._spec["stem"]
        plan = [("stem", stem["op"], parse_op(stem["op"]), stem["width"], stem["stride"])]
        for i in range(len(self._stages)):
            _, width, stride, ops = self._stage(arch.choices, i)
            for j, label in enumerate(ops):
                plan.append(
                    (f"stages.{i}.{j}", label, self._ops[label], width, stride if j == 0 else 1)
                )
        head = self._spec["head"]
        if head is not None:
            plan.append(("head", head["op"], parse_op(head["op"]), head["width"], 1))
        return plan

    def layer_slots(self) -> dict[str, tuple[str, ...]]:
        def dynamic(*names: str) -> tuple[str, ...]:
            return tuple(n for n in names if n in self._params)

        strides: tuple[str, ...] = ()  # the strides that set the resolution reaching a stage
        slots: dict[str, tuple[str, ...]] = {"stem": ()}
        for i, stage in enumerate(self._stages):
            into = dynamic(f"s{i - 1}.width") if i else ()
            own = dynamic(f"s{i}.width", f"s{i}.stride")
            for j in range(max(stage["depth"])):
                optional = dynamic(f"s{i}.depth") if j >= min(stage["depth"]) else ()
                slot = dynamic(f"s{i}.l{j}") + own + optional + strides + (into if j == 0 else ())
                slots[f"stages.{i}.{j}"] = slot
            strides += dynamic(f"s{i}.stride")
        last = dynamic(f"s{len(self._stages) - 1}.width")
        if self._spec["head"] is not None:
            slots["head"] = last + strides
            slots["classifier"] = strides
        else:
            slots["classifier"] = last + strides
        return slots

    def possible_layers(self) -> tuple[Layer, ...]:
        found: dict[str, Layer] = {}

        def add(name: str, label: str, op: OpSpec, shape: Shape, cout: int, stride: int) -> Layer:
            layer = Layer.profiled(name, label, op, shape, stride, cout)
            found.setdefault(layer.signature, layer)
            return layer

        stem = self._spec["stem"]
        first = add(
            "stem",
            stem["op"],
            parse_op(stem["op"]),
            self.input_shape,
            stem["width"],
            stem["stride"],
        )
        shapes = {first.out_shape}  # possible (C, H, W) entering the next stage
        for i, stage in enumerate(self._stages):
            following: set[Shape] = set()
            for c, h, w in shapes:
                for stride, cout, label in itertools.product(
                    stage["stride"], stage["width"], stage["ops"]
                ):
                    out = add(f"stages.{i}.0", label, self._ops[label], (c, h, w), cout, stride)
                    if max(stage["depth"]) > 1:
                        add(f"stages.{i}.1", label, self._ops[label], out.out_shape, cout, 1)
                    following.add(out.out_shape)
            shapes = following
        head = self._spec["head"]
        if head is not None:
            shapes = {
                add("head", head["op"], parse_op(head["op"]), shape, head["width"], 1).out_shape
                for shape in shapes
            }
        for shape in shapes:
            layer = classifier_layer(shape, self.num_classes)
            found.setdefault(layer.signature, layer)
        return tuple(found.values())

    def layers(self, arch: Architecture) -> tuple[Layer, ...]:
        shape = self.input_shape
        out: list[Layer] = []
        for name, label, op, cout, stride in self._plan(arch):
            out.append(Layer.profiled(name, label, op, shape, stride, cout))
            shape = out[-1].out_shape
        out.append(classifier_layer(shape, self.num_classes))
        return tuple(out)

    def layer_module(self, name: str) -> str:
        # stage i's layers are the modules of body[i], in order (see _build)
        return "body." + name.removeprefix("stages.") if name.startswith("stages.") else name

    def _build(self, arch: Architecture) -> nn.Module:
        plan = self._plan(arch)
        cin = self.input_shape[0]
        modules: dict[str, nn.Module] = {}
        for name, _, op, cout, stride in plan:
            modules[name] = op.op().build(cin, cout, stride)
            cin = cout
        stages = []
        for i in range(len(self._stages)):
            stages.append(
                nn.Sequential(*[m for n, m in modules.items() if n.startswith(f"stages.{i}.")])
            )
        head = modules.get("head", nn.Identity())
        return Network(
            modules["stem"],
            stages,
            head,
            cin,
            self.num_classes,
            self._spec["classifier"]["dropout"],
        )

    # -- string form ----------------------------------------------------------------------------
    def _plain(self) -> bool:
        """Whether the string form is only op labels (no depth, width or stride choices)."""
        return all(len(s[k]) == 1 for s in self._stages for k in ("depth", "width", "stride"))

    def format(self, arch: Architecture) -> str:
        self.check(arch)
        parts = []
        for i, stage in enumerate(self._stages):
            _, width, stride, ops = self._stage(arch.choices, i)
            tokens = [f"w{width}"] if len(stage["width"]) > 1 else []
            tokens += [f"s{stride}"] if len(stage["stride"]) > 1 else []
            parts.append(" ".join(tokens + ops))
        return " ".join(parts) if self._plain() else " | ".join(parts)

    def parse(self, text: str) -> Architecture:
        if not isinstance(text, str) or not text.strip():
            raise NasConfigError(f"space '{self.name}': expected an architecture string")
        if "|" in text or len(self._stages) == 1:
            groups = [g.split() for g in text.split("|")]
        elif self._plain():
            tokens, groups = text.split(), []
            want = sum(stage["depth"][0] for stage in self._stages)
            if len(tokens) != want:
                raise NasConfigError(
                    f"space '{self.name}': expected {want} ops separated by spaces, got "
                    f"{len(tokens)} in {text!r} (e.g. {self.format(self.random(0))!r})"
                )
            for stage in self._stages:
                groups.append(tokens[: stage["depth"][0]])
                tokens = tokens[stage["depth"][0] :]
        else:
            raise NasConfigError(
                f"space '{self.name}': separate the {len(self._stages)} stages with '|' "
                f"(e.g. {self.format(self.random(0))!r})"
            )
        if len(groups) != len(self._stages):
            cell = " (a cell-space string: this space is a chain)" if "~" in text else ""
            raise NasConfigError(
                f"space '{self.name}': expected {len(self._stages)} stages separated by '|', got "
                f"{len(groups)} in {text!r}{cell}; e.g. {self.format(self.random(0))!r}"
            )
        choices: dict[str, Choice] = {}
        for i, (stage, tokens) in enumerate(zip(self._stages, groups, strict=True)):
            ops = []
            for token in tokens:
                m = _STAGE_TOKEN.match(token)
                if m and token not in stage["ops"]:
                    key = {"w": "width", "s": "stride"}[m[1]]
                    choices[f"s{i}.{key}"] = int(m[2])
                elif token in stage["ops"]:
                    ops.append(token)
                else:
                    raise NasConfigError(
                        f"space '{self.name}': stage {i}: unknown op "
                        f"'{token}'{label_hint(token, self._ops)}",
                        allowed=stage["ops"],
                        value=token,
                    )
            if len(ops) not in stage["depth"]:
                raise NasConfigError(
                    f"space '{self.name}': stage {i} has {len(ops)} "
                    f"layer{'s' * (len(ops) != 1)}; allowed depths "
                    f"{stage['depth']}"
                )
            if len(stage["depth"]) > 1:
                choices[f"s{i}.depth"] = len(ops)
            if len(stage["ops"]) > 1:
                for j in range(max(stage["depth"])):
                    choices[f"s{i}.l{j}"] = ops[j] if j < len(ops) else PAD
            for key in ("width", "stride"):
                if len(stage[key]) > 1 and f"s{i}.{key}" not in choices:
                    raise NasConfigError(
                        f"space '{self.name}': stage {i} needs its {key} "
                        f"('{key[0]}<int>', one of {stage[key]})"
                    )
        return self.from_choices(choices, source=f"space '{self.name}' string {text!r}")


def classifier_layer(shape: tuple[int, int, int], num_classes: int) -> Layer:
    """Global average pooling + linear classifier as one layer."""
    c = shape[0]
    return Layer(
        name="classifier",
        label="classifier",
        op=OpSpec("classifier"),
        in_shape=shape,
        out_shape=(num_classes, 1, 1),
        stride=1,
        params=c * num_classes + num_classes,
        macs=c * num_classes,
    )
