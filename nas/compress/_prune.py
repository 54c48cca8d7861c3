"""Pruning a trained model: structured (fewer channels, a smaller dense model) and unstructured.

Structured pruning uses Torch-Pruning's dependency graph (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023): layers whose channels must be removed together (a conv and its
BatchNorm, every layer on a residual stream, a depthwise conv and the convs around it, the two
sides of a squeeze-excite gate) form one group, and a group loses the same channels everywhere,
so the pruned model is again a plain dense network.

A pruned model has other widths than ``space.build(arch)`` gives. :func:`shape_overrides` lists
those differences as JSON-ready data, and :func:`apply_shape_overrides` re-applies them to a
freshly built model, so that ``arch.json`` + ``pruned`` + a state_dict rebuild the pruned model
without pickling modules (see :mod:`nas.export`).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from nas._errors import NasConfigError
from nas._trace import check_images

# Zero and ChannelShuffle are not public in nas.space, but their forward depends on channel
# counts (Zero.cout) or on how channels are laid out (ChannelShuffle), so pruning must know them.
from nas.space._ops import ChannelShuffle, Zero

__all__ = [
    "apply_shape_overrides",
    "prune_structured",
    "prune_unstructured",
    "shape_overrides",
    "sparsity_of",
]

logger = logging.getLogger(__name__)

#: importance criteria for :func:`prune_structured`: the norm degree of Torch-Pruning's
#: GroupMagnitudeImportance (group L1 / L2 norm of a channel's weights over its whole group)
IMPORTANCES = {"l1": 1, "l2": 2}

#: the int attributes that fix a module's shapes, per module type. Conv/BN/Linear are what
#: Torch-Pruning rewrites; Zero.cout and ChannelShuffle.groups are read by our ops' forward.
SHAPE_ATTRS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.BatchNorm2d: ("num_features",),
    nn.Linear: ("in_features", "out_features"),
    Zero: ("cout",),
    ChannelShuffle: ("groups",),
}


def _shape_attrs(module: nn.Module) -> tuple[str, ...]:
    for cls, attrs in SHAPE_ATTRS.items():
        if isinstance(module, cls):
            return attrs
    return ()


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- structured ----------------------------------------------------------------------------


class _ZeroProxy(nn.Module):
    """Stands in for a :class:`Zero` while the dependency graph is traced.

    ``Zero`` makes its output with ``new_zeros`` (or ``x * 0``), so DepGraph cannot see which
    channels its output shares with the other edges it is summed with; after pruning them its
    stale ``cout`` would no longer match. A 1x1 conv with the same stride gives the same output
    shape ``(N, cout, ceil(H/s), ceil(W/s))`` and is traced like any conv; its weights are zero so
    it adds nothing to the channel importances. Afterwards its ``out_channels`` is the pruned
    ``cout``.
    """

    def __init__(self, zero: Zero, cin: int) -> None:
        super().__init__()
        self.zero = zero
        self.conv = nn.Conv2d(cin, zero.cout, 1, zero.stride, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _trace_leaves(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[list[str], dict[str, int]]:
    """Leaf modules in execution order, and the input channel count of every :class:`Zero`."""
    order: list[str] = []
    zero_cin: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], name: str = name) -> None:
            order.append(name)
            if isinstance(m, Zero):
                zero_cin[name] = int(inputs[0].shape[1])

        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return order, zero_cin


def _convs_feeding_shuffles(model: nn.Module, order: list[str]) -> list[nn.Module]:
    """The conv run last before each :class:`ChannelShuffle`.

    DepGraph follows the shuffle's view/transpose/reshape as if channel ``i`` stayed channel
    ``i``, but a shuffle permutes channels (``(g, i) -> (i, g)``), so pruning "the same" indices
    on both sides would remove different channels. Ignoring that conv keeps its output channels
    (and everything coupled to them through the shuffle) whole; the 1x1 convs' residual-stream
    channels are still pruned, in equal numbers per conv group.
    """
    modules = dict(model.named_modules())
    feeding: list[nn.Module] = []
    last_conv: nn.Module | None = None
    for name in order:
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            last_conv = module
        elif isinstance(module, ChannelShuffle) and last_conv is not None:
            feeding.append(last_conv)
    return feeding


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise NasConfigError(f"`0 <= {name} < 1` must hold, but got {name}={value!r}")


def prune_structured(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    ratio: float,
    round_to: int = 8,
    importance: str = "l2",
) -> nn.Module:
    """A smaller dense copy of ``model`` with about ``ratio`` of its channels removed.

    Channels are grouped by Torch-Pruning's dependency graph (DepGraph, Fang et al. CVPR 2023)
    and ranked by the group magnitude of their weights. Pruning is *uniform*: every group (a
    residual stream, an MBConv's expanded width, a squeeze-excite bottleneck, ...) loses
    ``ratio`` of its channels, rather than one global threshold across groups. That keeps the
    width profile the search chose (and its cost model priced) in proportion, and no layer can be
    emptied. Each pruned group keeps a multiple of ``round_to`` channels (rounded to the nearest
    multiple, at least ``round_to``), since vector units and tensor cores run such widths best; a
    group narrower than ``round_to`` is left whole, so a small ``ratio`` may remove nothing.

    The input channels of the first conv never change, nor do the outputs of the classifier
    (Torch-Pruning's ``ignored_layers``; its ``in_features`` follow the head's width), so the
    output shape stays ``(N, num_classes)``. ``model`` is not modified.

    Ops DepGraph cannot see through are handled here: a :class:`~nas.space._ops.Zero` edge is
    traced as a zero 1x1 conv and its ``cout`` set to the pruned width afterwards; the conv
    feeding a channel shuffle keeps its width; a grouped conv loses the same channel offsets in
    each of its groups. Residual adds, depthwise convs, squeeze-excite and pools need nothing
    beyond Torch-Pruning itself.

    Args:
        model: A model built by :meth:`nas.space.SearchSpace.build` (or any conv net made of
            the ops in :mod:`nas.space`), trained or not.
        example_input: An input batch ``(N, C, H, W)`` on the model's device to trace the graph
            with; only its shape matters, and any resolution the model accepts will do.
        ratio: Fraction of each group's channels to remove, ``0 <= ratio < 1``.
        round_to: Kept channel counts are multiples of this (1: no rounding).
        importance: ``"l2"`` or ``"l1"``: norm of a channel's weights summed over its group.

    Returns:
        The pruned model, in eval mode unless ``model`` was in training mode.

    Raises:
        NasConfigError: ``ratio``, ``round_to`` or ``importance`` is out of range.

    Example:
        >>> import torch
        >>> from nas.space import load_space
        >>> space = load_space("mobilenet_small")
        >>> model = space.build(space.random(0), seed=0)
        >>> small = prune_structured(model, torch.randn(1, *space.input_shape), ratio=0.5)
        >>> small(torch.randn(2, *space.input_shape)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
        True
    """
    _check_fraction("ratio", ratio)
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise NasConfigError(f"round_to: expected an integer >= 1, got {round_to!r}")
    if importance not in IMPORTANCES:
        raise NasConfigError(
            f"unknown pruning importance {importance!r}", allowed=IMPORTANCES, value=importance
        )
    # (the graph is traced to find the channel groups: the pruned model takes any size)
    check_images(example_input, model, name="example_input", any_size=True)
    was_training = model.training
    pruned = copy.deepcopy(model).eval()  # eval: tracing must not update BatchNorm statistics
    if ratio == 0:
        return pruned.train(was_training)

    order, zero_cin = _trace_leaves(pruned, example_input)
    proxies = {}
    for name, cin in zero_cin.items():
        zero = pruned.get_submodule(name)
        assert isinstance(zero, Zero)  # _trace_leaves records Zero modules only
        proxies[name] = _ZeroProxy(zero, cin)
    for name, proxy in proxies.items():
        _set_submodule(pruned, name, proxy)

    ignored = _convs_feeding_shuffles(pruned, order)
    classifier = getattr(pruned, "classifier", None)
    linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    if isinstance(classifier, nn.Linear):
        ignored.append(classifier)
    elif linears:
        ignored.append(linears[-1])  # not a Network: the last Linear is taken as the classifier

    before = _num_params(pruned)
    _prune_groups(pruned, example_input, ignored, importance, ratio, round_to)
    for name, proxy in proxies.items():
        proxy.zero.cout = proxy.conv.out_channels
        _set_submodule(pruned, name, proxy.zero)
    logger.info(
        "pruned %.0f%% of the channels (round_to=%d, %s): %d -> %d parameters",
        100 * ratio,
        round_to,
        importance,
        before,
        _num_params(pruned),
    )
    return pruned.train(was_training)


def _prune_groups(
    model: nn.Module,
    example_input: torch.Tensor,
    ignored: list[nn.Module],
    importance: str,
    ratio: float,
    round_to: int,
) -> None:
    """Remove ``ratio`` of every prunable DepGraph group of ``model``, in place.

    Torch-Pruning's ``BasePruner`` does the same with ``global_pruning=False``, but (1.6) it
    rounds the kept count *down* to ``round_to``, which empties a group keeping fewer than
    ``round_to`` channels, and for grouped convs it rounds the per-conv-group count against the
    whole width (48 channels in 2 groups at ratio 0.5 keep 16, not 24). So the groups, the group
    importance and the pruning itself are Torch-Pruning's; the count is computed here.
    """
    import torch_pruning as tp

    scorer = tp.importance.GroupMagnitudeImportance(p=IMPORTANCES[importance])
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    plans = []  # (root module, its pruning function, channel indices to remove)
    for group in graph.get_all_groups(
        ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]
    ):
        imp = scorer(group)  # (C,) group norm of every channel, over all layers of the group
        if imp is None:
            continue
        # a grouped (not depthwise) conv in the group: remove the same offsets in every conv
        # group so that all conv groups keep equal widths (as BasePruner's channel groups do)
        n_groups = max(
            (
                dep.target.module.groups
                for dep, _ in group
                if isinstance(dep.target.module, nn.Conv2d)
                and dep.target.module.groups not in (1, dep.target.module.out_channels)
            ),
            default=1,
        )
        per_group = len(imp) // n_groups
        # the kept width n_groups * keep must be a multiple of round_to
        step = round_to // math.gcd(round_to, n_groups)
        keep = max(step, step * math.floor(per_group * (1 - ratio) / step + 0.5))
        if keep >= per_group:
            continue
        dim_imp = imp.view(n_groups, per_group).mean(dim=0)  # (C / n_groups,)
        drop = torch.argsort(dim_imp)[: per_group - keep]
        idxs = torch.cat([drop + g * per_group for g in range(n_groups)]).tolist()
        plans.append((group[0].dep.target.module, group[0].dep.handler, idxs))
    for module, handler, idxs in plans:
        group = graph.get_pruning_group(module, handler, idxs)
        if graph.check_pruning_group(group):
            group.prune()


# -- shapes as data ------------------------------------------------------------------------


def shape_overrides(model: nn.Module, reference: nn.Module) -> dict[str, dict[str, int]]:
    """The shape-fixing attributes where a pruned ``model`` differs from its unpruned build.

    Args:
        model: A model returned by :func:`prune_structured`.
        reference: The same architecture freshly built (``space.build(arch)``).

    Returns:
        ``{module name: {attribute: value}}`` for every Conv2d (``in_channels``,
        ``out_channels``, ``groups``), BatchNorm2d (``num_features``), Linear (``in_features``,
        ``out_features``), Zero (``cout``) and ChannelShuffle (``groups``) whose value changed;
        JSON-ready, empty for an unpruned model.

    Raises:
        NasConfigError: the two models do not have the same modules, or a module of a type not
            listed above has other parameter shapes (it could not be rebuilt).

    Example:
        >>> import torch
        >>> from nas.space import load_space
        >>> space = load_space("mobilenet_small")
        >>> arch = space.random(0)
        >>> small = prune_structured(space.build(arch), torch.randn(1, 1, 8, 8), ratio=0.5)
        >>> shape_overrides(small, space.build(arch))["stem.0"]
        {'out_channels': 8}
    """
    ref = dict(reference.named_modules())
    out: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        other = ref.pop(name, None)
        if other is None or type(other) is not type(module):
            found = "missing" if other is None else f"a {type(other).__name__}"
            raise NasConfigError(
                f"module {name!r} ({type(module).__name__}) is {found} in the reference model; "
                "pass the unpruned build of the same architecture"
            )
        attrs = _shape_attrs(module)
        changed = {
            a: int(getattr(module, a)) for a in attrs if getattr(module, a) != getattr(other, a)
        }
        if changed:
            out[name] = changed
        elif not attrs:
            for key, tensor in _own_tensors(module):
                ref_tensor = getattr(other, key, None)
                if ref_tensor is None or ref_tensor.shape != tensor.shape:
                    raise NasConfigError(
                        f"module {name!r}: {type(module).__name__}.{key} changed shape, but "
                        f"only {', '.join(c.__name__ for c in SHAPE_ATTRS)} can be rebuilt"
                    )
    if ref:
        raise NasConfigError(
            f"modules {sorted(ref)[:3]} of the reference model are missing from the pruned model"
        )
    return out


def _own_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)


def apply_shape_overrides(
    model: nn.Module, overrides: Mapping[str, Mapping[str, int]], *, source: str
) -> nn.Module:
    """Give a freshly built ``model`` the widths of a pruned one (the inverse of
    :func:`shape_overrides`); returns ``model``, changed in place.

    Parameters and buffers of the changed modules are re-allocated with the new shapes and
    re-initialized (``reset_parameters``); load the pruned model's ``state_dict`` afterwards.

    Args:
        model: ``space.build(arch)`` of the pruned model's architecture.
        overrides: ``{module name: {attribute: value}}`` from :func:`shape_overrides`.
        source: Where ``overrides`` came from (a file), for error messages.

    Raises:
        NasConfigError: an unknown module name or attribute, a value that is not a positive
            int, or groups that do not divide the channels; the message names ``source``.

    Example:
        >>> import torch
        >>> from nas.space import load_space
        >>> space = load_space("mobilenet_small")
        >>> arch = space.random(0)
        >>> model = apply_shape_overrides(
        ...     space.build(arch), {"stem.0": {"out_channels": 8}}, source="example"
        ... )
        >>> model.stem[0].weight.shape
        torch.Size([8, 1, 3, 3])
    """
    if not isinstance(overrides, Mapping):
        raise NasConfigError(f"{source}: pruned: expected a mapping of module names")
    modules = dict(model.named_modules())
    for name, attrs in overrides.items():
        module = modules.get(name)
        if module is None:
            raise NasConfigError(
                f"{source}: pruned: no module {name!r} in the model of this architecture"
                + _suggest(name, [n for n, m in modules.items() if _shape_attrs(m)])
            )
        allowed = _shape_attrs(module)
        if not isinstance(attrs, Mapping):
            raise NasConfigError(f"{source}: pruned: {name}: expected a mapping of attributes")
        for key, value in attrs.items():
            if key not in allowed:
                what = ", ".join(allowed) or "none"
                raise NasConfigError(
                    f"{source}: pruned: {name}: {type(module).__name__} has no shape attribute "
                    f"{key!r} (it has: {what})"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NasConfigError(
                    f"{source}: pruned: {name}.{key}: expected a positive int, got {value!r}"
                )
            setattr(module, key, value)
        _reallocate(module, name, source)
    return model


def _suggest(name: str, names: list[str]) -> str:
    from nas._errors import nearest

    guess = nearest(name, names)
    return f" (did you mean {guess!r}?)" if guess else ""


def _resize(module: nn.Module, key: str, shape: tuple[int, ...]) -> None:
    """Replace parameter or buffer ``key`` (if the module has it) by an uninitialized one."""
    old = getattr(module, key, None)
    if old is None:
        return
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    setattr(
        module, key, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new
    )


def _reallocate(module: nn.Module, name: str, source: str) -> None:
    """New (re-initialized) parameters and buffers for ``module``'s current shape attributes."""
    if isinstance(module, nn.Conv2d):
        g = module.groups
        if module.in_channels % g or module.out_channels % g:
            raise NasConfigError(
                f"{source}: pruned: {name}: in_channels {module.in_channels} and out_channels "
                f"{module.out_channels} must both be multiples of groups {g}"
            )
        # (C_out, C_in / groups, kH, kW), as nn.Conv2d allocates it
        _resize(
            module, "weight", (module.out_channels, module.in_channels // g, *module.kernel_size)
        )
        _resize(module, "bias", (module.out_channels,))
    elif isinstance(module, nn.BatchNorm2d):
        for key in ("weight", "bias", "running_mean", "running_var"):
            _resize(module, key, (module.num_features,))
    elif isinstance(module, nn.Linear):
        _resize(module, "weight", (module.out_features, module.in_features))
        _resize(module, "bias", (module.out_features,))
    else:
        return  # Zero, ChannelShuffle: the attribute is all there is
    module.reset_parameters()


# -- unstructured --------------------------------------------------------------------------


def _prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def prune_unstructured(
    model: nn.Module, *, sparsity: float, keep_masks: bool = False
) -> nn.Module:
    """A copy of ``model`` with the smallest ``sparsity`` of its conv and linear weights zeroed.

    One global magnitude threshold over all those weights (``torch.nn.utils.prune
    .global_unstructured`` with L1 magnitude), then ``prune.remove``: the zeros are plain values
    of ``weight``, with no masks or ``weight_orig`` left in the state_dict. Shapes do not change,
    so the model loads into ``space.build(arch)`` as is; the zeros only pay off with a sparse
    runtime or compression.

    Args:
        model: The model; not modified.
        sparsity: Fraction of the weights to zero, ``0 <= sparsity < 1``.
        keep_masks: Keep torch's pruning re-parametrization (``weight = weight_orig * mask``)
            so that fine-tuning cannot regrow the zeros; :func:`make_sparsity_permanent`
            removes it afterwards.

    Raises:
        NasConfigError: ``sparsity`` is out of range.

    Example:
        >>> from torch import nn
        >>> sparse = prune_unstructured(nn.Sequential(nn.Linear(10, 10)), sparsity=0.3)
        >>> sparsity_of(sparse)
        0.3
    """
    from torch.nn.utils import prune

    _check_fraction("sparsity", sparsity)
    pruned = copy.deepcopy(model)
    params = _prunable_weights(pruned)
    if sparsity == 0 or not params:
        return pruned
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    if keep_masks:
        return pruned
    make_sparsity_permanent(pruned)
    logger.info("zeroed %.1f%% of the conv/linear weights", 100 * sparsity_of(pruned))
    return pruned


def make_sparsity_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight in place (plain ``weight`` keys again)."""
    from torch.nn.utils import prune

    for module in model.modules():
        for key in [
            k
            for k in list(module._forward_pre_hooks.values())
            if isinstance(k, prune.BasePruningMethod)
        ]:
            prune.remove(module, key._tensor_name)
    return model


def sparsity_of(model: nn.Module) -> float:
    """Fraction of the conv and linear weights of ``model`` that are exactly zero (0 if none)."""
    total = zeros = 0
    for module, key in _prunable_weights(model):
        weight = getattr(module, key)
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return zeros / total if total else 0.0
