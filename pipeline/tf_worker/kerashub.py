"""KerasHub backbones, addressed by id `keras_hub.<Backbone>`: built offline from small configs.

KerasHub's presets are downloads; the architectures are code. Each backbone here is built from its
constructor with a configuration small enough to convert in seconds (two layers, a 16-32 wide hidden
state, a 64-token vocabulary) but with every block of the real architecture: rotary embeddings,
grouped-query attention, RMSNorm, gated MLPs, relative position buckets, patch embeddings.

Text backbones take `token_ids` and `padding_mask` (and `segment_ids` where the model has segments);
their sequence length stays dynamic. Vision backbones take `images`, NHWC, at a fixed 32x32 size
(the size the zoo entries use) unless the architecture accepts any size.

KerasHub itself is optional: `make setup` installs it without its TensorFlow-Text and Kaggle
dependencies (tensorflow-text would pull the full tensorflow wheel in beside tensorflow-cpu), which
none of these backbones use.
"""

from __future__ import annotations

from pipeline.errors import ConfigError

PREFIX = "keras_hub."
VOCABULARY = 64

_TEXT = dict(vocabulary_size=VOCABULARY, num_layers=2, hidden_dim=16, intermediate_dim=32)
_ENCODER = dict(_TEXT, num_heads=2, dropout=0.0, max_sequence_length=32)
_DECODER = dict(_TEXT, num_query_heads=4, num_key_value_heads=2)
_IMAGE = (32, 32, 3)

# Constructor arguments per backbone. Two-tower backbones are built from their parts (TOWERS, below);
# a backbone in neither needs more (a tokenizer, an encoder-decoder's generation state): see
# docs/coverage.md, KerasHub backbones.
CONFIGS: dict[str, dict] = {
    # --- text encoders
    "BertBackbone": _ENCODER,
    "DistilBertBackbone": _ENCODER,
    "RobertaBackbone": _ENCODER,
    "XLMRobertaBackbone": _ENCODER,
    "AlbertBackbone": dict(_ENCODER, embedding_dim=8, num_groups=1, num_inner_repetitions=1),
    "ElectraBackbone": dict(
        vocab_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        embedding_dim=8,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=32,
    ),
    "DebertaV3Backbone": dict(_ENCODER, bucket_size=8),
    "FNetBackbone": dict(_TEXT, dropout=0.0, max_sequence_length=32),
    "RoformerV2Backbone": dict(_TEXT, num_heads=2, head_size=8, dropout=0.0),
    "ESMBackbone": dict(_ENCODER),
    # --- decoders (causal language models)
    "GPT2Backbone": _ENCODER,
    "OPTBackbone": _ENCODER,
    "GPTNeoXBackbone": dict(_ENCODER, rotary_percentage=0.5),
    "BloomBackbone": dict(_TEXT, num_heads=2, dropout=0.0),
    "FalconBackbone": dict(_TEXT, num_attention_heads=2),
    "LlamaBackbone": _DECODER,
    "MistralBackbone": dict(_DECODER, sliding_window=8),
    "Qwen2Backbone": _DECODER,
    "Qwen3Backbone": dict(_DECODER, head_dim=8),
    "Phi3Backbone": dict(_DECODER, max_sequence_length=64, pretraining_sequence_length=64),
    "GemmaBackbone": dict(_DECODER, head_dim=8),
    # --- vision
    "ViTBackbone": dict(
        image_shape=_IMAGE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    ),
    "DeiTBackbone": dict(
        image_shape=_IMAGE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32
    ),
    "ResNetBackbone": dict(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
    ),
    "VGGBackbone": dict(stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16]),
    "DenseNetBackbone": dict(stackwise_num_repeats=[1, 2], growth_rate=4),
    "XceptionBackbone": dict(stackwise_conv_filters=[[8, 8], [16, 16]], stackwise_pooling=[False, True]),
    "CSPNetBackbone": dict(
        stem_filters=16,
        stem_kernel_size=3,
        stem_strides=2,
        stackwise_depth=[1, 1],
        stackwise_strides=[1, 2],
        stackwise_num_filters=[16, 32],
        block_type="bottleneck_block",
        stage_type="dark",
    ),
    "MiTBackbone": dict(
        layerwise_depths=[1, 1],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
        hidden_dims=[8, 16],
        image_shape=_IMAGE,
    ),
}


def _two_towers(kind: str, **backbone_kwargs):
    """A contrastive image-text backbone (CLIP, SigLIP): its vision and text encoders built first,
    small, then the backbone over both."""

    def build(keras_hub):
        tower = dict(hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32)
        vision = getattr(keras_hub.models, f"{kind}VisionEncoder")(patch_size=8, image_shape=_IMAGE, **tower)
        text = getattr(keras_hub.models, f"{kind}TextEncoder")(
            vocabulary_size=VOCABULARY, embedding_dim=16, max_sequence_length=16, **tower
        )
        return getattr(keras_hub.models, f"{kind}Backbone")(vision, text, **backbone_kwargs)

    return build


# Backbones built from parts (keras_hub module -> backbone).
TOWERS = {
    "CLIPBackbone": _two_towers("CLIP", projection_dim=16),
    "SigLIPBackbone": _two_towers("SigLIP"),
}


def known_ids() -> list[str]:
    return sorted(PREFIX + name for name in (*CONFIGS, *TOWERS))


def is_kerashub_id(model_id: str) -> bool:
    return model_id.startswith(PREFIX) and model_id[len(PREFIX) :] in (*CONFIGS, *TOWERS)


def build(model_id: str):
    name = model_id[len(PREFIX) :]
    try:
        import keras_hub
    except ImportError:
        raise ConfigError(
            f"{model_id} needs keras-hub, which is not installed; `make setup` installs it, or "
            "`pip install regex && pip install --no-deps keras-hub==0.32.0 tokenizers==0.23.3`"
        ) from None
    towers = TOWERS.get(name)
    backbone = towers(keras_hub) if towers else getattr(keras_hub.models, name)(**CONFIGS[name])
    return _named_inputs(backbone)


def _named_inputs(backbone):
    """Vision backbones name their input after a global layer counter (`input_layer_3`); a config
    must be able to name it, so such a backbone is called on an input named `images`."""
    import keras

    if isinstance(backbone.input, dict) or len(backbone.inputs) != 1 or backbone.inputs[0].name == "images":
        return backbone
    spec = backbone.inputs[0]
    images = keras.Input(tuple(spec.shape[1:]), dtype=spec.dtype, name="images")
    return keras.Model(images, backbone(images), name=backbone.name)
