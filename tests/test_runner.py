import io
import queue
import subprocess
import sys

from pipeline.config import ModelConfig
from pipeline.runner import LOCALIZE_GROUPS, STAGE_COMPARISONS, STAGE_GROUPS, VERIFY_GROUPS, stage_groups
from pipeline.worker import EVENT_PREFIX, STAGE_FUNCTIONS
from pipeline.workers import split_events


def test_events_are_found_even_after_text_a_library_printed_without_newline():
    stream = io.StringIO("Saved artifact at /tmp/x\n" + "progress 50%" + EVENT_PREFIX + '{"stage": "load"}\n')
    events: queue.Queue = queue.Queue()
    log = io.StringIO()
    split_events(stream, events, log.write)
    assert events.get_nowait() == {"stage": "load"}
    assert events.get_nowait() is None  # end of output
    assert log.getvalue() == "Saved artifact at /tmp/x\nprogress 50%\n"


def test_every_stage_has_a_function_and_tf_stages_run_before_torch_stages():
    assert [n for _, group in STAGE_GROUPS for n in group] == ["load", "export", "validate", "import"]
    with_gradients = stage_groups(
        ModelConfig(gradients=True, torch_compile=True, train_check=True, training_check=3)
    )
    assert dict(with_gradients) == {
        # The training stages come last: the TF steps change the Keras model's weights.
        "tf": ("load", "export", "tf_gradients", "tf_training"),
        "torch": (
            "validate",
            "import",
            "native",
            "torch_export",
            "torch_compile",
            "train_check",
            "gradients",
            "training",
        ),
    }
    assert dict(stage_groups(ModelConfig(native=False)))["torch"] == ("validate", "import")
    groups = (with_gradients, LOCALIZE_GROUPS, VERIFY_GROUPS)
    every = [(g, n) for group in groups for g, names in group for n in names]
    assert {n for _, n in every} == set(STAGE_FUNCTIONS)
    assert set(STAGE_COMPARISONS) <= {n for _, n in every}
    # the torch worker must never import a module that imports TensorFlow (checked below)
    torch_modules = {STAGE_FUNCTIONS[n].split(":")[0] for g, n in every if g == "torch"}
    assert torch_modules == TORCH_STAGE_MODULES


TORCH_STAGE_MODULES = {
    "pipeline.stages.torch_stages",
    "pipeline.stages.gradients_torch",
    "pipeline.stages.localize_torch",
    "pipeline.stages.native_stage",
    "pipeline.stages.torch_export",
    "pipeline.stages.training_torch",
    "pipeline.port.stage",
}


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(proc.stdout.split())


def test_the_orchestrator_imports_neither_framework():
    modules = _imported_after(
        "import pipeline.cli, pipeline.runner, pipeline.report, pipeline.compare, pipeline.batch, "
        "pipeline.executors, pipeline.workers, pipeline.summary, pipeline.progress"
    )
    assert not {"tensorflow", "torch", "keras", "onnx2torch"} & modules


def test_the_torch_worker_stages_never_import_tensorflow():
    modules = _imported_after(f"import {', '.join(sorted(TORCH_STAGE_MODULES))}, pipeline.converters.lstm")
    assert "torch" in modules and "tensorflow" not in modules and "keras" not in modules
