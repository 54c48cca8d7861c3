"""After the search: fine-tune the chosen architectures, compress them, measure, export.

For each chosen architecture (``select:``), in ``<run dir>/final/``:

1. fine-tune with the full budget (``finetune:``), starting from the search's proxy weights
   when there are any, distilling from a teacher when ``finetune.distill`` is set; the
   teacher (the most accurate chosen member unless a file is named) is fine-tuned first;
2. export the float model (``<arch_id>/``: ``arch.json``, safetensors, ONNX, ``torch.export``);
3. compress (``compress:``): INT8 (``model_int8.onnx`` beside ``model.onnx``), structured
   pruning + recovery fine-tuning (``<arch_id>-pruned/``, and its INT8 twin), unstructured
   magnitude sparsity with fine-tuning under the mask (``<arch_id>-sparse/``);
4. measure every variant: held-out accuracy, size on disk, latency at batch 1 in its runtime;
   write a model card and ``measurements.json`` per folder (files named from the folder, which
   ships alone), and ``final/summary.csv`` (files named from ``final/``) after each model.

A start that was pruned already (``nas train`` on a ``-pruned/arch.json``) is named and
labelled as what it is: ``<arch_id>-pruned/`` (variant ``pruned``), pruned again
``<arch_id>-pruned-pruned/``, its ``pruning`` record kept in ``arch.json`` and on the card.

Run bookkeeping lives in ``final/checkpoints/<folder name>/``, never in the folders a user ships:
every fine-tune checkpoints there, each folder is built there (``checkpoints/<name>/<name>/``)
and moved into ``final/`` only when finished, replacing an earlier one, and a finished
architecture leaves ``finished.json`` (its settings and measurements), written last. Running the
same command again resumes an interrupted fine-tune and keeps a finished architecture as it is
(nothing retrained, recompressed or re-measured) while its settings and files are unchanged;
other settings redo it.
"""

from nas.final._finish import finish_architecture
from nas.final._members import finish_members
from nas.final._plots import measured_frame, plot_final
from nas.final._state import FinalModel
from nas.final._trial import export_trial

__all__ = [
    "FinalModel",
    "export_trial",
    "finish_architecture",
    "finish_members",
    "measured_frame",
    "plot_final",
]
