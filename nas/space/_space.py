"""SearchSpace: the base every space type implements, and loading spaces by name or path."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._config import Node, load_yaml
from nas._errors import NasConfigError, nearest, raised_in_user_code
from nas._io import file_sha256
from nas.space._architecture import Architecture, Choice, short_hash
from nas.space._layers import Layer, LayerTable
from nas.space._ops import LayerCounter, OpSpec, list_ops, op_family, parse_op

__all__ = [
    "SearchSpace",
    "builtin_space_dir",
    "list_spaces",
    "load_space",
    "space_from_dict",
]

Shape = tuple[int, int, int]
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_SPACE_TYPES: dict[str, type[SearchSpace]] = {}


class SearchSpace(ABC):
    """A set of architectures described by a fixed list of categorical parameters.

    Every space compiles to the same parameter names and choices for every architecture
    (:meth:`parameters`), so Optuna's samplers model every dimension jointly. Subclasses parse
    their DSL section in ``_parse``, and implement :meth:`layers`, :meth:`build`,
    :meth:`format` and :meth:`parse`.

    A space is immutable once constructed; all methods are safe to call from several threads.
    """

    type_name: str = ""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec
        self.name: str = spec["name"]
        self.description: str = spec.get("description", "")
        self.input_shape: Shape = tuple(spec["input"])  # type: ignore[assignment]
        self.num_classes: int = spec["num_classes"]
        self.hash: str = short_hash(spec)
        #: what ``load_space`` takes to load the space again, for hints: the YAML file it was
        #: read from, ``<name or file>@CxHxW:N`` for one adapted to other data ("" from a dict)
        self.source: str = ""
        self._params: dict[str, tuple[Choice, ...]] = self._parameters()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            _SPACE_TYPES[cls.type_name] = cls

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hash={self.hash!r})"

    def __eq__(self, other: object) -> bool:
        """Two spaces are equal when they define the same architectures (the same spec, so
        the same hash), wherever they were read from."""
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return type(self) is type(other) and self.name == other.name and self.hash == other.hash

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name, self.hash))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Load and strictly validate a space file; errors name the file, line and key."""
        space = _from_node(load_yaml(path))
        space.source = str(path)
        return space

    def to_dict(self) -> dict[str, Any]:
        """The canonical spec (every default filled in); ``space_from_dict`` inverts it."""
        return json.loads(json.dumps(self._spec))

    def adapted(self, input_shape: Sequence[int], num_classes: int) -> SearchSpace:
        """This space for data of ``input_shape`` ``(C, H, W)`` with ``num_classes`` classes
        (itself when they are its own): a space of its own, named ``<name>_<C>x<H>x<W>_c<N>``
        (tables hold a version per name), which ``load_space("<name>@<C>x<H>x<W>:<N>")``
        loads again."""
        shape = tuple(int(x) for x in input_shape)
        if shape == tuple(self.input_shape) and num_classes == self.num_classes:
            return self
        size = "x".join(map(str, shape))
        spec = self.to_dict()
        spec.update(name=f"{self.name}_{size}_c{num_classes}", input=list(shape))
        spec["num_classes"] = num_classes
        space = space_from_dict(spec, source=f"space '{self.name}' at input {size}")
        builtin = (builtin_space_dir() / f"{self.name}.yaml").resolve()
        base = self.name if Path(self.source or ".").resolve() == builtin else self.source
        space.source = f"{base or self.name}@{size}:{num_classes}"
        return space

    @abstractmethod
    def _parameters(self) -> dict[str, tuple[Choice, ...]]:
        """Parameter name -> choices, in a fixed order (only parameters with 2+ choices)."""

    # -- parameters and architectures -----------------------------------------------------------
    def parameters(self) -> dict[str, tuple[Choice, ...]]:
        """Optuna categorical parameters: name -> choices, the same for every architecture."""
        return dict(self._params)

    def _canonical(self, choices: dict[str, Choice]) -> dict[str, Choice]:
        """Choices with inactive parameters set to their canonical padding value."""
        return choices

    def from_choices(self, choices: Mapping[str, Any], *, source: str = "choices") -> Architecture:
        """Validate a full mapping of parameter -> choice and return the canonical architecture."""
        if not isinstance(choices, Mapping):
            raise NasConfigError(f"{source}: expected a mapping of parameter -> choice")
        for key in choices:
            if key not in self._params:
                raise NasConfigError(
                    f"{source}: unknown parameter {key!r} for space '{self.name}'",
                    allowed=list(self._params)[:12],
                    value=key,
                )
        clean: dict[str, Choice] = {}
        for key, allowed in self._params.items():
            if key not in choices:
                raise NasConfigError(f"{source}: missing parameter {key!r} of space '{self.name}'")
            value = choices[key]
            if value not in allowed and value != self._padding(key):
                raise NasConfigError(
                    f"{source}: parameter {key!r} has no choice {value!r}",
                    allowed=allowed,
                    value=value,
                )
            clean[key] = value
        return Architecture(self.name, self.hash, self._canonical(clean))

    def _padding(self, key: str) -> Choice | None:
        """The value an inactive parameter takes in canonical form (None when it cannot be)."""
        return None

    def to_params(self, arch: Architecture) -> dict[str, Choice]:
        """Optuna parameter values reproducing ``arch`` (for ``study.enqueue_trial``)."""
        self.check(arch)
        return {
            k: (v if v in self._params[k] else self._params[k][0]) for k, v in arch.choices.items()
        }

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(N, P)`` choice indices of ``archs``, one column per :meth:`parameters` entry in
        its order: the integer codes vectorized cost models and samplers index tables with."""
        index = self._choice_index
        out = np.zeros((len(archs), len(index)), dtype=np.int64)
        for row, arch in enumerate(archs):
            params = self.to_params(arch)
            out[row] = [choices[params[k]] for k, choices in index.items()]
        return out

    @functools.cached_property
    def _choice_index(self) -> dict[str, dict[Choice, int]]:
        return {k: {v: i for i, v in enumerate(c)} for k, c in self._params.items()}

    def effective(self, arch: Architecture) -> Architecture:
        """The canonical, cheapest architecture computing the same function as ``arch``.

        Architectures with the same effective form differ only in work whose result is never
        used or in how equivalent parts are laid out (for cells: edges off every path to the
        output, nodes that merely forward their input, the order of interchangeable nodes):
        they compute the same function, up to constant feature maps and the weights' values.
        Spaces without zero ops return ``arch``. The default sampler models accuracy on this
        form (``nas.search.CostAwareSampler``).
        """
        self.check(arch)
        return arch

    def graph_pruned(self, arch: Architecture) -> Architecture:
        """``arch`` without the layers whose output nothing reads: what a graph runtime runs.

        Graph runtimes (TFLite, ONNX Runtime, TensorRT) drop computations whose results reach
        no output; eager PyTorch runs them. Layers fed only zeros still run in both. Cost
        models of such runtimes (``skips_unread``) charge the layers of this form. Spaces
        without zero ops return ``arch``.
        """
        self.check(arch)
        return arch

    def sample(self, trial: Any) -> Architecture:
        """Suggest every parameter from an Optuna trial and return the architecture."""
        values = {k: trial.suggest_categorical(k, list(c)) for k, c in self._params.items()}
        return self.from_choices(values)

    def random(self, rng: np.random.Generator | int | None = None) -> Architecture:
        """An architecture with every parameter drawn uniformly (seeded by ``rng``)."""
        rng = _generator(rng)
        values = {k: c[int(rng.integers(len(c)))] for k, c in self._params.items()}
        return self.from_choices(values)

    def random_distinct(
        self, n: int, rng: np.random.Generator | int | None = None
    ) -> list[Architecture]:
        """``n`` distinct architectures, each drawn uniformly (seeded by ``rng``) and kept in the
        order first drawn; when ``n`` is most of the space, all of it shuffled and cut to ``n``.
        """
        size = self.size()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise NasConfigError(f"n: expected an integer >= 0, got {n!r}")
        if n > size:
            raise NasConfigError(f"space '{self.name}' has only {size:,} architectures, not {n}")
        rng = _generator(rng)
        if 2 * n > size:
            every = list(self.enumerate())
            return [every[i] for i in rng.permutation(len(every))[:n]]
        seen: dict[str, Architecture] = {}
        while len(seen) < n:
            arch = self.random(rng)
            seen.setdefault(arch.arch_id, arch)
        return list(seen.values())

    @abstractmethod
    def size(self) -> int:
        """Number of distinct architectures (distinct canonical forms)."""

    def enumerate(self, limit: int = 10_000_000) -> Iterator[Architecture]:
        """Every distinct architecture; refuses spaces larger than ``limit``."""
        if self.size() > limit:
            raise NasConfigError(
                f"space '{self.name}' has {self.size():.3g} architectures, more than {limit:,} "
                "to enumerate; sample it instead"
            )
        seen: set[str] = set()
        keys = list(self._params)
        for values in itertools.product(*self._params.values()):
            arch = self.from_choices(dict(zip(keys, values, strict=True)))
            if arch.arch_id not in seen:
                seen.add(arch.arch_id)
                yield arch

    def check(self, arch: Architecture) -> None:
        """Raise NasConfigError unless ``arch`` belongs to this space."""
        if not isinstance(arch, Architecture):
            hint = " (parse a string first: space.parse(text))" if isinstance(arch, str) else ""
            raise TypeError(f"expected an Architecture, got {type(arch).__name__}{hint}")
        if arch.space != self.name or arch.space_hash != self.hash:
            raise NasConfigError(
                f"architecture {arch.arch_id} is from space '{arch.space}' (hash "
                f"{arch.space_hash}), not from '{self.name}' (hash {self.hash}); load it with "
                "the space it was searched in"
            )

    # -- models and costs -----------------------------------------------------------------------
    @abstractmethod
    def layers(self, arch: Architecture) -> tuple[Layer, ...]:
        """The layers ``arch`` builds, with shapes, parameters and MACs."""

    @abstractmethod
    def _build(self, arch: Architecture) -> nn.Module: ...

    def build(self, arch: Architecture, *, seed: int | None = None) -> nn.Module:
        """A freshly initialized ``torch.nn.Module`` for ``arch`` (seeded when ``seed`` is given).

        The model maps ``(N, *input_shape)`` to ``(N, num_classes)`` logits.
        """
        self.check(arch)
        if seed is None:
            model = self._build(arch)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self._build(arch)
        model.input_shape = tuple(self.input_shape)  # what inputs it takes (Network)
        return model

    @abstractmethod
    def layer_slots(self) -> dict[str, tuple[str, ...]]:
        """Every layer position (``Layer.name``) any architecture can have, with the parameters
        that decide which layer sits there (and whether one does). A cost that is a sum over
        layers is then a sum of small tables, one per slot, indexed by those parameters."""

    @abstractmethod
    def possible_layers(self) -> tuple[Layer, ...]:
        """Every distinct layer (op, input shape, output width, stride) any architecture of the
        space can contain, one per signature: what a lookup table must cover."""

    def peak_activation_elems(self, layers: Sequence[Layer]) -> int:
        """Most activation elements alive at once at batch 1 in a model made of ``layers`` (from
        :meth:`layers`); by default the most one layer holds (:attr:`Layer.live_elems`: its
        input and output, inside a block also its expanded tensors and its input).

        An override must stay the largest of ``peak_activation_elems([layer])`` over the
        layers: the search tabulates it per layer slot (``Evaluator.free_metrics_many``).
        """
        return max(layer.live_elems for layer in layers)

    def layer_module(self, name: str) -> str:
        """Where the layer called ``name`` (:attr:`Layer.name`) sits in the module
        :meth:`build` returns, as a ``get_submodule`` path."""
        return name

    def describe(self, arch: Architecture, *, model: nn.Module | None = None) -> LayerTable:
        """Layer table with shapes, parameters and MACs; ``print`` it for a readable table.

        Args:
            arch: The architecture.
            model: Its built model with other channel counts (a structurally pruned one):
                each layer is then counted on its module in ``model``, so the table shows the
                widths the model really has, not the searched ones.
        """
        layers = self.layers(arch)
        if model is not None:
            layers = self._count_layers(layers, model)
        return LayerTable(
            arch_id=arch.arch_id,
            string=self.format(arch),
            layers=layers,
            peak_activation_elems=self.peak_activation_elems(layers),
        )

    def _count_layers(self, layers: Sequence[Layer], model: nn.Module) -> tuple[Layer, ...]:
        """``layers`` as they are in ``model``: each counted on its module in one forward pass
        (a layer's spatial shapes and stride are the searched ones: pruning keeps them)."""
        counters = [
            LayerCounter(model.get_submodule(self.layer_module(layer.name))).attach()
            for layer in layers
        ]
        training = model.training
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, *self.input_shape))
        finally:
            model.train(training)  # counted in eval mode, left in its own
            for counter in counters:
                counter.detach()
        counted = []
        for layer, counter in zip(layers, counters, strict=True):
            prof = counter.profile(spatial=layer.out_shape[1:])  # raises if it did not run
            assert counter.x is not None  # (profile checked it)
            counted.append(
                dataclasses.replace(
                    layer,
                    in_shape=(int(counter.x.shape[1]), *layer.in_shape[1:]),
                    out_shape=prof.out_shape,
                    params=prof.params,
                    macs=prof.macs,
                    hidden_elems=prof.hidden_elems,
                    peak_elems=prof.peak_elems,
                )
            )
        return tuple(counted)

    # -- string form ----------------------------------------------------------------------------
    @abstractmethod
    def format(self, arch: Architecture) -> str:
        """One-line string form of ``arch`` (NB201 arch string for cell spaces)."""

    @abstractmethod
    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; raises NasConfigError naming what does not parse."""


# -- shared parsing helpers ----------------------------------------------------------------------


def read_label(node: Node) -> str:
    label = node.as_str()
    if not _LABEL.match(label):
        raise node.error(
            f"op label {label!r} must start with a letter or '_' and use only letters, digits, "
            "'_', '.', '-'"
        )
    return label


def read_op(node: Node, library: Mapping[str, OpSpec] | None = None) -> OpSpec:
    """An op spec string at ``node`` (or a label of ``library``), with the parse error located
    there."""
    text = node.as_str()
    if library and text in library:
        return library[text]
    try:
        return parse_op(text)
    except NasConfigError as exc:
        raise node.error(exc.reason) from None


def label_hint(text: str, labels: Mapping[str, OpSpec]) -> str:
    """`` (the op spec 'rcb_k1' is labelled 'conv1' in this space)`` where ``text`` is the spec
    of one of ``labels``; '' otherwise. Architecture strings name ops by label."""
    try:
        name = parse_op(text).name
    except NasConfigError:
        return ""
    same = [label for label, spec in labels.items() if spec.name == name]
    return f" (the op spec '{text}' is labelled '{same[0]}' in this space)" if same else ""


def read_fixed_op(node: Node, library: Mapping[str, OpSpec]) -> OpSpec:
    """The op of a layer every architecture has (stem, head, a cell space's reduction): a label
    from ``ops:`` or an op spec, and never a zero op."""
    spec = read_op(node, library)
    if spec.type == "zero":
        raise node.error(
            f"'{node.as_str()}' is a zero op: it outputs all zeros, so every later layer's "
            "input, and the network's output, would be a constant; give an op that computes "
            "(skip passes its input through)"
        )
    return spec


def read_op_library(node: Node) -> dict[str, OpSpec]:
    """The optional top-level ``ops:`` mapping of label -> op spec."""
    if node.value is None:
        return {}
    return {read_label(node.child(k, k)): read_op(v) for k, v in node.items()}


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """``rng`` as a generator: a seed must be an integer >= 0 (numpy's own error for '1' or
    -1 names its SeedSequence)."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise NasConfigError(
            f"rng: expected a seed (an integer >= 0), a numpy Generator or None, got {rng!r}"
        )
    return np.random.default_rng(rng)


