"""Silencing third-party chatter that says nothing to a user of this tool.

torchao logs a warning per optional CUDA kernel library it cannot load on a CPU machine; the ONNX
exporter logs one per torchvision op it skips when torchvision is absent and warns about
deprecated pytree internals. None of it concerns the user's model, and it buries the CLI's
progress lines. Real errors still raise.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["quiet_third_party"]

_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx", "torch.export", "torch._export")


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within the block: those loggers at ERROR, and their warnings ignored."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings(
                    "ignore", category=category, module=r"(torch|torchao|onnx|copyreg)"
                )
            # raised at our call site (so not matched by module) for graphs whose train/eval
            # switch torchao replaces; they are exported in eval mode
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
