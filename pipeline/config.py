"""Configuration: pydantic models, YAML loading and the merge of defaults < model config < CLI flags.

Tolerance resolution lives here too (`resolve_tolerance`), so there is one place that decides which
atol/rtol applies to a given stage pair and output.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import plan
from pipeline.errors import ConfigError
from pipeline.formats import is_zoo_id

FORMATS = ("auto", "keras", "h5", "saved_model", "frozen_graph", "tflite", "zoo")
DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
LOCALIZE_MODES = ("auto", "always", "never")
# The newest opset tf2onnx is asked to write; the import sweep measures the converters up to it.
MAX_OPSET = 18


# Config keys that name the user's own Python files (relative to the config file; hashed into the
# cache fingerprint; bounded to a zoo's base directory).
USER_CODE_KEYS = ("converters", "custom_objects", "tflite_custom_ops")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# How a tolerance is applied: element by element (with max_mismatch), or to one statistic of the
# absolute error, which must be within atol + rtol * the same statistic of |reference|.
STATS = ("elementwise", "max", "p99", "mean")


class CompileSettings(_Strict):
    """What Keras's compile() takes, for a model saved without it (a zoo id, an uncompiled file):
    the same names and values as a .keras file's compile_config."""

    optimizer: str | dict[str, Any] = Field(
        description="An optimizer name (`adam`) or Keras's serialized form (`{class_name, config}`)."
    )
    loss: str | dict[str, Any] | list[Any] = Field(
        description="A loss name, its serialized form, or one per output."
    )
    loss_weights: list[float] | dict[str, float] | None = Field(
        default=None, description="The weight of each output's loss."
    )
    metrics: list[Any] = Field(default=[], description="Metrics (recorded, not compared).")


class Tolerance(_Strict):
    """A partial tolerance: the keys it sets override the default's (unset keys inherit)."""

    atol: float | None = Field(default=None, ge=0, description="Absolute tolerance.")
    rtol: float | None = Field(default=None, ge=0, description="Relative tolerance, times |reference|.")
    max_mismatch: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The fraction of elements allowed outside atol + rtol * |reference| (elementwise).",
    )
    stat: Literal[STATS] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="`elementwise`: each element is judged (with max_mismatch); `max`, `p99`, `mean`: that "
        "statistic of |candidate - reference| must be within atol + rtol * the same statistic of "
        "|reference| (a rule on the error's scale, for outputs with a wide range).",
    )


class ResolvedTolerance(_Strict):
    """A complete tolerance: what one comparison is judged by."""

    atol: float = Field(ge=0, description="Absolute tolerance.")
    rtol: float = Field(ge=0, description="Relative tolerance, times |reference|.")
    max_mismatch: float = Field(
        ge=0, le=1, description="The fraction of elements allowed outside atol + rtol * |reference|."
    )
    stat: Literal[STATS] = Field(  # type: ignore[valid-type]
        default="elementwise", description="`elementwise`, `max`, `p99` or `mean` (see Tolerance)."
    )


class Tolerances(_Strict):
    """Most specific wins: a per-output entry over a per-pair entry over `default`."""

    default: ResolvedTolerance = Field(
        default=ResolvedTolerance(atol=1e-5, rtol=1e-4, max_mismatch=0.0),
        description="What every comparison is judged by unless a more specific entry says otherwise.",
    )
    tf_vs_onnx: Tolerance = Field(default=Tolerance(), description="TF against onnxruntime.")
    onnx_vs_torch: Tolerance = Field(default=Tolerance(), description="onnxruntime against torch.")
    tf_vs_torch: Tolerance = Field(
        default=Tolerance(), description="TF against torch (the onnx2torch model, model.py, model.pt2)."
    )
    tf_vs_port: Tolerance = Field(
        default=Tolerance(),
        description="`tf2torch verify`: the Keras model against the hand-written port with the "
        "transferred weights.",
    )
    gradients: Tolerance = Field(
        default=Tolerance(),
        description="d(projected outputs)/d(inputs), TF against torch (`gradients: true`).",
    )
    training: Tolerance = Field(
        default=Tolerance(),
        description="The training check: each step's loss and each parameter's update.",
    )
    outputs: dict[str, Tolerance] = Field(
        default={}, description="Per output name: overrides every pair's tolerance for that output."
    )