def read_op_choices(node: Node, library: dict[str, OpSpec]) -> dict[str, OpSpec]:
    """A list of op labels (from ``library``) or op spec strings -> label -> spec."""
    out: dict[str, OpSpec] = {}
    for item in node.list(allow_scalar=True):
        text = item.as_str()
        if text in library:
            spec = library[text]
        else:
            try:
                spec = parse_op(text)
            except NasConfigError as exc:
                if library and op_family(text) is None:  # neither a label nor a built-in op
                    raise item.error(
                        f"unknown op '{text}': neither a label under 'ops:' nor a built-in op "
                        "spec (such as skip or mbconv_k3_e6)",
                        allowed=[*library, *(op for op in list_ops() if op not in library)],
                        value=text,
                    ) from None
                # a label mistyped into something op-like (skip_conect): only a near miss, or
                # every mistyped spec (mbconv_k3_x3) would be offered a label (mb_k3_e3)
                close = difflib.get_close_matches(text, list(library), n=1, cutoff=0.85)
                guess = close[0] if close else None
                if guess is not None:
                    raise item.error(
                        f"unknown op '{text}': not a label under 'ops:' (did you mean "
                        f"'{guess}'?), and as a built-in op spec: {exc.reason}"
                    ) from None
                raise item.error(exc.reason) from None
            read_label(item)
        if text in out:
            raise item.error(f"op '{text}' listed twice; keep one")
        same = next((label for label, other in out.items() if other.name == spec.name), None)
        if same is not None:  # two labels, one op: the same models counted (and trained) twice
            raise item.error(f"op '{text}' is the same op as '{same}' ({spec.name}); keep one")
        out[text] = spec
    return out


