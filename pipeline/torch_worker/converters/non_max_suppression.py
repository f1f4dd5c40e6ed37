"""ONNX NonMaxSuppression with boxes given by any diagonal pair of corners.

ONNX (center_point_box=0) takes [y1, x1, y2, x2] with "any diagonal pair of box corners", and so do TF
and onnxruntime; onnx2torch's converter hands the boxes to torchvision's nms, which needs the top-left
corner first and computes other overlaps otherwise (tf2onnx's own combined_non_max_suppression tests,
with random corners, came out up to 1.42 off). Here the corners are ordered (min, max) first, then
onnx2torch's module runs; boxes given as centres and sizes are left as they are."""

from __future__ import annotations

import torch
from onnx2torch.utils.common import OperationConverterResult

from pipeline.torch_worker.converters._functional import present_inputs, register_module, registered
from pipeline.torch_worker.converters._leaf import behind


def _ordered_corners(boxes, *rest):
    low = torch.minimum(boxes[..., 0:2], boxes[..., 2:4])
    high = torch.maximum(boxes[..., 0:2], boxes[..., 2:4])
    return (torch.cat([low, high], dim=-1), *rest)


def _convert_with(original):
    def convert(node, graph):
        converted = original(node, graph)
        if int(node.attributes.get("center_point_box", 0)):
            return converted
        module = behind(converted.torch_module, _ordered_corners, len(present_inputs(node)))
        return OperationConverterResult(module, converted.onnx_mapping)

    return convert


for _version in (10, 11):
    register_module(
        "NonMaxSuppression",
        [_version],
        _convert_with(registered("NonMaxSuppression", _version)),
        replace=True,
    )
