"""The stage plan: every stage's name, the worker process that runs it, its entry point, the config keys
that enable it, what it hands to later stages, and the comparisons it is judged on with the tolerance
each uses. Framework-free and importing nothing of the package: config validation, the worker, the
runner, the summary and the tests all read it. Adding a stage is one `Stage(...)` entry below
(docs/architecture.md shows one).

A plan runs its groups in order, each in its own worker process: TensorFlow and torch cannot share a
process, and the torch stages read the model.onnx and inputs.npz the TF stages write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Group = Literal["tf", "torch"]
GROUPS: tuple[Group, ...] = ("tf", "torch")


@dataclass(frozen=True)
class Compared:
    """One comparison a stage is judged on: `reference` against `candidate` (keys of
    artifacts.COMPARED), output by output, under `tolerances.<tolerance>`."""

    pair: str  # the name in report rows, summaries and `tolerances.outputs` lookups
    reference: str
    candidate: str
    tolerance: str = ""  # the tolerance section it uses; the pair's own when empty
    # Arrays that exist only for some models or settings (a second input shape, a training check):
    # compared when the candidate's file was written, otherwise not a comparison at all.
    optional: bool = False
    # A comparison of the model's outputs that localisation can explain op by op.
    localized: bool = False
    # What an output of the wrong shape means: a conversion that went wrong (error, exit 3) or, for a
    # hand-written port, a port that does not match (tolerance_fail, exit 1).
    wrong_shape: Literal["error", "tolerance_fail"] = "error"

    @property
    def tolerance_key(self) -> str:
        return self.tolerance or self.pair


@dataclass(frozen=True)
class Stage:
    name: str
    group: Group
    entry: str  # "module:function", imported by the worker only when the stage runs
    # Config attributes that must all be true for the stage to run in a conversion (none: always).
    enabled_by: tuple[str, ...] = ()
    compares: tuple[Compared, ...] = ()
    # What the stage leaves in its worker's in-memory state for later stages of the same job, and what
    # it reads from there (`state` keys). A stage reading what no earlier stage of its job wrote is a
    # plan error (tests/test_plan.py); an optional read is one the stage copes without.
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()

    def enabled(self, cfg: Any) -> bool:
        return all(getattr(cfg, key) for key in self.enabled_by)


@dataclass(frozen=True)
class Plan:
    """An ordered list of stages run as one job per group. `tool` is the report's `tool` field, `command`
    what a lock on the run directory says is writing there."""

    name: str
    tool: str
    command: str
    stages: tuple[Stage, ...]

    def groups(self, cfg: Any = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(group, stage names) in run order, with the stages `cfg` enables (all of them without one)."""
        chosen = [s for s in self.stages if cfg is None or s.enabled(cfg)]
        return tuple(
            (group, tuple(s.name for s in chosen if s.group == group))
            for group in GROUPS
            if any(s.group == group for s in chosen)
        )


_TF = "pipeline.tf_worker"
_TORCH = "pipeline.torch_worker"