def read_input(node: Node) -> Shape:
    """``input: {channels, height, width}`` or ``input: [C, H, W]``."""
    if isinstance(node.value, list):
        items = node.list()
        if len(items) != 3:
            raise node.error("expected [channels, height, width]")
        return tuple(i.as_int(min=1) for i in items)  # type: ignore[return-value]
    node.done(("channels", "height", "width"))
    shape = (
        node.get("channels").as_int(min=1),
        node.get("height").as_int(min=1),
        node.get("width").as_int(min=1),
    )
    return shape


def read_header(node: Node, type_name: str) -> dict[str, Any]:
    name = node.get("name").as_str()
    if not _LABEL.match(name):
        raise node.get("name").error(f"space name {name!r} must be a plain identifier")
    node.get("type")
    header = {
        "name": name,
        "type": type_name,
        "description": node.get("description", "").value or "",
        "input": list(read_input(node.get("input"))),
        "num_classes": node.get("num_classes").as_int(min=2),
    }
    imports = node.get("imports", None)
    if imports.value is not None:  # before the ops are read: they may register some
        header["imports"] = [_import_module(item) for item in imports.list()]
    return header


def _import_module(node: Node) -> str:
    """Import the Python module a space's ``imports:`` names (ops it registers with
    :func:`register_op`), looked up beside the space file, in the working directory, then on
    ``sys.path``."""
    name = node.as_str()
    if not all(part.isidentifier() for part in name.split(".")):
        raise node.error(f"expected a Python module name such as my_ops, got {name!r}")
    source = Path(str(node.file or ""))
    here = source.parent if source.is_file() else None
    problem = import_op_module(name, [f for f in (here, Path.cwd()) if f is not None])
    if problem is not None:
        put = "beside the space file" if here is not None else ""
        raise node.error(f"cannot import module '{name}' ({problem}); {problem.advice(name, put)}")
    return name


