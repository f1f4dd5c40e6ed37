"""One mechanism for op versions onnx2torch does not register: use its converter for the newest older
version when the op's signature did not change.

ONNX bumps an op's version for new input types (GreaterOrEqual 12 -> 16 added bfloat16), new optional
attributes (Shape 15 start/end) and new inputs; onnx2torch registers converters for the versions that
existed when it was written, so at a newer opset the same node finds no converter. For every op in the
registry and every newer schema version up to `MAX_OPSET` without a converter, an alias is registered
when the newer schema has the same inputs and outputs as the registered one and keeps all of its
attributes. Per node, the alias delegates only if the node leaves every attribute the older version
lacks at its default; otherwise it declines, naming the attribute. The import sweep runs the backend
node tests at every aliased version, which is what shows the semantics match.
"""

from __future__ import annotations

import functools

from onnx import defs, helper
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode

from pipeline.config import MAX_OPSET
from pipeline.torch_worker.converters.refusal import NotConvertible

ALIASES: dict[OperationDescription, int] = {}  # the alias -> the registered version it delegates to


@functools.cache
def _schema_index() -> dict[tuple[str, str], dict[int, object]]:
    index: dict[tuple[str, str], dict[int, object]] = {}
    for schema in defs.get_all_schemas_with_history():
        index.setdefault((schema.domain, schema.name), {})[schema.since_version] = schema
    return index


def _signature(schema) -> tuple:
    def params(items):
        return tuple((p.name, p.option) for p in items)

    return params(schema.inputs), params(schema.outputs)


def _default(attribute) -> object:
    """The schema's default value of an attribute, or None when it has none."""
    if not attribute.default_value.name:
        return None
    return helper.get_attribute_value(attribute.default_value)


def _alias(registered, added: dict[str, object], op_type: str, version: int, old_version: int):
    def convert(node: OnnxNode, graph: OnnxGraph):
        for name, default in added.items():
            if name in node.attributes:
                value = helper.get_attribute_value(_attribute(node, name))
                if value != default:
                    raise NotConvertible(
                        f"{op_type} node '{node.name}': attribute {name}={value!r} (new in opset "
                        f"{version}) has no converter; only version {old_version}'s behaviour is supported"
                    )
        return registered(node, graph)

    return convert


def _attribute(node: OnnxNode, name: str):
    return next(a for a in node.proto.attribute if a.name == name)


def register_aliases(max_version: int = MAX_OPSET) -> None:
    by_op: dict[tuple[str, str], list[int]] = {}
    for description in list(_CONVERTER_REGISTRY):
        by_op.setdefault((description.domain, description.operation_type), []).append(description.version)
    for (domain, op_type), versions in by_op.items():
        schemas = _schema_index().get((domain, op_type), {})
        for version, schema in schemas.items():
            key = OperationDescription(domain, op_type, version)
            older = [v for v in versions if v < version and v in schemas]
            if version > max_version or key in _CONVERTER_REGISTRY or not older:
                continue
            base = schemas[max(older)]
            if _signature(schema) != _signature(base) or not set(base.attributes) <= set(schema.attributes):
                continue
            added = {n: _default(a) for n, a in schema.attributes.items() if n not in base.attributes}
            base_key = OperationDescription(domain, op_type, base.since_version)
            _CONVERTER_REGISTRY[key] = _alias(
                _CONVERTER_REGISTRY[base_key], added, op_type, version, base.since_version
            )
            ALIASES[key] = base.since_version
