"""ONNX Loop -> a Python while loop over the body converted to torch (onnx2torch 1.5.15 has no Loop).

tf2onnx emits Loop for Keras 3 GRU, masked or Bidirectional RNNs and tf.while_loop. The body graph
is converted with onnx2torch on its own (nested Loops recurse through this converter), after values
it reads from the enclosing graph are turned into extra inputs. The module runs the body until the
trip count is reached or the condition turns false, carrying the loop state and stacking the scan
outputs along a new first axis, as the ONNX spec describes.

Unlike the other converters, this module is a class of this package: a model.pt containing it needs
tf2torch installed to load.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

from pipeline.torch_worker.converters._subgraph import convert_body


class OnnxLoop(nn.Module):
    def __init__(
        self, body: nn.Module, has_trip_count: bool, has_condition: bool, carried: int, scanned: int
    ):
        super().__init__()
        self.body = body
        self.has_trip_count = has_trip_count
        self.has_condition = has_condition
        self.carried = carried
        self.scanned = scanned

    def forward(self, *inputs):
        inputs = list(inputs)
        trip_count = int(inputs.pop(0)) if self.has_trip_count else None
        condition = inputs.pop(0) if self.has_condition else torch.tensor(True)
        state, outer = inputs[: self.carried], inputs[self.carried :]
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.scanned)]
        step = 0
        while (trip_count is None or step < trip_count) and bool(condition):
            results = self.body(torch.tensor(step, dtype=torch.int64), condition, *state, *outer)
            results = results if isinstance(results, (tuple, list)) else (results,)
            # As onnxruntime does, the body's condition ends the loop even without a condition input
            # (the spec's pseudo-code calls it ignored there); the pipeline verifies against onnxruntime.
            condition = results[0]
            state = list(results[1 : 1 + self.carried])
            for collected, value in zip(scans, results[1 + self.carried :], strict=True):
                collected.append(value)
            step += 1
        if any(not collected for collected in scans):
            raise NotImplementedError("Loop ran zero iterations; its scan outputs have no known shape")
        outputs = (*state, *(torch.stack(collected) for collected in scans))
        return outputs if len(outputs) > 1 else outputs[0]


@add_converter(operation_type="Loop", version=1)
@add_converter(operation_type="Loop", version=11)
@add_converter(operation_type="Loop", version=13)
@add_converter(operation_type="Loop", version=16)
def convert_loop(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    body_graph = node.attributes["body"].g
    body, outer = convert_body(body_graph, graph)
    trip_name, condition_name, *initial = list(node.input_values)
    carried = len(initial)
    scanned = len(body_graph.output) - 1 - carried
    module = OnnxLoop(body, bool(trip_name), bool(condition_name), carried, scanned)
    inputs = tuple(n for n in (trip_name, condition_name) if n) + tuple(initial) + tuple(outer)
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=inputs, outputs=node.output_values)
    )
