"""ONNX If -> the branch the condition picks (onnx2torch 1.5.15 has no If).

tf2onnx emits If for `tf.cond`, `tf.case` and `tf.switch_case` whose predicate it cannot fold. Each
branch is converted on its own (_subgraph.py) and reads the enclosing values it needs as inputs.
A condition that is a constant of the graph selects its branch at conversion: only that branch is kept,
as plain torch code. Otherwise the module runs the chosen branch in Python, and under torch.export or
torch.compile it becomes `torch.cond`, so both branches are traced (they must then agree in output
shapes and dtypes, which `torch.cond` requires).

Like Loop's, this module is a class of this package: a model.pt containing it needs tf2torch to load.
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value
from torch import nn

from pipeline.torch_worker.converters._functional import register_module
from pipeline.torch_worker.converters._subgraph import convert_body


class OnnxIf(nn.Module):
    def __init__(
        self, then_branch: nn.Module, else_branch: nn.Module, then_args: list[int], else_args: list[int]
    ):
        super().__init__()
        self.then_branch = then_branch
        self.else_branch = else_branch
        # positions, among the enclosing values this module receives, of each branch's inputs
        self.then_args = then_args
        self.else_args = else_args

    def _then(self, *values):
        return self.then_branch(*[values[i] for i in self.then_args])

    def _else(self, *values):
        return self.else_branch(*[values[i] for i in self.else_args])

    def forward(self, condition, *values):
        if torch.compiler.is_compiling():
            return torch.cond(condition.reshape(()).to(torch.bool), self._then, self._else, tuple(values))
        return self._then(*values) if bool(condition) else self._else(*values)


def _convert_if(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    condition = node.input_values[0]
    then_branch, then_outer = convert_body(node.attributes["then_branch"].g, graph)
    else_branch, else_outer = convert_body(node.attributes["else_branch"].g, graph)
    try:
        fixed = bool(torch.as_tensor(get_const_value(condition, graph)).reshape(()))
    except KeyError:
        fixed = None
    if fixed is not None:  # the graph always takes one branch
        branch, outer = (then_branch, then_outer) if fixed else (else_branch, else_outer)
        return OperationConverterResult(
            torch_module=branch, onnx_mapping=OnnxMapping(inputs=tuple(outer), outputs=node.output_values)
        )
    values = list(dict.fromkeys(then_outer + else_outer))
    module = OnnxIf(
        then_branch, else_branch, [values.index(n) for n in then_outer], [values.index(n) for n in else_outer]
    )
    return OperationConverterResult(
        torch_module=module,
        onnx_mapping=OnnxMapping(inputs=(condition, *values), outputs=node.output_values),
    )


register_module("If", [1, 11, 13, 16], _convert_if)
