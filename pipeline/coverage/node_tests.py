"""ONNX's backend node tests in the form tf2onnx writes graphs.

The onnx wheel ships the generators of its node tests (`onnx.backend.test.case.node`); collecting them
computes every test's model and expected outputs offline. A test is in scope when every op in it
(subgraphs included) is one the installed tf2onnx can emit. Each is rewritten for one target opset:
- the default-domain opset is set to the target: a test generated at a newer opset is lowered, one
  generated at an older opset is raised, as tf2onnx would write the same node at the target opset;
- every graph input but the first becomes an initializer holding the test's value, since tf2onnx
  writes weights, axes, pads, shapes and scales as constants, not as runtime inputs.
The rewritten test is kept only when it still passes onnx.checker and strict shape inference at the
target opset and onnxruntime reproduces the expected outputs; otherwise it is recorded as not
applicable at that opset, with the reason.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pipeline.coverage.tf2onnx_ops import emitted_onnx_ops


@dataclass
class NodeTest:
    """One backend node test rewritten for one opset: `model` with `inputs` fed at run time."""

    name: str
    op_types: tuple[str, ...]
    opset: int
    generated_opset: int
    model: onnx.ModelProto | None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    expected: list[np.ndarray] = field(default_factory=list)
    rtol: float = 1e-3
    atol: float = 1e-7
    not_applicable: str | None = None  # why the test has no valid form at this opset


@functools.cache
def backend_cases() -> tuple:
    """onnx's node test cases whose ops tf2onnx can emit (generated once per process)."""
    from onnx.backend.test.case.node import collect_testcases

    emitted = emitted_onnx_ops()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return tuple(c for c in cases if c.model is not None and set(_op_types(c.model.graph)) <= emitted)


def _op_types(graph: onnx.GraphProto) -> list[str]:
    types = []
    for node in graph.node:
        types.append(node.op_type)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                types.extend(_op_types(sub))
    return types


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def tests_at(opset: int) -> list[NodeTest]:
    return [rewrite(case, opset) for case in backend_cases()]


def rewrite(case, opset: int) -> NodeTest:
    inputs, expected = (list(map(_as_value, values)) for values in case.data_sets[0])
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    test = NodeTest(
        name=case.name,
        op_types=tuple(dict.fromkeys(_op_types(model.graph))),
        opset=opset,
        generated_opset=default_opset(model),
        model=model,
        expected=list(expected),
        rtol=case.rtol,
        atol=case.atol,
    )
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    # the IR version tf2onnx writes for that opset: the lowest that declares it
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    runtime: dict[str, np.ndarray] = {}
    for index, (info, value) in enumerate(zip(list(model.graph.input), inputs, strict=True)):
        if index == 0 or not isinstance(value, np.ndarray) or not info.type.HasField("tensor_type"):
            runtime[info.name] = value
            continue
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), info.name))
        model.graph.input.remove(info)
    test.inputs = runtime
    test.not_applicable = _applicability(test)
    return test


def _applicability(test: NodeTest) -> str | None:
    try:
        onnx.checker.check_model(test.model, full_check=True)
        onnx.shape_inference.infer_shapes(test.model, check_type=True, strict_mode=True)
    except Exception as exc:  # the checker and inference raise several types
        return f"invalid at opset {test.opset}: {_first_line(exc)}"
    try:
        actual = run_onnxruntime(test)
    except Exception as exc:
        return f"onnxruntime cannot run it at opset {test.opset}: {_first_line(exc)}"
    mismatch = compare(test, actual)
    if mismatch:
        return f"onnxruntime disagrees with the expected outputs at opset {test.opset}: {mismatch}"
    return None


def run_onnxruntime(test: NodeTest) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(
        test.model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, test.inputs)


def compare(test: NodeTest, actual: list) -> str | None:
    """None when `actual` matches the expected outputs at the test's own tolerance, else why not."""
    if len(actual) != len(test.expected):
        return f"{len(actual)} outputs, expected {len(test.expected)}"
    for index, (got, want) in enumerate(zip(actual, test.expected, strict=True)):
        if isinstance(want, list):  # a sequence output
            if not isinstance(got, (list, tuple)) or len(got) != len(want):
                return f"output {index}: a sequence of {len(want)} expected"
            for g, w in zip(got, want, strict=True):
                problem = array_mismatch(np.asarray(g), np.asarray(w), test.rtol, test.atol)
                if problem:
                    return f"output {index}: {problem}"
            continue
        problem = array_mismatch(np.asarray(got), np.asarray(want), test.rtol, test.atol)
        if problem:
            return f"output {index}: {problem}"
    return None


def array_mismatch(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """None when `got` matches `want` (shape, dtype, values within rtol/atol; NaN matches NaN), else how
    it differs."""
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype == object or got.dtype == object:
        return None if got.tolist() == want.tolist() else "values differ"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind in "fc":
        try:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        except AssertionError:
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
            return f"max abs error {np.nanmax(diff) if diff.size else 0:.3g} (rtol {rtol}, atol {atol})"
        return None
    return None if np.array_equal(got, want) else "values differ"


def _as_value(value):
    """A test's input or output as numpy: generators give numpy scalars and TensorProtos too."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, list):
        return [_as_value(v) for v in value]
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
