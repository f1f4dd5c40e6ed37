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

DEFAULTS_PATH = Path(__file__).resolve().parent.parent / "configs" / "defaults.yaml"

FORMATS = ("auto", "keras", "h5", "saved_model", "frozen_graph", "tflite", "zoo")
DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
LOCALIZE_MODES = ("auto", "always", "never")
# The newest opset tf2onnx is asked to write; the import sweep measures the converters up to it.
MAX_OPSET = 18


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# How a tolerance is applied: element by element (with max_mismatch), or to one statistic of the
# absolute error, which must be within atol + rtol * the same statistic of |reference|.
STATS = ("elementwise", "max", "p99", "mean")


class CompileSettings(_Strict):
    """What Keras's compile() takes, for a model saved without it (a zoo id, an uncompiled file):
    the same names and values as a .keras file's compile_config."""

    optimizer: str | dict[str, Any]
    loss: str | dict[str, Any] | list[Any]
    loss_weights: list[float] | dict[str, float] | None = None
    metrics: list[Any] = []


class Tolerance(_Strict):
    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    max_mismatch: float | None = Field(default=None, ge=0, le=1)
    stat: Literal[STATS] | None = None  # type: ignore[valid-type]


class ResolvedTolerance(_Strict):
    atol: float = Field(ge=0)
    rtol: float = Field(ge=0)
    max_mismatch: float = Field(ge=0, le=1)
    stat: Literal[STATS] = "elementwise"  # type: ignore[valid-type]


class Tolerances(_Strict):
    default: ResolvedTolerance = ResolvedTolerance(atol=1e-5, rtol=1e-4, max_mismatch=0.0)
    tf_vs_onnx: Tolerance = Tolerance()
    onnx_vs_torch: Tolerance = Tolerance()
    tf_vs_torch: Tolerance = Tolerance()
    # `tf2torch verify`: the Keras model against the hand-written port with the transferred weights.
    tf_vs_port: Tolerance = Tolerance()
    # d(projected outputs)/d(inputs), TF against torch (`gradients: true`); keys are input names.
    gradients: Tolerance = Tolerance()
    # The training check: each step's loss (`loss`) and each parameter's update (`update:<name>`).
    training: Tolerance = Tolerance()
    outputs: dict[str, Tolerance] = {}


class InputSpec(_Strict):
    name: str
    shape: list[int] | None = None
    dtype: Literal[DTYPES] | None = None  # type: ignore[valid-type]
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if self.shape is not None and any(d < 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} has a negative dimension")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range {list(self.range)} must be [low, high] with low < high")
        return self


class ModelConfig(_Strict):
    model: str | None = None
    format: Literal[FORMATS] = "auto"  # type: ignore[valid-type]
    signature: str = "serving_default"
    inputs: list[InputSpec] | None = None
    outputs: list[str] | None = None
    opset: int = Field(default=17, ge=9, le=MAX_OPSET)
    # model.onnx keeps its tensors in model.onnx.data above this size (protobuf's limit is 2 GB).
    external_data_threshold_mb: float = Field(default=1800, ge=0)
    seed: int = 0
    samples: int = Field(default=3, ge=1)
    batch_size: int = Field(default=2, ge=1)
    timeout: float = Field(default=900, gt=0)
    # Seconds one stage may take, by stage name (e.g. {export: 600}); `timeout` still bounds the job.
    stage_timeouts: dict[str, float] = {}
    tolerances: Tolerances = Tolerances()
    # Compare TF's and torch's gradients with respect to the inputs (pipeline/common/gradients.py).
    gradients: bool = False
    # auto: localise when a comparison fails; always: also when all pass; never.
    localize: Literal[LOCALIZE_MODES] = "auto"  # type: ignore[valid-type]
    # Python files with extra or replacement onnx2torch converters (pipeline/torch_worker/converters/plugins.py).
    converters: list[str] = []
    # Keras: load Lambda layers, whose Python code is stored in the model file and runs when it is
    # loaded (--trust-model); Python files defining the model's custom layer classes.
    trust_model: bool = False
    # NaN/Inf in TF's outputs fail the load stage unless allowed (then they must sit at the same places).
    allow_nonfinite: bool = False
    custom_objects: list[str] = []
    # nchw: image inputs and outputs (4-D) in PyTorch's channel order, in the ONNX and torch models
    # and in every artifact (pipeline/tf_worker/layout.py).
    layout: Literal["nhwc", "nchw"] = "nhwc"
    # The native PyTorch model (pipeline/torch_worker/native/): graph passes, model.py + model.safetensors.
    native: bool = True
    # The class model.py defines.
    class_name: str = Field(default="ConvertedModel", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # torch.export of the native model (batch dimension dynamic) into model.pt2; only with `native`.
    torch_export: bool = True
    # torch.compile of the native model, run and compared (compiling takes seconds to minutes); only
    # with `native`.
    torch_compile: bool = False
    # 20 SGD steps of the native model on random targets: the loss falls, every parameter learns.
    train_check: bool = False
    train_check_lr: float = Field(default=0.01, gt=0)
    # train.py from the Keras model's compile() settings (pipeline/torch_worker/training/); with training_check: N,
    # N optimizer steps in TF and torch from the same weights on the same batches, compared.
    training: bool = False
    training_check: int = Field(default=0, ge=0, le=1000)
    # Both sides of the training check compute in this precision (float64: rounding cannot fake or
    # hide a difference; float32: the model's own precision, where deep networks drift apart).
    training_precision: Literal["float64", "float32"] = "float64"
    # The compile() settings to train with, instead of those the model file stores (or lacks).
    compile: CompileSettings | None = None
    # `tf2torch verify` (pipeline/torch_worker/port/): the hand-written module, "path/to/module.py:ClassName", the
    # keyword arguments its constructor takes, the image layout its forward expects (nchw: 4-D inputs
    # transposed for it, 4-D outputs transposed back), Keras layer -> torch submodule pairs that the
    # order cannot give, and where to write the transferred weights (safetensors).
    torch_module: str | None = None
    init_args: dict[str, Any] = {}
    input_layout: Literal["nhwc", "nchw"] = "nchw"
    weight_mapping: dict[str, str] = {}
    save_weights: str | None = None

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
    defaults_path: Path = DEFAULTS_PATH,
    before_file: tuple[Layer, ...] = (),
    after_file: tuple[Layer, ...] = (),
) -> ModelConfig:
    """Merge defaults.yaml < `before_file` < the config file < `after_file` < CLI overrides, and validate.

    The extra layers are for zoo files: their shared defaults go before an entry's config file, the
    entry's inline keys after it."""
    layers: list[Layer] = []
    if defaults_path.is_file():
        layers.append((str(defaults_path), read_yaml(defaults_path)))
    layers += before_file
    if config_path is not None:
        layers.append(file_layer(config_path, read_yaml(config_path)))
    layers += after_file
    if overrides:
        layers.append(("command line", overrides))
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
        if candidate.exists():
            data = {**data, "model": str(candidate)}
    for key in ("converters", "custom_objects"):
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