class PaddingSpec(_Strict):
    """How padded rows of a sequence input are made: rows of different lengths along axis 1, the
    positions past each row's length set to `value` (a padding mask: ones on real positions)."""

    value: float = Field(
        default=0,
        description="What padded positions hold: the padding token id (0 for Keras's `mask_zero`), "
        "`Masking`'s `mask_value`, or 0 in a padding mask.",
    )
    side: Literal["right", "left"] = Field(
        default="right", description="`right`: padding after the tokens (the usual); `left`: before them."
    )
    min_len: int = Field(default=1, ge=1, description="The shortest row's length (real positions).")
    mask: bool = Field(
        default=False,
        description="The input is a padding mask (KerasHub's `padding_mask`, BERT's `input_mask`): 1 on "
        "real positions, `value` on padded ones, with the same lengths as the other padded inputs.",
    )


class InputSpec(_Strict):
    """One input of the model, by name."""

    name: str = Field(description="The input's name (as the model's signature names it).")
    shape: list[int] | None = Field(
        default=None,
        description="The full shape to feed, e.g. `[2, 224, 224, 3]` (fills dynamic dimensions).",
    )
    dtype: Literal[DTYPES] | None = Field(  # type: ignore[valid-type]
        default=None, description="The dtype to feed (default: the model's)."
    )
    range: tuple[float, float] | None = Field(
        default=None, description="`[low, high]` of the random values (integers: token ids, class ids)."
    )
    padding: PaddingSpec | bool | None = Field(
        default=None,
        description="Padded rows among the sample batches (every batch but the first, when there are "
        "several): one row at full length, one at `min_len`, the rest between. Default: chosen from the "
        "model (token ids read by an Embedding, inputs of a `Masking` layer, inputs named like `*mask*` "
        "and the token ids beside them); `false` turns it off, `true` or a mapping turns it on.",
    )

    @field_validator("shape")
    @classmethod
    def _positive_sizes(cls, shape: list[int] | None) -> list[int] | None:
        if shape is not None and any(d < 1 for d in shape):
            raise ValueError(f"shape {shape} has a size below 1: every dimension must be at least 1")
        return shape

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range {list(self.range)} must be [low, high] with low < high")
        return self


