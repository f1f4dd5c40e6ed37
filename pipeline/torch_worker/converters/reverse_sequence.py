"""ONNX ReverseSequence -> a gather along the time axis (onnx2torch 1.5.15 has no converter).

For each batch entry b, the first sequence_lens[b] steps are reversed and the rest stay in place.
tf2onnx emits it for Keras `go_backwards` and Bidirectional recurrent layers."""

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import fx, nn


class _ReverseSequence(nn.Module):
    def __init__(self, batch_axis: int, time_axis: int):
        super().__init__()
        self.batch_axis = batch_axis
        self.time_axis = time_axis

    def forward(self, x, sequence_lens):
        moved = x.movedim((self.batch_axis, self.time_axis), (0, 1))
        flat = moved.reshape(moved.shape[0], moved.shape[1], -1)
        steps = torch.arange(flat.shape[1], device=x.device).unsqueeze(0)
        lengths = sequence_lens.to(torch.int64).unsqueeze(1)
        index = torch.where(steps < lengths, lengths - 1 - steps, steps)
        gathered = torch.gather(flat, 1, index.unsqueeze(2).expand(-1, -1, flat.shape[2]))
        return gathered.reshape(moved.shape).movedim((0, 1), (self.batch_axis, self.time_axis))


@add_converter(operation_type="ReverseSequence", version=10)
def convert_reverse_sequence(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    module = _ReverseSequence(node.attributes.get("batch_axis", 1), node.attributes.get("time_axis", 0))
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(module), onnx_mapping=onnx_mapping_from_node(node)
    )
