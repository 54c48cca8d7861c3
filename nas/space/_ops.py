"""The operation library: one registered class per op type, parsed from short spec strings.

An op spec string is the op type followed by optional ``_``-separated tokens::

    mbconv_k5_e6_se_hswish   -> MBConv, kernel 5, expansion 6, squeeze-excite, h-swish
    conv_k3_relu6            -> Conv-BN-ReLU6 with a 3x3 kernel
    avgpool_k3               -> 3x3 average pooling
    fused_mbconv_k3_e4       -> fused MBConv

Tokens: ``k<int>`` or ``<int>x<int>`` kernel, ``e<int>`` expansion, ``g<int>`` groups, ``se``
squeeze-excite, and an activation (``relu``, ``relu6``, ``hswish``, ``swish``, ``linear``).
Each op class says which tokens it takes and their defaults. Adding an op is one class with
``@register_op`` and a ``build`` method; parameter and MAC counts are taken from the module it
builds (see :func:`profile_layer`), so they can never disagree with the model.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nas._errors import NasConfigError, raised_in_user_code

__all__ = [
    "ACTIVATIONS",
    "LayerProfile",
    "Op",
    "OpSpec",
    "list_ops",
    "op_family",
    "parse_op",
    "profile_layer",
    "register_op",
]

Shape = tuple[int, int, int]  # (C, H, W), batch excluded

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "linear": nn.Identity,
}

_REGISTRY: dict[str, type[Op]] = {}


@dataclass(frozen=True)
class OpSpec:
    """A parsed op: its type and the values of its parameters (``None`` where it takes none)."""

    type: str
    kernel: int | None = None
    expansion: int | None = None
    groups: int | None = None
    se: bool | None = None
    act: str | None = None

    @property
    def name(self) -> str:
        """Canonical spec string with every parameter spelled out (``mbconv_k3_e6_g1_relu``)."""
        parts = [self.type]
        if self.kernel is not None:
            parts.append(f"k{self.kernel}")
        if self.expansion is not None:
            parts.append(f"e{self.expansion}")
        if self.groups is not None:
            parts.append(f"g{self.groups}")
        if self.se:
            parts.append("se")
        if self.act is not None:
            parts.append(self.act)
        return "_".join(parts)

    def op(self) -> Op:
        return _REGISTRY[self.type](self)


class Op(ABC):
    """A candidate operation of a search space.

    Subclasses set ``type_name`` and ``defaults`` (the tokens they accept, with default values)
    and implement :meth:`build`. An op is stateless; ``build`` returns a fresh module each call.
    Contract: for input ``(N, cin, H, W)`` the module returns ``(N, cout, ceil(H/stride),
    ceil(W/stride))``.
    """

    type_name: ClassVar[str]
    defaults: ClassVar[dict[str, object]] = {}

    def __init__(self, spec: OpSpec) -> None:
        self.spec = spec

    # typed views of the spec; parse_op fills every parameter an op declares in ``defaults``
    @property
    def kernel(self) -> int:
        return self.spec.kernel or 1

    @property
    def expansion(self) -> int:
        return self.spec.expansion or 1

    @property
    def groups(self) -> int:
        return self.spec.groups or 1

    @property
    def se(self) -> bool:
        return bool(self.spec.se)

    @property
    def act(self) -> str:
        return self.spec.act or "linear"

    @abstractmethod
    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        """A module computing this op from ``cin`` to ``cout`` channels at ``stride``."""

    def check(self, cin: int, cout: int, stride: int) -> str | None:
        """Why this op cannot map ``cin`` to ``cout`` at ``stride``, or None when it can."""
        groups = self.groups
        for name, value in (("input width", cin), ("output width", cout)):
            if value % groups:
                return f"{name} {value} does not divide into {groups} groups"
        return None


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator adding an op type to the library; a duplicate name is an error."""
    had = _REGISTRY.get(cls.type_name)
    same = had is not None and had.__module__ == cls.__module__  # (a module imported again)
    if had is not None and not (same and had.__qualname__ == cls.__qualname__):
        raise ValueError(
            f"op type '{cls.type_name}' is already registered (by {had.__module__}."
            f"{had.__qualname__}); give {cls.__qualname__} another type_name"
        )
    _REGISTRY[cls.type_name] = cls
    return cls