class ModelConfig(_Strict):
    """One model's settings. Every field's `description` is its documentation: the configuration
    reference (docs/reference/config.md) is generated from this class, so it cannot drift."""

    model: str | None = Field(
        default=None,
        description="The model: a .keras/.h5/.pb/.tflite file, a SavedModel directory or a zoo id "
        "(relative paths are relative to the config file).",
    )
    format: Literal[FORMATS] = Field(  # type: ignore[valid-type]
        default="auto", description="The model's format; `auto` detects it from the path."
    )
    signature: str = Field(default="serving_default", description="The SavedModel signature to convert.")
    inputs: list[InputSpec] | None = Field(
        default=None,
        description="The inputs to feed, by name: shape (fills dynamic dimensions), dtype and value range "
        "of the seeded random samples. Default: read from the model, dynamic dimensions from batch_size.",
    )
    outputs: list[str] | None = Field(default=None, description="The outputs to compare (default: all).")
    opset: int = Field(default=17, ge=9, le=MAX_OPSET, description="The ONNX opset tf2onnx targets.")
    external_data_threshold_mb: float = Field(
        default=1800,
        ge=0,
        description="Above this total size of tensors, model.onnx keeps them in model.onnx.data "
        "(protobuf's limit is 2 GB).",
    )
    seed: int = Field(default=0, description="Seeds the random inputs.")
    zoo_weights: Literal["redrawn", "initial"] = Field(
        default="redrawn",
        description="A zoo id's weights: `redrawn` draws the ones Keras initialises to constants (biases, "
        "BatchNorm statistics) from the seed, so that no folding of a zero or a one can hide a bug; "
        "`initial` keeps Keras's own initial values, the never-fitted model a person trains from scratch.",
    )
    samples: int = Field(default=3, ge=1, description="Random input batches compared per stage.")
    batch_size: int = Field(
        default=2, ge=1, description="Fills a dynamic (None) leading dimension when `inputs` gives no shape."
    )
    timeout: float = Field(
        default=900, gt=0, description="Seconds each worker process (the TF group, the torch group) may run."
    )
    stage_timeouts: dict[str, float] = Field(
        default={},
        description="Seconds one stage may run, by stage name, e.g. `{export: 600, native: 300}`; "
        "`timeout` still bounds the whole job.",
    )
    tolerances: Tolerances = Field(
        default=Tolerances(),
        description="How close outputs must be, per stage pair and per output (see Tolerances below).",
    )
    gradients: bool = Field(
        default=False,
        description="Also compare TF's and torch's gradients with respect to the inputs "
        "(`tolerances.gradients`).",
    )
    localize: Literal[LOCALIZE_MODES] = Field(  # type: ignore[valid-type]
        default="auto",
        description="Name the op where outputs diverge: `auto` when a comparison fails, `always`, or `never`.",
    )
    converters: list[str] = Field(
        default=[], description="Python files with extra or replacement onnx2torch converters."
    )
    trust_model: bool = Field(
        default=False,
        description="Load Keras Lambda layers, whose Python code is stored in the model file and runs when "
        "it is loaded; only for files you trust.",
    )
    allow_nonfinite: bool = Field(
        default=False,
        description="NaN/Inf in TF's outputs fail the load stage; true: compare their positions instead.",
    )
    custom_objects: list[str] = Field(
        default=[], description="Python files defining the Keras model's custom layer classes."
    )
    tf_onednn: bool = Field(
        default=True,
        description="TensorFlow's oneDNN CPU kernels for the reference outputs; false runs TF's own "
        "kernels (oneDNN refuses some shapes, such as a Softmax over more than 5 dimensions).",
    )
    tflite_custom_ops: list[str] = Field(
        default=[],
        description="Python files giving a .tflite's custom ops (an app runtime's own kernels) as builtin "
        "TFLite ops (pipeline/tflite_custom_ops.py).",
    )
    layout: Literal["nhwc", "nchw"] = Field(
        default="nhwc",
        description="`nchw`: image inputs and outputs (4-D) in PyTorch's channel order, in the ONNX and "
        "torch models and in every artifact.",
    )
    native: bool = Field(
        default=True,
        description="Graph passes into a plain PyTorch model: model.py + model.safetensors + "
        "weights_map.json (stage `native`).",
    )
    class_name: str = Field(
        default="ConvertedModel",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The class model.py defines.",
    )
    torch_export: bool = Field(
        default=True,
        description="torch.export of the native model, with its dynamic dimensions, into model.pt2 "
        "(only with `native`).",
    )
    torch_compile: bool = Field(
        default=False,
        description="Also torch.compile the native model and compare its outputs (15-35 s a model on "
        "2 cores; only with `native`).",
    )
    train_check: bool = Field(
        default=False,
        description="20 SGD steps of the native model on random targets: the loss falls and every "
        "parameter learns.",
    )
    train_check_lr: float = Field(default=0.01, gt=0, description="The train check's SGD learning rate.")
    marked_export: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Keras models: export once more with each trainable variable marked by a value of "
        "its own, and tie model.py's parameters to the variables on that export (by identity: a zero "
        "bias, a unit gamma, two equal variables), then load the real values. `auto`: when train.py is "
        "written (training, training_check); `always`: for every model.py; `never`: ties by value only "
        "(a variable at Keras's initial constant can then be left without a parameter). About half the "
        "export stage's time again.",
    )
    training: bool = Field(
        default=False, description="Write train.py beside model.py from the Keras model's compile() settings."
    )
    training_check: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="N > 0: N optimizer steps in TF and with train.py from the same weights on the same "
        "batches, losses and weight updates compared (implies `training`).",
    )
    training_precision: Literal["float64", "float32"] = Field(
        default="float64",
        description="The training check's arithmetic on both sides: float64, where rounding cannot fake "
        "or hide a difference; float32, the model's own (deep networks drift apart).",
    )
    training_allow_todos: bool = Field(
        default=False,
        description="Accept a train.py with TODOs (Keras settings it does not carry over): the training "
        "stage passes with them listed. Without it such a stage fails (exit 1): a part of what Keras "
        "trains would be left out.",
    )
    compile: CompileSettings | None = Field(
        default=None,
        description="`{optimizer, loss, loss_weights, metrics}` to train with, as Keras compile() takes "
        "them, instead of those the model file stores (or lacks).",
    )
    torch_module: str | None = Field(
        default=None, description="verify: the hand-written port, `path/to/module.py:ClassName`."
    )
    init_args: dict[str, Any] = Field(
        default={}, description="verify: keyword arguments of the port's constructor."
    )
    input_layout: Literal["nhwc", "nchw"] = Field(
        default="nchw",
        description="verify: the port's image layout; `nchw` transposes 4-D inputs for it (and 4-D "
        "outputs back).",
    )
    weight_mapping: dict[str, str] = Field(
        default={},
        description="verify: Keras layer name -> torch submodule name, where the order cannot pair them.",
    )
    save_weights: str | None = Field(
        default=None, description="verify: write the transferred weights here (safetensors)."
    )

    @field_validator("stage_timeouts")
    @classmethod
    def _known_stages(cls, value: dict[str, float]) -> dict[str, float]:
        for stage, seconds in value.items():
            if stage not in plan.STAGES:
                close = difflib.get_close_matches(stage, plan.STAGES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown stage '{stage}'{hint}; stages: {', '.join(plan.STAGES)}")
            if not seconds > 0:
                raise ValueError(f"{stage}: must be more than 0 seconds, got {seconds}")
        return value

    @model_validator(mode="after")
    def _needs_native(self) -> ModelConfig:
        # torch_export (on by default) simply follows `native`; asking for a train check is explicit.
        if self.train_check and not self.native:
            raise ValueError("train_check needs `native: true` (it trains the native model)")
        if self.writes_train_py and not self.native:
            raise ValueError("training needs `native: true` (train.py trains model.py)")
        return self

    @property
    def wants_marked_export(self) -> bool:
        return self.native and (
            self.marked_export == "always" or (self.marked_export == "auto" and self.writes_train_py)
        )

    @property
    def writes_train_py(self) -> bool:
        """`training: true`, or a training check (which checks train.py)."""
        return self.training or self.training_check > 0


def resolve_tolerance(tolerances: Tolerances, pair: str, output: str) -> ResolvedTolerance:
    """Most specific wins: per-output override > per-pair setting > default."""
    pair = plan.tolerance_of(pair)
    resolved = tolerances.default.model_dump()
    for layer in (getattr(tolerances, pair), tolerances.outputs.get(output)):
        if layer is not None:
            resolved.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return ResolvedTolerance(**resolved)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}"
        )
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


