"""Sparse weights in a .tflite, made dense before tf2onnx reads the file.

TFLite's converter (`Optimize.EXPERIMENTAL_SPARSITY`) stores pruned weights sparse: the buffer holds
only the non-zero values (or blocks), with a `sparsity` table (the traversal order of the dimensions,
the block map, and per level either a dense size or CSR segments and indices); a DENSIFY op expands
them for runtimes that want dense weights, while TFLite's own kernels read them sparse. tf2onnx reads
every buffer as a dense constant of the tensor's shape and fails ("cannot reshape array of size 77
into shape (8,1,1,32)"). Here each sparse constant is decoded to its dense value as TFLite's format
defines it, each DENSIFY's output becomes that constant, and the DENSIFY ops leave the graph; the
result goes to a temporary folder for tf2onnx to read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def densified(path: Path, workdir: Path) -> tuple[Path, int]:
    """`path` itself when no constant in the model is sparse, else a dense copy in `workdir`; and how
    many weight tensors were made dense."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    dense_op = schema.BuiltinOperator.DENSIFY
    codes = {
        i
        for i, c in enumerate(model.operatorCodes)
        if max(c.builtinCode, c.deprecatedBuiltinCode) == dense_op
    }
    count = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.sparsity is not None and tensor.buffer:
                buffer = model.buffers[tensor.buffer]
                values = np.frombuffer(bytes(buffer.data), dtype=_NUMPY_TYPES[tensor.type])
                dense = to_dense(values, list(tensor.shape), tensor.sparsity)
                buffer.data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
                tensor.sparsity = None
                count += 1
        for op in subgraph.operators:
            if op.opcodeIndex in codes:  # its output is the (now dense) input
                source, target = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.outputs[0]]
                target.buffer, source.buffer = source.buffer, 0
        subgraph.operators = [op for op in subgraph.operators if op.opcodeIndex not in codes]
    if not count:
        return path, 0
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / f"{path.stem}.dense.tflite"
    flatbuffer_utils.write_model(model, str(target))
    return target, count


def to_dense(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """The dense tensor a TFLite sparsity table and its stored values describe.

    The table describes len(shape) + len(block_map) dimensions: the original ones (counted in blocks
    where blocked) and then one per block dimension; `traversal_order` is the order they are stored
    in, and each level is DENSE (every index up to its dense size) or SPARSE_CSR (the indices present,
    `array_indices[segments[p]:segments[p + 1]]` for the parent's position p). Values are stored in
    traversal order, one per leaf."""
    order = list(sparsity.traversalOrder)
    block_map = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    levels = sparsity.dimMetadata
    positions = np.zeros(1, dtype=np.int64)  # each partial path's position within its level
    indices = np.zeros((1, 0), dtype=np.int64)  # each path's index per level so far
    for level in levels:
        if level.format == 0:  # DENSE
            size = int(level.denseSize)
            repeat = np.repeat(np.arange(len(positions)), size)
            within = np.tile(np.arange(size), len(positions))
            positions = positions[repeat] * size + within
        else:  # SPARSE_CSR
            segments = np.asarray(level.arraySegments.values, dtype=np.int64)
            found = np.asarray(level.arrayIndices.values, dtype=np.int64)
            starts, stops = segments[positions], segments[positions + 1]
            repeat = np.repeat(np.arange(len(positions)), stops - starts)
            offsets = np.arange(len(repeat)) - np.repeat(
                np.cumsum(stops - starts) - (stops - starts), stops - starts
            )
            positions = starts[repeat] + offsets
            within = found[positions]
        indices = np.concatenate([indices[repeat], within[:, None]], axis=1)
    if len(values) != len(indices):
        raise ValueError(f"a sparse tensor stores {len(values)} values for {len(indices)} positions")
    rank = len(shape)
    by_dim = {dim: indices[:, lvl] for lvl, dim in enumerate(order)}
    block_sizes = {block_map[k]: int(levels[order.index(rank + k)].denseSize) for k in range(len(block_map))}
    original = []
    for dim in range(rank):
        index = by_dim[dim]
        if dim in block_sizes:
            index = index * block_sizes[dim] + by_dim[rank + block_map.index(dim)]
        original.append(index)
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(original)] = values
    return dense


# TFLite TensorType -> numpy, for the types a weight can have
_NUMPY_TYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    7: np.int16,
    9: np.int8,
    10: np.float64,
}
