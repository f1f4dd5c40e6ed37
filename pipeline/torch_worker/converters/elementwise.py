"""Element-wise ONNX ops onnx2torch 1.5.15 lacks or covers only in part: hyperbolic functions,
bitwise ops and shifts, ThresholdedRelu, Selu and IsInf with every attribute, Det and
LpNormalization. Each is a traced function of torch calls (see _functional)."""

from __future__ import annotations

import torch

from pipeline.torch_worker.converters._functional import register

_UNARY = {
    "Acosh": (9, torch.acosh),
    "Asinh": (9, torch.asinh),
    "Atanh": (9, torch.atanh),
    "Cosh": (9, torch.cosh),
    "Sinh": (9, torch.sinh),
    "BitwiseNot": (18, torch.bitwise_not),
}
_BINARY = {
    "BitwiseAnd": (18, torch.bitwise_and),
    "BitwiseOr": (18, torch.bitwise_or),
    "BitwiseXor": (18, torch.bitwise_xor),
}


def _unary(function):
    def build(node, graph):
        def unary(x):
            return function(x)

        return unary

    return build


def _binary(function):
    def build(node, graph):
        def binary(a, b):
            return function(a, b)

        return binary

    return build


for _op, (_version, _function) in _UNARY.items():
    register(_op, [_version], _unary(_function))
for _op, (_version, _function) in _BINARY.items():
    register(_op, [_version], _binary(_function))


def _bit_shift(node, graph):
    if node.attributes["direction"] == "LEFT":

        def shift_left(x, y):
            return torch.bitwise_left_shift(x, y)

        return shift_left

    def shift_right(x, y):
        return torch.bitwise_right_shift(x, y)

    return shift_right


def _thresholded_relu(node, graph):
    alpha = float(node.attributes.get("alpha", 1.0))

    def thresholded_relu(x):
        return torch.where(x > alpha, x, torch.zeros_like(x))

    return thresholded_relu


def _selu(node, graph):
    alpha = float(node.attributes.get("alpha", 1.67326319217681884765625))
    gamma = float(node.attributes.get("gamma", 1.05070102214813232421875))

    def selu(x):
        return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))

    return selu


def _is_inf(node, graph):
    positive = bool(node.attributes.get("detect_positive", 1))
    negative = bool(node.attributes.get("detect_negative", 1))

    def is_inf(x):
        inf = torch.isinf(x)
        return (inf & (x > 0) & positive) | (inf & (x < 0) & negative)

    return is_inf


def _det(node, graph):
    def det(x):
        return torch.linalg.det(x)

    return det


def _lp_normalization(node, graph):
    axis = int(node.attributes.get("axis", -1))
    p = int(node.attributes.get("p", 2))

    def lp_normalization(x):
        norm = torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
        return x / torch.where(norm == 0, torch.ones_like(norm), norm)  # an all-zero slice stays zero

    return lp_normalization


register("BitShift", [11], _bit_shift)
register("ThresholdedRelu", [10], _thresholded_relu)
register("Selu", [6], _selu, replace=True)
register("IsInf", [10], _is_inf, replace=True)
register("Det", [11], _det)
register("LpNormalization", [1], _lp_normalization)


def _prelu(node, graph):
    # onnx2torch's OnnxPReLU picks its code by comparing the slope's shape with the input's, which
    # fx cannot trace (the input's shape is symbolic): model.py had no form for TFLite's PReLU. ONNX
    # broadcasts the slope to the input one way, as this product does.
    def prelu(x, slope):
        return torch.where(x < 0, x * slope, x)

    return prelu


register("PRelu", [7, 9, 16], _prelu, replace=True)
