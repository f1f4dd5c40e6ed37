"""The marked export: the Keras model exported once more with each trainable variable holding a value
of its own, so that the native passes tie every torch parameter to its Keras variable by identity.

A freshly built model's variables are not told apart by their values: every LayerNormalization beta and
attention bias is zero, every gamma one. The graph optimisers also treat such values as facts (an add of
zeros is dropped, equal constants are merged, a BatchNorm is folded into the conv before it), so a
variable can vanish from the exported graph altogether. Here each trainable float variable is moved
off its value by seeded noise scaled to its own spread: no two variables are alike in any layout, none
holds one value throughout, so none can be confused with another, merged or dropped as a no-op. The
variables also travel as graph inputs through grappler (`every_variable`), which then folds none of
them into another constant. The native stage runs its passes on this export, ties parameters by
these values, then loads the real values through the ties and checks the result against the real
export (pipeline/torch_worker/marked_ties.py). The real variables are restored before this returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

# The noise is a tenth of the variable's spread: far above float rounding, small enough that the
# marked model computes values of the same size as the real one (the passes verify them).
_NOISE = 0.1


@contextlib.contextmanager
def marked(keras_model, seed: int) -> Iterator[int]:
    """Within the block the model's trainable float variables hold their marked values; yields how
    many variables were marked."""
    variables = _unique(v for v in keras_model.trainable_weights if _is_float(v))
    originals = [np.array(v.numpy()) for v in variables]
    rng = np.random.default_rng(seed)
    try:
        for variable, value in zip(variables, originals, strict=True):
            variable.assign(mark(value, rng))
        yield len(variables)
    finally:
        for variable, value in zip(variables, originals, strict=True):
            variable.assign(value)


def mark(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    wide = value.astype(np.float64)
    magnitude = float(np.max(np.abs(wide), initial=0.0))
    # A constant variable's std is rounding noise (1e-22 for ConvNeXt's 1e-6 layer scales): at least
    # a tenth of the variable's size, so that the noise spans some 1e5 float32 values around it.
    spread = max(float(np.std(wide)), 0.1 * magnitude) or 1.0
    noise = rng.uniform(-1.0, 1.0, value.shape) * (_NOISE * spread)
    return (wide + noise).astype(value.dtype)


def _is_float(variable) -> bool:
    return np.asarray(variable.numpy()).dtype.kind == "f"


def _unique(variables) -> list:
    """A variable shared by two layers appears once."""
    seen, found = set(), []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            found.append(variable)
    return found