def list_ops() -> list[str]:
    """Names of all registered op types."""
    return sorted(_REGISTRY)


_TOKEN = re.compile(r"^(?:k(?P<k>\d+)|(?P<kk>\d+)x(?P<kk2>\d+)|e(?P<e>\d+)|g(?P<g>\d+))$")


def op_family(text: str) -> str | None:
    """The built-in op an op spec string names (``mbconv`` for ``mbconv_k5_e6``), or None."""
    parts = text.split("_")
    return next(
        (
            "_".join(parts[:cut])
            for cut in range(len(parts), 0, -1)
            if "_".join(parts[:cut]) in _REGISTRY
        ),
        None,
    )


@functools.lru_cache(maxsize=4096)
def parse_op(text: str) -> OpSpec:
    """Parse an op spec string such as ``mbconv_k5_e6_se``; raises NasConfigError if malformed."""
    if not isinstance(text, str) or not text:
        raise NasConfigError(f"expected an op spec string, got {text!r}")
    family = op_family(text)
    if family is None:
        raise NasConfigError(
            f"unknown op '{text}' (an op of your own: list the module that registers it under "
            "the space's imports:)",
            allowed=list_ops(),
            value=text.split("_", 1)[0],
        )
    cls, rest = _REGISTRY[family], text[len(family) :].split("_")[1:]
    values: dict[str, object] = {}
    for token in rest:
        m = _TOKEN.match(token)
        value: bool | int | str
        if token == "se":
            key, value = "se", True
        elif token in ACTIVATIONS:
            key, value = "act", token
        elif m and m["k"]:
            key, value = "kernel", int(m["k"])
        elif m and m["kk"]:
            if m["kk"] != m["kk2"]:
                raise NasConfigError(f"op '{text}': only square kernels are supported")
            key, value = "kernel", int(m["kk"])
        elif m and m["e"]:
            key, value = "expansion", int(m["e"])
        elif m and m["g"]:
            key, value = "groups", int(m["g"])
        else:
            allowed = ["k<int>", "e<int>", "g<int>", "se", *ACTIVATIONS]
            raise NasConfigError(
                f"op '{text}': unknown token '{token}'", allowed=allowed, value=token
            )
        if key not in cls.defaults:
            takes = ", ".join(cls.defaults) or "no parameters"
            raise NasConfigError(f"op '{text}': {cls.type_name} takes {takes}, not {key}")
        if key in values:
            raise NasConfigError(f"op '{text}': {key} given twice")
        if key == "kernel" and isinstance(value, int) and (value < 1 or value % 2 == 0):
            raise NasConfigError(f"op '{text}': kernel must be odd and >= 1, got {value}")
        if key in ("expansion", "groups") and isinstance(value, int) and value < 1:
            raise NasConfigError(f"op '{text}': {key} must be >= 1, got {value}")
        values[key] = value
    merged = {**cls.defaults, **values}
    return OpSpec(type=cls.type_name, **merged)  # type: ignore[arg-type]


# -- building blocks -------------------------------------------------------------------------


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, act: str):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[act](),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) with the MobileNetV3 hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle, so grouped 1x1 convs mix information across groups."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Residual(nn.Module):
    """``body(x) + x`` when shapes allow it (stride 1, same width), else ``body(x)``."""

    def __init__(self, body: nn.Module, use_skip: bool) -> None:
        super().__init__()
        self.body = body
        self.use_skip = use_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.use_skip else out


