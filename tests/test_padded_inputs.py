"""Sample inputs that reach masks: the generator pads what the model pads (pipeline/common/inputs.py).
Numpy only; the conversions that use these inputs are in tests/test_exercised.py."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.common.inputs import DetectedPadding, TensorInfo, generate, resolve_specs
from pipeline.config import InputSpec
from pipeline.errors import ConfigError

EMBEDDING = DetectedPadding(0, "Embedding 'embedding' (mask_zero=True)")


def _lengths(batch: np.ndarray, value: float) -> list[int]:
    """Each row's count of positions before the first padded one (right padding)."""
    padded = np.all(batch.reshape(*batch.shape[:2], -1) == value, axis=-1)
    return [int(np.argmax(row)) if row.any() else batch.shape[1] for row in padded]


def test_token_ids_read_by_an_embedding_get_right_padded_rows_in_every_batch_but_the_first():
    declared = [TensorInfo("tokens", "int32", (None, None), vocabulary=200, padding=EMBEDDING)]
    configured = [InputSpec(name="tokens", shape=[4, 12], range=(1, 200))]
    (spec,) = resolve_specs(declared, configured, batch_size=2)
    assert spec.padding is not None and spec.padding.source == EMBEDDING.source
    padded = generate([spec], seed=0, samples=3)["tokens"]
    unpadded = generate([spec.__class__(**{**spec.__dict__, "padding": None})], seed=0, samples=3)["tokens"]
    # The first batch is drawn as it was: the user's range never holds the padding id.
    np.testing.assert_array_equal(padded[0], unpadded[0])
    assert padded[0].min() >= 1
    # The others: full length down to one token, then the other way round; real positions keep
    # their drawn ids, the rest are the padding id.
    assert _lengths(padded[1], 0) == [12, 8, 5, 1]
    assert _lengths(padded[2], 0) == [1, 5, 8, 12]
    for sample in (1, 2):
        for row, length in enumerate(_lengths(padded[sample], 0)):
            np.testing.assert_array_equal(padded[sample, row, :length], unpadded[sample, row, :length])
            assert (padded[sample, row, length:] == 0).all()
    described = spec.describe(3)["padding"]
    assert described["lengths"] == [None, [12, 8, 5, 1], [1, 5, 8, 12]]


def test_a_batch_of_one_row_takes_the_shortest_and_the_middle_length_in_turn():
    declared = [TensorInfo("tokens", "int64", (None, 10), padding=EMBEDDING)]
    (spec,) = resolve_specs(declared, [InputSpec(name="tokens", range=(1, 50), padding={"min_len": 2})], 1)
    batches = generate([spec], seed=1, samples=3)["tokens"]
    assert [_lengths(b, 0) for b in batches] == [[10], [2], [6]]


def test_a_padding_mask_and_the_token_ids_beside_it_share_the_lengths():
    """KerasHub's and BERT's inputs, found by name in any format: 1 on real tokens, 0 on padding."""
    declared = [
        TensorInfo("token_ids", "int32", (None, None)),
        TensorInfo("padding_mask", "int32", (None, None)),
        TensorInfo("causal_mask", "int32", (None, None, None)),
    ]
    configured = [
        InputSpec(name="token_ids", shape=[3, 9], range=(1, 64)),
        InputSpec(name="padding_mask", shape=[3, 9], range=(0, 2)),
        InputSpec(name="causal_mask", shape=[3, 9, 9], range=(0, 2)),
    ]
    specs = resolve_specs(declared, configured, batch_size=2)
    assert [s.padding is not None for s in specs] == [True, True, False]
    assert specs[1].padding.mask and not specs[0].padding.mask
    assert "padding_mask" in specs[0].padding.source
    feeds = generate(specs, seed=0, samples=2)
    tokens, mask = feeds["token_ids"][1], feeds["padding_mask"][1]
    lengths = [9, 5, 1]
    assert _lengths(tokens, 0) == lengths
    for row, length in enumerate(lengths):
        assert (mask[row, :length] == 1).all() and (mask[row, length:] == 0).all()


def test_masking_pads_whole_time_steps_with_its_mask_value_and_left_padding_pads_the_start():
    declared = [TensorInfo("frames", "float32", (None, None, 5), padding=DetectedPadding(-1, "Masking 'm'"))]
    configured = [InputSpec(name="frames", shape=[2, 6, 5], padding={"side": "left", "min_len": 2})]
    (spec,) = resolve_specs(declared, configured, batch_size=2)
    assert spec.padding.value == -1 and "config: min_len, side" in spec.padding.source
    batch = generate([spec], seed=0, samples=2)["frames"][1]
    assert (batch[0] != -1).all()  # full length
    assert (batch[1, :4] == -1).all() and (batch[1, 4:] != -1).all()


def test_padding_false_turns_it_off_and_true_turns_it_on():
    declared = [
        TensorInfo("tokens", "int32", (None, 8), padding=EMBEDDING),
        TensorInfo("ids", "int32", (None, 8)),
    ]
    specs = resolve_specs(
        declared, [InputSpec(name="tokens", padding=False), InputSpec(name="ids", padding=True)], batch_size=2
    )
    assert specs[0].padding is None
    assert specs[1].padding is not None and specs[1].padding.source == "config"


@pytest.mark.parametrize(
    ("info", "spec", "message"),
    [
        (
            TensorInfo("tokens", "int32", (None, 8), vocabulary=50, padding=EMBEDDING),
            InputSpec(name="tokens", padding={"value": 50}),
            "is not a row of the Embedding",
        ),
        (
            TensorInfo("ids", "int32", (None,)),
            InputSpec(name="ids", padding=True),
            "needs a [batch, length, ...]",
        ),
        (TensorInfo("ids", "uint8", (None, 4)), InputSpec(name="ids", padding={"value": -1}), "does not fit"),
        (
            TensorInfo("ids", "int32", (None, 4)),
            InputSpec(name="ids", padding={"value": 0.5}),
            "does not fit",
        ),
    ],
)
def test_a_padding_the_input_cannot_take_is_a_config_error(info, spec, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        resolve_specs([info], [spec], batch_size=2)