@dataclasses.dataclass(frozen=True)
class ImportFailure:
    """Why a module a space imports did not import: not ``found`` anywhere looked, or found
    and broken (``reason`` then says where: a syntax error, an exception, an op type
    registered twice)."""

    reason: str
    found: bool

    def __str__(self) -> str:
        return self.reason

    def advice(self, name: str, put: str) -> str:
        """What to do about it: fix the module where it broke, or put it where it is looked
        for (``put``: 'beside the space file', ...)."""
        if self.found:
            return f"fix {name}.py"
        places = ", ".join(p for p in (put, "in the working directory") if p)
        return f"put {name}.py {places}, or on PYTHONPATH"


def import_op_module(name: str, folders: Sequence[Path]) -> ImportFailure | None:
    """Import module ``name`` (one a space's ``imports:`` names), looking in ``folders`` first,
    then on ``sys.path``; why it cannot be imported, or None once it is."""
    import importlib
    import sys

    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        importlib.import_module(name)
    except SyntaxError as exc:
        where = f"{Path(exc.filename or name).name}:{exc.lineno}"
        return ImportFailure(f"{where}: {type(exc).__name__}: {exc.msg}", found=True)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return ImportFailure(str(exc), found=False)
        # the module was found; something it imports was not
        return ImportFailure(f"{raised_in_user_code(exc) or name}: {exc}", found=True)
    except Exception as exc:  # the user's module raised while it was imported
        where = raised_in_user_code(exc) or name
        return ImportFailure(f"{where}: {type(exc).__name__}: {exc}", found=True)
    finally:
        for folder in added:
            sys.path.remove(folder)
    return None