class Zero(nn.Module):
    """Outputs zeros of the right shape (the 'none' edge of a DARTS/NB201 cell)."""

    def __init__(self, cout: int, stride: int) -> None:
        super().__init__()
        self.cout = cout
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] == self.cout:
            return x.mul(0.0)
        return x.new_zeros(x.shape[0], self.cout, x.shape[2], x.shape[3])


def _project(cin: int, cout: int, stride: int) -> nn.Module:
    """1x1 conv + BN that changes width and/or resolution (shortcut of skip and pool ops)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


# -- the op library -------------------------------------------------------------------------


@register_op
class Conv(Op):
    """Conv kxk -> BN -> activation."""

    type_name = "conv"
    defaults = {"kernel": 3, "groups": 1, "act": "relu"}

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return ConvBNAct(cin, cout, self.kernel, stride, self.groups, self.act)


@register_op
class Conv1x1(Conv):
    """Pointwise conv -> BN -> activation (``conv1x1`` is ``conv_k1``)."""

    type_name = "conv1x1"
    defaults = {"groups": 1, "act": "relu"}

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return ConvBNAct(cin, cout, 1, stride, self.groups, self.act)


@register_op
class ReLUConvBN(Op):
    """ReLU -> conv kxk -> BN, NAS-Bench-201's ``nor_conv`` (Dong & Yang 2020)."""

    type_name = "rcb"
    defaults = {"kernel": 3}

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        k = self.kernel
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(cout),
        )


@register_op
class DepthwiseSeparable(Op):
    """Depthwise kxk -> BN -> act -> pointwise 1x1 -> BN -> act (MobileNetV1)."""

    type_name = "dwsep"
    defaults = {"kernel": 3, "act": "relu"}

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(
            ConvBNAct(cin, cin, self.kernel, stride, cin, self.act),
            ConvBNAct(cin, cout, 1, 1, 1, self.act),
        )


@register_op
class MBConv(Op):
    """Inverted residual (MobileNetV2/V3, FBNet): expand 1x1 -> depthwise kxk -> [SE] -> project.

    Expansion 1 has no expand conv. Groups > 1 make both 1x1 convs grouped, with a channel
    shuffle after the expansion (FBNet's ``_g2`` blocks). The residual is used when the stride
    is 1 and the width is unchanged.
    """

    type_name = "mbconv"
    defaults = {"kernel": 3, "expansion": 6, "groups": 1, "se": False, "act": "relu"}

    def check(self, cin: int, cout: int, stride: int) -> str | None:
        return super().check(cin, cout, stride) or super().check(
            cin * self.expansion,
            cout,
            stride,
        )

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        hidden = cin * self.expansion
        layers: list[nn.Module] = []
        if self.expansion != 1:
            layers.append(ConvBNAct(cin, hidden, 1, 1, self.groups, self.act))
            if self.groups != 1:
                layers.append(ChannelShuffle(self.groups))
        layers.append(ConvBNAct(hidden, hidden, self.kernel, stride, hidden, self.act))
        if self.se:
            layers.append(SqueezeExcite(hidden))
        layers += [
            nn.Conv2d(hidden, cout, 1, bias=False, groups=self.groups),
            nn.BatchNorm2d(cout),
        ]
        return Residual(nn.Sequential(*layers), use_skip=stride == 1 and cin == cout)


@register_op
class FusedMBConv(Op):
    """Fused MBConv (EfficientNetV2): conv kxk expand -> [SE] -> project 1x1 (none at e1)."""

    type_name = "fused_mbconv"
    defaults = {"kernel": 3, "expansion": 4, "se": False, "act": "relu"}

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        if self.expansion == 1:
            body: list[nn.Module] = [ConvBNAct(cin, cout, self.kernel, stride, 1, self.act)]
            if self.se:
                body.append(SqueezeExcite(cout))
        else:
            hidden = cin * self.expansion
            body = [ConvBNAct(cin, hidden, self.kernel, stride, 1, self.act)]
            if self.se:
                body.append(SqueezeExcite(hidden))
            body += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        return Residual(nn.Sequential(*body), use_skip=stride == 1 and cin == cout)


