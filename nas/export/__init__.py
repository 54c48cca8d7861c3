"""Getting found architectures out: arch.json files, export folders (safetensors, ONNX, INT8 ONNX,
``torch.export``, model card), and models rebuilt from them."""

from nas.export._archfile import load_architecture, read_architecture_file, write_architecture_file
from nas.export._bundle import (
    export_float,
    export_int8,
    pruning_chain,
    write_int8_file,
    write_model_card,
)
from nas.export._onnx import OnnxModule, export_onnx, onnx_session, optimized_graph

__all__ = [
    "OnnxModule",
    "export_float",
    "export_int8",
    "export_onnx",
    "load_architecture",
    "onnx_session",
    "optimized_graph",
    "pruning_chain",
    "read_architecture_file",
    "write_architecture_file",
    "write_int8_file",
    "write_model_card",
]