def import_op_modules(
    spec: Mapping[str, Any],
    recorded: Mapping[str, str],
    first: Sequence[Path],
    *,
    where: str,
    put: str,
) -> None:
    """Import the modules a space spec takes its ops from (its ``imports:``), looking in
    ``first``, then where each was found when the spec was recorded (``recorded``: name ->
    folder, :func:`op_module_folders`), then in the working directory and on ``sys.path``;
    one that cannot be imported raises naming ``where`` and where to ``put`` it."""
    names = spec.get("imports")
    if not isinstance(names, list):
        return  # (none; or malformed, which the space's own checks name)
    for name in (n for n in names if isinstance(n, str)):
        folders = [*first, *([Path(recorded[name])] if name in recorded else []), Path.cwd()]
        problem = import_op_module(name, folders)
        if problem is None:
            continue
        was = ""
        if name in recorded and not problem.found:
            was = f"; it was found in {recorded[name]} when {where} was written"
        raise NasConfigError(
            f"{where}: the space's ops come from module '{name}', which cannot be imported "
            f"({problem}){was}; {problem.advice(name, put)}"
        )


def import_file_op_modules(path: Path, doc: Mapping[str, Any]) -> None:
    """Import the modules of ops the space of an ``arch.json`` (``doc``, read from ``path``)
    takes, looking beside the file, then where they were found when it was written."""
    spec, recorded = doc.get("space_spec"), doc.get("op_modules")
    if isinstance(spec, Mapping):  # (else the space's own checks say what is wrong)
        import_op_modules(
            spec,
            recorded if isinstance(recorded, Mapping) else {},
            [path.resolve().parent],
            where=str(path),
            put=f"beside {path.name}",
        )