@register_op
class Skip(Op):
    """Identity; where width or resolution changes, a strided 1x1 conv + BN (FBNet's Skip)."""

    type_name = "skip"

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Identity() if stride == 1 and cin == cout else _project(cin, cout, stride)


@register_op
class ZeroOp(Op):
    """Zero output: removes an edge of a cell ('none' in NAS-Bench-201 and DARTS)."""

    type_name = "zero"

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return Zero(cout, stride)


class _Pool(Op):
    defaults = {"kernel": 3}

    @abstractmethod
    def pool(self, stride: int) -> nn.Module: ...

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        pool = self.pool(stride)
        if cin == cout:
            return pool
        # NB201's POOLING preprocesses with a 1x1 conv when widths differ
        return nn.Sequential(_project(cin, cout, 1), pool)


@register_op
class AvgPool(_Pool):
    """kxk average pooling (padding not counted, as in NAS-Bench-201)."""

    type_name = "avgpool"

    def pool(self, stride: int) -> nn.Module:
        k = self.kernel
        return nn.AvgPool2d(k, stride, k // 2, count_include_pad=False)


@register_op
class MaxPool(_Pool):
    """kxk max pooling."""

    type_name = "maxpool"

    def pool(self, stride: int) -> nn.Module:
        k = self.kernel
        return nn.MaxPool2d(k, stride, k // 2)


@register_op
class BNAct(Op):
    """BatchNorm -> activation, no conv (NAS-Bench-201's ``lastact``); keeps the width."""

    type_name = "bnact"
    defaults = {"act": "relu"}

    def check(self, cin: int, cout: int, stride: int) -> str | None:
        if cin != cout or stride != 1:
            return f"bnact keeps width and resolution, but {cin}->{cout} at stride {stride}"
        return None

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm2d(cout), ACTIVATIONS[self.act]())


class _ResNetBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(OpSpec("rcb", kernel=3)).build(cin, cout, stride)
        self.conv_b = ReLUConvBN(OpSpec("rcb", kernel=3)).build(cout, cout, 1)
        if stride == 2:
            self.downsample: nn.Module = nn.Sequential(
                nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False)
            )
        elif cin != cout:
            self.downsample = ReLUConvBN(OpSpec("rcb", kernel=1)).build(cin, cout, 1)
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


@register_op
class ResNetBlock(Op):
    """ResNet basic block with ReLU-Conv-BN convs: NAS-Bench-201's reduction block."""

    type_name = "resnet_block"

    def check(self, cin: int, cout: int, stride: int) -> str | None:
        if stride not in (1, 2):
            return f"resnet_block supports stride 1 or 2, got {stride}"
        return None

    def build(self, cin: int, cout: int, stride: int) -> nn.Module:
        return _ResNetBasicBlock(cin, cout, stride)


# -- costs taken from the built module ------------------------------------------------------


@dataclass(frozen=True)
class LayerProfile:
    """Size and work of one op at one shape, counted on the module it builds.

    ``macs`` counts multiply-accumulates of convolutions and linear layers at batch 1 (the
    convention of fvcore, thop and NAS-Bench-201's FLOPs); ``params`` counts every parameter.
    ``hidden_elems`` counts the activation elements the op's convolutions and linear layers
    produce inside it, all but the last one's output: an MBConv's expanded and depthwise
    outputs, a depthwise-separable conv's depthwise output, 0 for a single convolution.
    ``peak_elems`` is the most activation elements alive at once while the op runs: its input
    and output, or, inside a block, one inner layer's input and output plus the block's input
    (kept for the residual).
    """

    out_shape: Shape
    params: int
    macs: int
    hidden_elems: int = 0
    peak_elems: int = 0


