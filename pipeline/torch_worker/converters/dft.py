"""ONNX DFT (opset 17) -> torch.fft (onnx2torch 1.5.15 has no DFT).

DFT carries complex values as a trailing axis of 2 (real, imaginary), or 1 for a real signal, which is
how the export writes tf.signal / keras.ops Fourier transforms (tf2onnx_handlers/complex_fft.py).
The converter turns the pair into a torch complex tensor, runs torch.fft.fft / ifft (ONNX's inverse
is normalised by 1/n, as torch's) or rfft for a one-sided transform of a real signal, and back.
The size of that trailing axis must be known when converting.
"""

from __future__ import annotations

import torch

from pipeline.torch_worker.converters._functional import RuntimeValue, constant, register, static_shape
from pipeline.torch_worker.converters.refusal import NotConvertible


def _dft(node, graph):
    attrs = node.attributes
    axis = int(attrs.get("axis", 1))
    inverse = bool(attrs.get("inverse", 0))
    onesided = bool(attrs.get("onesided", 0))
    shape = static_shape(node.input_values[0], graph)
    if shape is None or shape[-1] not in (1, 2):
        raise NotConvertible(
            f"DFT node '{node.name}': the size of its last (real, imaginary) axis is unknown"
        )
    real_input = shape[-1] == 1
    rank = len(shape) - 1  # of the signal, without the (real, imaginary) axis
    axis = axis % (rank + 1)
    length = constant(node, graph, 1)
    if length is None and len(node.input_values) > 1 and node.input_values[1]:
        raise RuntimeValue("dft_length is computed at run time")
    n = None if length is None else int(length.reshape(()))
    if onesided and inverse:
        raise NotConvertible(f"DFT node '{node.name}': a one-sided inverse transform")

    def dft(x, dft_length=None):
        signal = x[..., 0] if real_input else torch.view_as_complex(x.contiguous())
        if onesided and real_input:
            y = torch.fft.rfft(signal, n=n, dim=axis)
        elif onesided:
            y = torch.fft.fft(signal, n=n, dim=axis).narrow(axis, 0, (n or signal.shape[axis]) // 2 + 1)
        elif inverse:
            y = torch.fft.ifft(signal, n=n, dim=axis)
        else:
            y = torch.fft.fft(signal, n=n, dim=axis)
        return torch.view_as_real(y)

    return dft


register("DFT", [17], _dft)