def op_module_folders(space: SearchSpace) -> dict[str, str]:
    """The folder each module a space imports was loaded from (``imports:``), for a file that
    must find them again in another process (an ``arch.json``); modules that are packages'
    or have no file are left out."""
    import sys

    found = {}
    for name in space.to_dict().get("imports", []):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and "." not in name:
            found[name] = str(Path(file).resolve().parent)
    return found


def op_module_digests(space: SearchSpace) -> dict[str, str]:
    """The sha256 of each module file a space's ops come from (``imports:``): the space's
    hash covers its YAML, not the code of its own ops, so a study or an ``arch.json`` records
    these to say when that code has changed since."""
    import sys

    found = {}
    for name in space.to_dict().get("imports", []):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and Path(file).is_file():
            found[name] = file_sha256(file)
    return found


def changed_op_modules(recorded: Any, space: SearchSpace) -> list[str]:
    """The modules whose file differs now from the digests ``recorded`` (see
    :func:`op_module_digests`), as ``my_ops.py``."""
    if not isinstance(recorded, Mapping):
        return []
    now = op_module_digests(space)
    return [f"{name}.py" for name, digest in recorded.items() if now.get(name, digest) != digest]


def read_classifier(node: Node) -> dict[str, Any]:
    if node.value is None:
        return {"dropout": 0.0}
    out = {"dropout": node.get("dropout", 0.0).as_float(min=0.0, max=0.99)}
    node.done()
    return out


