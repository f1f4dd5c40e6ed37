"""ONNX GlobalMaxPool -> nn.AdaptiveMaxPool{1,2,3}d(1) (onnx2torch 1.5.15 has no converter).

Both keep the spatial dimensions as size 1: [N, C, *spatial] -> [N, C, 1, ...]."""

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import (
    OperationConverterResult,
    get_shape_from_value_info,
    onnx_mapping_from_node,
)
from torch import nn

_POOL_FOR_SPATIAL_RANK = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


@add_converter(operation_type="GlobalMaxPool", version=1)
def convert_global_max_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    info = graph.value_info.get(node.input_values[0])
    shape = get_shape_from_value_info(info) if info is not None else None
    if not shape or len(shape) - 2 not in _POOL_FOR_SPATIAL_RANK:
        raise NotImplementedError(
            f"GlobalMaxPool node '{node.name}': input rank unknown or not 3-5 ({shape})"
        )
    return OperationConverterResult(
        torch_module=_POOL_FOR_SPATIAL_RANK[len(shape) - 2](1),
        onnx_mapping=onnx_mapping_from_node(node),
    )