Layer = tuple[str, dict[str, Any]]  # (where it came from, for messages; its keys)


def load_config(
    config_path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    before_file: tuple[Layer, ...] = (),
    after_file: tuple[Layer, ...] = (),
    source: str = "command line",
) -> ModelConfig:
    """Merge ModelConfig's defaults < `before_file` < the config file < `after_file` < `overrides`
    (named `source` in messages: the command line's flags, the Python API's arguments), and validate.

    The defaults are the pydantic models' own: one source, documented in docs/reference/config.md.
    The extra layers are for zoo files: their shared defaults go before an entry's config file, the
    entry's inline keys after it."""
    # The defaults as a layer: a file that sets part of a nested section (`tolerances.default.atol`)
    # keeps the rest of it.
    layers: list[Layer] = [("defaults", ModelConfig().model_dump(mode="json")), *before_file]
    if config_path is not None:
        layers.append(file_layer(config_path, read_yaml(config_path)))
    layers += after_file
    if overrides:
        layers.append((source, overrides))
    merged: dict[str, Any] = {}
    for _, data in layers:
        merged = deep_merge(merged, data)
    try:
        return ModelConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None


def file_layer(path: Path, data: dict[str, Any], name: str | None = None) -> Layer:
    """A layer read from `path`: relative model and converter paths in it are relative to that file,
    so configs can move with their models."""
    model = data.get("model")
    if isinstance(model, str) and not Path(model).is_absolute():
        candidate = path.parent / model
        # Beside the file; else as given, if it exists from here; a path found nowhere is named
        # beside the file (so "model not found" shows where it was looked for). Zoo ids stay ids.
        missing = not Path(model).exists() and not is_zoo_id(model)
        if candidate.exists() or missing:
            data = {**data, "model": str(candidate)}
    for key in USER_CODE_KEYS:
        files = data.get(key)
        if isinstance(files, list):
            data = {
                **data,
                key: [
                    str(path.parent / f) if isinstance(f, str) and not Path(f).is_absolute() else f
                    for f in files
                ],
            }
    return (name or str(path), data)


def _describe(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        key = ".".join(loc) or "(top level)"
        source = _source_of(err["loc"], layers)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1])
            hint = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            msg = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            msg += f"; allowed here: {', '.join(allowed)}"
        else:
            msg = f"key '{key}': {err['msg']} (got {err.get('input')!r})"
        lines.append(f"{source}: {msg}")
    return "invalid config\n  " + "\n  ".join(lines)


def _source_of(loc: tuple, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The last layer that sets this key path is the one the user should edit."""
    for name, data in reversed(layers):
        node: Any = data
        found = True
        for part in loc:
            if (
                isinstance(node, dict)
                and part in node
                or isinstance(node, list)
                and isinstance(part, int)
                and part < len(node)
            ):
                node = node[part]
            else:
                found = False
                break
        if found:
            return name
    return layers[-1][0] if layers else "config"


def _allowed_keys(parent_loc: tuple) -> list[str]:
    model: type[BaseModel] | None = ModelConfig
    for part in parent_loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a free-form key, such as an output name under tolerances.outputs
        model = _model_in(field.annotation)
    return sorted(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found:
            return found
    return None