def _from_node(node: Node) -> SearchSpace:
    type_name = node.get("type").as_choice(sorted(_SPACE_TYPES))
    return _SPACE_TYPES[type_name]._parse(node)  # type: ignore[attr-defined]


def space_from_dict(spec: Mapping[str, Any], *, source: str = "space spec") -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.to_dict` (validated like a YAML file)."""
    if not isinstance(spec, Mapping):
        raise NasConfigError(f"{source}: expected a mapping")
    return _from_node(Node(dict(spec), file=source))


def builtin_space_dir() -> Path:
    """The ``search_spaces/`` folder of the checkout this package was installed from."""
    return Path(__file__).resolve().parents[2] / "search_spaces"


def list_spaces() -> list[str]:
    """Names of the built-in spaces (the YAML files in ``search_spaces/``)."""
    folder = builtin_space_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """A space from a built-in name (``nasbench201``), a YAML path, an architecture file
    (``arch.json``: the exact space of the run it came from, whose input and class count a run
    adapts to its data), or a space (returned as is)."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise NasConfigError(
            f"expected a search space's name or path, got {type(name_or_path).__name__}"
        )
    text = str(name_or_path)
    if "\n" in text:  # the YAML itself, not its path
        raise NasConfigError(
            "expected a search space's name or path, got YAML text; read text with "
            "nas.space.space_from_dict(yaml.safe_load(text))"
        )
    if not text.strip():
        raise NasConfigError(
            f"expected a search space (a built-in name: {', '.join(list_spaces())}; or a YAML "
            "path), got an empty string"
        )
    path = Path(text)
    base, at, size = text.rpartition("@")
    if at and not path.exists():  # SPACE@CxHxW[:N]: the space adapted to other data
        match = re.fullmatch(r"(\d+)x(\d+)x(\d+)(?::(\d+))?", size)
        if not match or not base or min(int(x) for x in match.groups("1")) < 1:
            raise NasConfigError(
                f"space {text!r}: expected SPACE@CxHxW or SPACE@CxHxW:CLASSES after the '@' "
                "(the space at another input shape and class count, e.g. "
                "mobilenet_small@1x28x28:10)"
            )
        space = load_space(base)
        classes = int(match[4]) if match[4] else space.num_classes
        return space.adapted(tuple(int(x) for x in match.groups()[:3]), classes)
    if path.is_dir() and (path / "arch.json").is_file():  # an export folder
        path = path / "arch.json"
    elif path.is_dir():
        raise NasConfigError(f"{path}: is a folder; name a space's YAML file in it")
    if path.suffix == ".json" and path.is_file():
        from nas._io import read_json_object

        doc = read_json_object(path)
        if "space_spec" not in doc:
            raise NasConfigError(
                f"{path}: no 'space_spec' key: not an architecture file of a run; pass a space "
                "name, a space's YAML file, or a run's architectures/<arch_id>.json"
            )
        import_file_op_modules(path, doc)
        return space_from_dict(doc["space_spec"], source=f"{path}: space_spec")
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        space = SearchSpace.from_yaml(path)
        _check_not_a_builtin_name(space, path)
        return space
    builtin = builtin_space_dir() / f"{text}.yaml"
    if builtin.exists():
        return SearchSpace.from_yaml(builtin)
    names = list_spaces()
    guess = nearest(text, names)
    hint = f" (did you mean '{guess}'?)" if guess else ""
    raise NasConfigError(
        f"unknown search space '{text}': not a built-in space ({', '.join(names) or 'none found'})"
        f" nor a YAML file{hint}"
    )


def _check_not_a_builtin_name(space: SearchSpace, path: Path) -> None:
    """A space file may not take a built-in space's name unless it holds the same space:
    tables, architecture files and hints find spaces by name, and would mix the two up."""
    builtin = builtin_space_dir() / f"{space.name}.yaml"
    if not builtin.is_file() or builtin.resolve() == path.resolve():
        return
    if SearchSpace.from_yaml(builtin).hash != space.hash:
        name = load_yaml(path).get("name")
        raise name.error(
            f"'{space.name}' is the name of a built-in space that this file defines "
            f"differently; give this space its own name (for example 'name: my_{space.name}')"
        )


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
