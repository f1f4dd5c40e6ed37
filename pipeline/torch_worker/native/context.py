"""What every pass gets: the sample inputs (two batch sizes) and the TF model's variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx

from pipeline.torch_worker.native import fxutil


@dataclass
class TFVariable:
    layer: str
    layer_class: str
    name: str  # kernel, bias, gamma, moving_mean, ...
    path: str
    value: np.ndarray
    trainable: bool
    config: dict[str, Any]


@dataclass
class KerasDropout:
    layer: str
    rate: float
    value: np.ndarray | None  # its input at sample 0, in Keras's layout; None: not restorable


@dataclass
class KerasActivity:
    layer: str  # a Keras layer with an activity regularizer
    value: np.ndarray | None  # its output at sample 0, in Keras's layout; None: no one tensor


@dataclass
class PassContext:
    inputs_a: list[torch.Tensor] | None  # one sample of inputs.npz (None: a body the samples never ran)
    inputs_b: list[torch.Tensor] | None  # the same at the second input shape
    tf_variables: list[TFVariable] | None  # None: the source had no Keras variables (graph, TFLite)
    counts: dict[str, int] = field(default_factory=dict)
    # Root-level tensor of the native module -> (TF variable path, transform): the weights that are no
    # module's own parameters (filled by naming.parameters_and_names).
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Why a node could not be turned into plain torch code, by node name (for the report).
    reasons: dict[str, str] = field(default_factory=dict)
    # The other samples of inputs.npz: a pass choosing between readings that agree on the two input
    # sets (an attention mask whose fully masked rows only a later sample has) checks them all.
    other_samples: list[list[torch.Tensor]] = field(default_factory=list)
    # The Keras model's Dropout layers (stage load records them): model.py gets them back.
    dropouts: list[KerasDropout] = field(default_factory=list)
    # The Keras layers with an activity regularizer: model.py names where it computes their outputs.
    activities: list[KerasActivity] = field(default_factory=list)

    # The last recording and the code it was made for: passes that find nothing to change leave the
    # code as it was, and the next pass reads the same values (two forward passes saved per pass).
    _recorded: tuple[Any, Any] | None = field(default=None, repr=False)

    def values(self, gm: fx.GraphModule) -> tuple[dict[str, Any], dict[str, Any]]:
        # The graphs as they stand (a pass edits them before it recompiles, so not their code).
        key = tuple(
            (n.name, n.op, str(n.target), str(n.args), str(n.kwargs))
            for m in gm.modules()
            if isinstance(m, fx.GraphModule)
            for n in m.graph.nodes
        )
        if self._recorded is None or self._recorded[0] != key:
            self._recorded = (key, (fxutil.record(gm, self.inputs_a), fxutil.record(gm, self.inputs_b)))
        return self._recorded[1]

    def every_sample_values(self, gm: fx.GraphModule) -> list[dict[str, Any]]:
        """The recorded values at both input sets and at every other sample."""
        return [*self.values(gm), *(fxutil.record(gm, inputs) for inputs in self.other_samples)]

    def count(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def layer_variables(self, layer_class: str | tuple[str, ...]) -> dict[str, dict[str, TFVariable]]:
        """{layer name: {variable name: variable}} for the layers of these classes."""
        classes = (layer_class,) if isinstance(layer_class, str) else layer_class
        found: dict[str, dict[str, TFVariable]] = {}
        for v in self.tf_variables or []:
            if v.layer_class in classes:
                found.setdefault(v.layer, {})[v.name] = v
        return found


def with_extra_row(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate([a, a[:1]], axis=0) if a.ndim else a for a in arrays]
