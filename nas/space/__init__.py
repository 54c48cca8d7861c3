"""Search spaces: the DSL, the op library, architectures and the models they build."""

from nas.space._architecture import SCHEMA_VERSION, Architecture
from nas.space._cell import CellSpace
from nas.space._chain import ChainSpace
from nas.space._layers import Layer, LayerTable
from nas.space._ops import LayerProfile, Op, OpSpec, list_ops, parse_op, profile_layer, register_op
from nas.space._slots import LayerSlots, SlotValues
from nas.space._space import (
    ImportFailure,
    SearchSpace,
    builtin_space_dir,
    changed_op_modules,
    import_file_op_modules,
    import_op_module,
    import_op_modules,
    list_spaces,
    load_space,
    op_module_digests,
    op_module_folders,
    space_from_dict,
)

__all__ = [
    "SCHEMA_VERSION",
    "Architecture",
    "CellSpace",
    "ChainSpace",
    "Layer",
    "LayerProfile",
    "LayerSlots",
    "LayerTable",
    "Op",
    "OpSpec",
    "SearchSpace",
    "SlotValues",
    "builtin_space_dir",
    "changed_op_modules",
    "ImportFailure",
    "import_file_op_modules",
    "import_op_module",
    "import_op_modules",
    "list_ops",
    "list_spaces",
    "load_space",
    "op_module_digests",
    "op_module_folders",
    "parse_op",
    "profile_layer",
    "register_op",
    "space_from_dict",
]
