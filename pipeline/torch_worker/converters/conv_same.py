"""ONNX Conv with auto_pad SAME_UPPER / SAME_LOWER (onnx2torch 1.5.15 raises NotImplementedError).

tf2onnx emits auto_pad for `padding='same'` when a spatial size is unknown at export time, so the
padding must be computed from the input's shape at run time (_same_padding.py). Every other Conv
goes to onnx2torch's own converter, which this wraps. Dilation > 1 with SAME is refused, as onnxruntime
refuses it.
"""

from onnx import helper
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult
from torch import fx, nn
from torch.nn import functional

from pipeline.torch_worker.converters._functional import result, static_shape
from pipeline.torch_worker.converters._same_padding import same_pads

_SAME = ("SAME_UPPER", "SAME_LOWER")


class _SamePaddedConv(nn.Module):
    def __init__(self, conv: nn.Module, upper: bool):
        super().__init__()
        self.conv = conv
        self.upper = upper

    def forward(self, x):
        conv = self.conv
        settings = {"kernel": conv.kernel_size, "strides": conv.stride, "dilations": [1] * len(conv.stride)}
        begins, ends = same_pads(x, settings, self.upper)
        pads = []
        for axis in reversed(range(len(begins))):  # functional.pad takes the last dimension first
            pads += [begins[axis], ends[axis]]
        return self.conv(functional.pad(x, pads))


def _without_auto_pad(node: OnnxNode) -> OnnxNode:
    proto = helper.make_node(
        node.proto.op_type,
        list(node.proto.input),
        list(node.proto.output),
        name=node.proto.name,
        domain=node.proto.domain,
    )
    proto.attribute.extend(a for a in node.proto.attribute if a.name not in ("auto_pad", "pads"))
    return OnnxNode(proto, node.unique_name)


_CONV = {1: functional.conv1d, 2: functional.conv2d, 3: functional.conv3d}


def _functional_conv(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    shape = static_shape(node.input_values[1], graph)
    if shape is None:
        raise NotImplementedError(f"Conv node '{node.name}': weights computed at run time, of unknown rank")
    rank = len(shape) - 2
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    settings = {
        "kernel": list(attrs.get("kernel_shape", shape[2:])),
        "strides": list(attrs.get("strides", [1] * rank)),
        "dilations": list(attrs.get("dilations", [1] * rank)),
    }
    pads = list(attrs.get("pads", [0] * 2 * rank))
    groups = int(attrs.get("group", 1))
    conv = _CONV[rank]

    def conv_with_weights(x, w, b=None):
        if auto_pad in _SAME:
            begins, ends = same_pads(x, settings, auto_pad == "SAME_UPPER")
        else:
            begins, ends = pads[:rank], pads[rank:]
        spec = []
        for axis in reversed(range(rank)):  # functional.pad takes the last dimension first
            spec += [begins[axis], ends[axis]]
        x = functional.pad(x, spec)
        return conv(x, w, b, settings["strides"], 0, settings["dilations"], groups)

    return result(conv_with_weights, node)


def _wrap(original):
    def convert_conv(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        if node.input_values[1] not in graph.initializers:
            return _functional_conv(node, graph)
        auto_pad = node.attributes.get("auto_pad", "NOTSET")
        if auto_pad not in _SAME:
            return original(node, graph)
        if any(d != 1 for d in node.attributes.get("dilations", [1])):
            # onnxruntime refuses this combination too, so a conversion could not be verified
            raise NotImplementedError(
                f"Conv node '{node.name}': {auto_pad} with dilation > 1 is not supported"
            )
        result = original(_without_auto_pad(node), graph)
        module = fx.symbolic_trace(_SamePaddedConv(result.torch_module, auto_pad == "SAME_UPPER"))
        return OperationConverterResult(torch_module=module, onnx_mapping=result.onnx_mapping)

    return convert_conv


# onnx2torch's add_converter refuses to replace a registered converter, so wrap the entries in place.
for _version in (1, 11):
    _key = OperationDescription(domain="", operation_type="Conv", version=_version)
    _CONVERTER_REGISTRY[_key] = _wrap(_CONVERTER_REGISTRY[_key])
