"""Nodes declined on purpose, with the reason (the import sweep records them as refused):
- StringNormalizer: torch has no string tensors; tf2onnx emits it only for tf.strings ops, which sit
  in preprocessing, not in a model torch could run.
- BatchNormalization in training mode (running mean and variance outputs): tf2onnx exports inference
  graphs, so a TF model never produces it; train.py trains BatchNorm layers in torch instead.
"""

from __future__ import annotations

from pipeline.torch_worker.converters._functional import register_module, registered
from pipeline.torch_worker.converters.refusal import NotConvertible


def _string_normalizer(node, graph):
    raise NotConvertible(
        f"StringNormalizer node '{node.name}': torch has no string tensors; keep text preprocessing "
        "(tf.strings) outside the converted model"
    )


def _batch_norm(inference):
    def convert(node, graph):
        if len([o for o in node.output_values if o]) > 1 or node.attributes.get("training_mode", 0):
            raise NotConvertible(
                f"BatchNormalization node '{node.name}': training mode (running statistics as outputs); "
                "tf2onnx exports inference graphs, and train.py trains BatchNorm layers in torch"
            )
        return inference(node, graph)

    return convert


register_module("StringNormalizer", [10], _string_normalizer)
for _version in (9, 14, 15):
    register_module(
        "BatchNormalization",
        [_version],
        _batch_norm(registered("BatchNormalization", _version)),
        replace=True,
    )
