"""The package's layout follows its process split: the orchestrator (cli, orchestrator/, batching/,
reports/ and the framework-free modules at the top) imports neither framework; nothing in
torch_worker/ imports TensorFlow and nothing in tf_worker/ imports torch; no module imports itself
through others."""

from __future__ import annotations

import ast
import io
import queue
import subprocess
import sys
from pathlib import Path

from cli_runner import REPO

from pipeline.orchestrator.pool import split_events
from pipeline.worker import EVENT_PREFIX

PACKAGE = REPO / "pipeline"
FRAMEWORKS = {
    "tensorflow",
    "keras",
    "tf_keras",
    "tf2onnx",
    "torch",
    "onnx2torch",
    "onnxruntime",
    "torchvision",
}


def _modules(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running it is the command line
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def _imported_after(modules: list[str], first: str = "") -> set[str]:
    """The top-level packages a fresh interpreter holds after importing `modules`."""
    code = (
        f"import importlib, sys\n{first}\n"
        f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(proc.stdout.split())


def test_the_orchestrator_imports_neither_framework():
    top = [m for m in _modules(PACKAGE) if m.count(".") == 1]  # cli, plan, config, worker, ...
    folders = [m for f in ("orchestrator", "batching", "reports") for m in _modules(PACKAGE / f)]
    assert "pipeline.cli" in top and "pipeline.orchestrator.runner" in folders
    assert not FRAMEWORKS & _imported_after(top + folders)


def test_nothing_on_the_torch_side_imports_tensorflow():
    modules = _modules(PACKAGE / "torch_worker") + _modules(PACKAGE / "common")
    # converters register in a fixed order (a version's own converter before the fallbacks)
    first = "from pipeline.torch_worker.converters import register; register()"
    imported = _imported_after(modules, first)
    assert "torch" in imported and not {"tensorflow", "keras", "tf_keras", "tf2onnx"} & imported


def test_nothing_on_the_tf_side_imports_torch():
    imported = _imported_after(_modules(PACKAGE / "tf_worker"))
    assert "tensorflow" in imported and not {"torch", "onnx2torch", "torchvision"} & imported


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, imports inside functions included."""
    modules = set(_modules(PACKAGE))
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module in modules:
        path = REPO / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / module.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_package_has_no_import_cycles():
    graph = _import_graph()
    assert graph["pipeline.orchestrator.runner"] >= {"pipeline.plan", "pipeline.orchestrator.pool"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_events_are_found_even_after_text_a_library_printed_without_newline():
    stream = io.StringIO("Saved artifact at /tmp/x\n" + "progress 50%" + EVENT_PREFIX + '{"stage": "load"}\n')
    events: queue.Queue = queue.Queue()
    log = io.StringIO()
    split_events(stream, events, log.write)
    assert events.get_nowait() == {"stage": "load"}
    assert events.get_nowait() is None  # end of output
    assert log.getvalue() == "Saved artifact at /tmp/x\nprogress 50%\n"
