"""Converters written as plain functions of tensors, traced with torch.fx.

A traced function becomes a GraphModule whose code calls torch only, so a saved model.pt needs neither
this package nor onnx2torch to load. Attribute values the function closes over are baked into the
traced code as constants.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value
from torch import fx

from pipeline.torch_worker.converters.refusal import NotConvertible

# A builder takes the node (and graph) and returns the function that computes the node's outputs.
Builder = Callable[[OnnxNode, OnnxGraph], Callable]


class RuntimeValue(Exception):
    """A builder needs an input's value at conversion time, and the graph computes it at run time."""


def constant(node: OnnxNode, graph: OnnxGraph, index: int):
    """The value of the node's input `index` when the graph holds it as a constant, as a torch tensor."""
    names = list(node.input_values)
    if index >= len(names) or not names[index]:
        return None
    try:
        value = get_const_value(names[index], graph)
    except KeyError:
        raise RuntimeValue(f"input {index} ('{names[index]}') is computed at run time") from None
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def result(function: Callable, node: OnnxNode) -> OperationConverterResult:
    """The converter result for `function` applied to the node's inputs. Omitted optional inputs
    are traced as None, so the code has no branch for them; trailing ones are left out."""
    names = present_inputs(node)
    parameters = list(inspect.signature(function).parameters)
    omitted = {parameters[i]: None for i, name in enumerate(names) if not name and i < len(parameters)}
    omitted.update({p: None for p in parameters[len(names) :] if p not in omitted})
    module = fx.symbolic_trace(function, concrete_args=omitted or None)
    drop_none_checks(module)
    # an omitted input in the middle stays in the mapping: onnx2torch then passes the later ones by name
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=tuple(names), outputs=node.output_values)
    )


def drop_none_checks(module: fx.GraphModule) -> None:
    """fx guards each argument traced as None with `_assert_is_none`; a module whose code calls it
    cannot be loaded back from model.pt (torch.load re-traces the code and fails on it)."""
    for node in list(module.graph.nodes):
        if node.op == "call_function" and node.target is fx._symbolic_trace._assert_is_none:
            module.graph.erase_node(node)
    module.recompile()


def present_inputs(node: OnnxNode) -> list[str]:
    """The node's input names without the trailing empty ones (omitted optional inputs)."""
    names = list(node.input_values)
    while names and not names[-1]:
        names.pop()
    return names


def register(op_type: str, versions: Iterable[int], builder: Builder, replace: bool = False) -> None:
    """Register `builder` for each version. `replace` takes the place of onnx2torch's own converter,
    which stays the fallback for nodes the builder declines: it returns None for a mode onnx2torch
    handles, or raises RuntimeValue for an input it needs as a constant."""
    for version in versions:
        key = OperationDescription(domain="", operation_type=op_type, version=version)
        if key in _CONVERTER_REGISTRY and not replace:
            raise ValueError(f"{key} is registered already")
        _CONVERTER_REGISTRY[key] = _converter(builder, _CONVERTER_REGISTRY.get(key), op_type)


def _converter(builder: Builder, fallback, op_type: str):
    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        try:
            function = builder(node, graph)
        except RuntimeValue as exc:
            if fallback is None:
                raise NotConvertible(f"{op_type} node '{node.name}': {exc}") from None
            return fallback(node, graph)
        if function is None:
            return fallback(node, graph)
        return result(function, node)

    return convert


def register_module(op_type: str, versions: Iterable[int], converter, replace: bool = False) -> None:
    """Register a converter that builds its own module (one fx cannot trace)."""
    for version in versions:
        key = OperationDescription(domain="", operation_type=op_type, version=version)
        if key in _CONVERTER_REGISTRY and not replace:
            raise ValueError(f"{key} is registered already")
        _CONVERTER_REGISTRY[key] = converter


def registered(op_type: str, version: int):
    """The converter registered now for the op version (onnx2torch's own, before a project one replaces it)."""
    return _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type=op_type, version=version)]


def static_shape(name: str, graph: OnnxGraph) -> list[int | None] | None:
    """A value's shape as shape inference or the initializer gives it (None for an unknown size), or None."""
    if name in graph.initializers:
        return list(graph.initializers[name].to_torch().shape)
    info = graph.value_info.get(name)
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def static_dtype(name: str, graph: OnnxGraph) -> int | None:
    """A value's ONNX element type (onnx.TensorProto.FLOAT, ...) as the graph records it, or None."""
    if name in graph.initializers:
        return graph.initializers[name].proto.data_type
    info = graph.value_info.get(name)
    if info is None or not info.type.HasField("tensor_type"):
        return None
    return info.type.tensor_type.elem_type or None