class LayerCounter:
    """Counts one layer's parameters, MACs and activations on its module as it runs.

    Hooked on a layer's module and on its convolutions and linear layers (:meth:`attach`), it
    records during a forward pass what :class:`LayerProfile` holds, so a layer counted alone
    (:func:`profile_layer`) and the same layer counted inside a whole model (a pruned one, with
    its own channel counts: ``SearchSpace.describe(arch, model=...)``) agree.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.macs = self.peak = 0
        self.produced: list[int] = []  # output elements of each convolution and linear layer
        self.x: torch.Tensor | None = None  # the layer's input, as it ran
        self.out: torch.Tensor | None = None
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self) -> LayerCounter:
        self._hooks.append(self.module.register_forward_pre_hook(self._enter))
        self._hooks.append(self.module.register_forward_hook(self._leave))
        for inner in self.module.modules():
            if isinstance(inner, (nn.Conv2d, nn.Linear)):
                self._hooks.append(inner.register_forward_hook(self._count))
        return self

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _enter(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.x = inputs[0]

    def _leave(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], out: Any) -> None:
        self.out = out

    def _count(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], out: Any) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            self.macs += out.numel() * (module.in_channels // module.groups) * k
        else:
            self.macs += out.numel() * module.in_features
        self.produced.append(out.numel())
        x = self.x
        kept = 0 if x is None or inputs[0] is x else x.numel()  # the block's input: residual
        self.peak = max(self.peak, inputs[0].numel() + out.numel() + kept)

    def profile(self, spatial: tuple[int, int] | None = None) -> LayerProfile:
        """What the last forward pass counted; ``spatial`` is the layer's output ``(H, W)``
        when the module's own output has none (a classifier's logits)."""
        if self.x is None or self.out is None:
            raise RuntimeError("the layer's module did not run")
        height, width = spatial if spatial is not None else self.out.shape[2:4]
        return LayerProfile(
            out_shape=(int(self.out.shape[1]), int(height), int(width)),
            params=sum(p.numel() for p in self.module.parameters()),
            macs=self.macs,
            hidden_elems=sum(self.produced[:-1]),
            peak_elems=max(self.peak, self.x[:1].numel() + self.out[:1].numel()),
        )


@functools.lru_cache(maxsize=65536)
def profile_layer(op: OpSpec, in_shape: Shape, cout: int, stride: int) -> LayerProfile:
    """Output shape, parameters and MACs of ``op`` applied to a ``(C, H, W)`` input.

    The module is built on the meta device (no memory, no initialization) and run once there,
    so the counts come from the very module :meth:`Op.build` returns.
    """
    impl = op.op()
    what = f"op {op.name} ({in_shape[0]} -> {cout} channels, stride {stride})"
    try:
        with torch.device("meta"):
            module = impl.build(in_shape[0], cout, stride).eval()
            counter = LayerCounter(module).attach()
            module(torch.empty(1, *in_shape, device="meta"))
    except Exception as exc:
        if type(impl).__module__.startswith("nas."):
            raise  # a bug of ours: its traceback is what helps
        at = raised_in_user_code(exc) or "its module's forward, inside torch"
        raise NasConfigError(
            f"{what}: {type(impl).__name__} from {type(impl).__module__} failed on a "
            f"{'x'.join(map(str, in_shape))} input at {at}: "
            f"{type(exc).__name__}: {exc}; fix its build() (or its module's forward)"
        ) from None
    counter.detach()
    profile = counter.profile()
    expected = (cout, -(-in_shape[1] // stride), -(-in_shape[2] // stride))
    if profile.out_shape != expected:  # every count, cost and shape after it would be wrong
        got, want = ("x".join(map(str, t)) for t in (profile.out_shape, expected))
        raise NasConfigError(
            f"{what}: on a {'x'.join(map(str, in_shape))} input its module returns {got}, "
            f"not {want}; an op's build(cin, cout, stride) must return (N, cout, "
            "ceil(H/stride), ceil(W/stride)) (see nas.space.Op)"
        )
    return profile