# `tf2torch convert`. Within a group the order is the run order: the gradients need the loaded model
# (TF) or the imported module (torch); the training stages come last because TF's steps change the
# Keras model's weights; the native model's forms follow `import` in the order they derive.
CONVERT = Plan(
    "convert",
    "tf2torch",
    "tf2torch convert",
    (
        Stage(  # load the TF model, seeded inputs, reference outputs
            "load",
            "tf",
            f"{_TF}.stages:load",
            writes=("model", "nchw", "output_ranks"),
        ),
        Stage(  # tf2onnx to model.onnx
            "export",
            "tf",
            f"{_TF}.stages:export",
            reads=("model", "nchw"),
            optional_reads=("output_ranks",),
        ),
        Stage(  # TF's input gradients of projected outputs
            "tf_gradients",
            "tf",
            f"{_TF}.gradients:tf_gradients",
            enabled_by=("gradients",),
            reads=("model",),
        ),
        Stage(  # the Keras compile settings mapped; TF's training steps
            "tf_training",
            "tf",
            f"{_TF}.training:tf_training",
            enabled_by=("writes_train_py",),
            reads=("model",),
        ),
        Stage(  # ONNX checker, shape inference, onnxruntime
            "validate",
            "torch",
            f"{_TORCH}.onnx_stages:validate",
            writes=("onnx",),
            compares=(Compared("tf_vs_onnx", "tf", "onnx", localized=True),),
        ),
        Stage(  # onnx2torch to model.pt
            "import",
            "torch",
            f"{_TORCH}.onnx_stages:import_torch",
            writes=("torch_module", "input_names", "output_names"),
            optional_reads=("onnx",),
            compares=(
                Compared("onnx_vs_torch", "onnx", "torch", localized=True),
                Compared("tf_vs_torch", "tf", "torch", localized=True),
            ),
        ),
        Stage(  # model.py and model.safetensors
            "native",
            "torch",
            f"{_TORCH}.native_stage:native",
            enabled_by=("native",),
            reads=("torch_module", "input_names", "output_names"),
            writes=("native_module", "restored_dropouts"),
            compares=(
                # The native model's forms use the tolerance of the onnx2torch module they derive from.
                Compared("onnx_vs_native", "onnx", "native", tolerance="onnx_vs_torch"),
                Compared("tf_vs_native", "tf", "native", tolerance="tf_vs_torch"),
                Compared(
                    "tf_vs_native_second_shape",
                    "tf_second_shape",
                    "native_second_shape",
                    tolerance="tf_vs_torch",
                    optional=True,
                ),
            ),
        ),
        Stage(  # torch.export to model.pt2
            "torch_export",
            "torch",
            f"{_TORCH}.exports:torch_export",
            enabled_by=("native", "torch_export"),
            optional_reads=("native_module", "input_names", "output_names"),
            compares=(
                Compared("onnx_vs_exported", "onnx", "exported", tolerance="onnx_vs_torch"),
                Compared(
                    "tf_vs_exported_second_shape",
                    "tf_second_shape",
                    "exported_second_shape",
                    tolerance="tf_vs_torch",
                    optional=True,
                ),
            ),
        ),
        Stage(  # torch.compile of model.py
            "torch_compile",
            "torch",
            f"{_TORCH}.exports:torch_compile",
            enabled_by=("native", "torch_compile"),
            optional_reads=("native_module", "input_names", "output_names"),
            compares=(Compared("onnx_vs_compiled", "onnx", "compiled", tolerance="onnx_vs_torch"),),
        ),
        Stage(  # one optimizer step on model.py
            "train_check",
            "torch",
            f"{_TORCH}.exports:train_check",
            enabled_by=("native", "train_check"),
            optional_reads=("native_module", "input_names"),
        ),
        Stage(  # torch's input gradients against TF's
            "gradients",
            "torch",
            f"{_TORCH}.gradients:torch_gradients",
            enabled_by=("gradients",),
            reads=("torch_module", "input_names", "output_names"),
            compares=(Compared("gradients", "tf_gradients", "torch_gradients"),),
        ),
        Stage(  # train.py, and its steps against TF's
            "training",
            "torch",
            f"{_TORCH}.training.stage:training",
            enabled_by=("writes_train_py",),
            reads=("input_names",),
            optional_reads=("native_module", "restored_dropouts"),
            compares=(Compared("training", "tf_training", "torch_training", optional=True),),
        ),
    ),
)

# Localisation runs after the conversion's stages when a comparison failed (or always, if configured):
# the TF worker writes TF's intermediate values, then the torch worker computes onnxruntime's and
# torch's and compares all three. It only explains a verdict; it never changes one.
LOCALIZE = Plan(
    "localize",
    "tf2torch",
    "tf2torch localize",
    (
        Stage("localize_tf", "tf", f"{_TF}.localize:localize_tf"),  # TF's intermediate values
        Stage(  # onnxruntime's and torch's intermediate values; the first op that parts
            "localize",
            "torch",
            f"{_TORCH}.localize:localize",
        ),
    ),
)

# `tf2torch verify`: TF writes the reference outputs, the Keras variables and per-layer values; the torch
# worker builds the hand-written port, transfers the weights into it and runs it.
VERIFY = Plan(
    "verify",
    "tf2torch verify",
    "tf2torch verify",
    (
        Stage(  # load the Keras model; its variables and per-layer values
            "port_load",
            "tf",
            f"{_TF}.port:port_load",
            writes=("model", "nchw", "output_ranks"),
        ),
        Stage(  # the hand-written module with the TF weights
            "port",
            "torch",
            f"{_TORCH}.port.stage:port",
            compares=(Compared("tf_vs_port", "tf", "port", wrong_shape="tolerance_fail"),),
        ),
    ),
)

PLANS = (CONVERT, LOCALIZE, VERIFY)
STAGES: dict[str, Stage] = {stage.name: stage for plan in PLANS for stage in plan.stages}
# The stage that writes train.py: its TODOs (Keras settings train.py does not carry over) fail it
# unless the config accepts them (`training_allow_todos`).
WRITES_TRAIN_PY = "training"
# The model-output comparisons: the summary's columns, and the pairs localisation explains; those
# against TF's outputs need TF's intermediate values too.
OUTPUT_PAIRS: tuple[str, ...] = tuple(
    c.pair for stage in CONVERT.stages for c in stage.compares if c.localized
)
PAIRS_AGAINST_TF: frozenset[str] = frozenset(
    c.pair for stage in CONVERT.stages for c in stage.compares if c.localized and c.reference == "tf"
)
COMPARISONS: dict[str, Compared] = {c.pair: c for stage in STAGES.values() for c in stage.compares}


def tolerance_of(pair: str) -> str:
    """The `tolerances.<key>` a comparison pair uses (a pair no stage compares: its own name)."""
    compared = COMPARISONS.get(pair)
    return compared.tolerance_key if compared else pair
