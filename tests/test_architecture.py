"""The import direction and shape of the core: plug-ins import the core, never the reverse,
and the core's modules import each other without cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "harness"
PLUGINS = ("harness.methods", "harness.benchmarks", "methods", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> list[str]:
    """Modules imported by `path`, leaving out `if TYPE_CHECKING:` blocks (and, when asked,
    imports inside functions, which run only when called)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not top_level_only:
                    visit(child, True)
                continue
            if isinstance(child, ast.Import):
                out.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append(child.module)
                out.extend(f"{child.module}.{a.name}" for a in child.names)
            visit(child, in_function)

    visit(tree, False)
    return out


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_never_imports_plugins():
    offenders = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p in _core_files() for m in _imports(p, top_level_only=False)
        if m == PLUGINS[0] or m.startswith(tuple(f"{x}." for x in PLUGINS)) or m in PLUGINS
    ]
    assert not offenders, "\n".join(offenders)


def test_importing_the_core_loads_no_plugin():
    names = [_module_name(p) for p in _core_files() if p.name != "__main__.py"]
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n    importlib.import_module(n)\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({tuple(p + '.' for p in PLUGINS)!r}))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_no_import_cycle_in_the_core():
    modules = {_module_name(p): p for p in _core_files()}
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strongconnect(v)
    assert not cycles, cycles
    assert "harness.executor" not in graph["harness.cell"] and "harness.runner" not in graph["harness.executor"]


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The checker itself can fail: two modules importing each other at top level are caught."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("from a import x\nif TYPE_CHECKING:\n    import c\n")
    assert _imports(a, True) == ["b"] and _imports(b, True) == ["a", "a.x"]


def test_plugins_install_inside_the_projects_namespace(tmp_path):
    """Outside the checkout, `harness.methods` and friends import; top-level `methods`,
    `benchmarks`, `reports` and `cli` do not exist (they would clash with other research code)."""
    code = ("import importlib.util as u, harness.methods.npo, harness.benchmarks.tofu, harness.reports.leaderboard, "
            "harness.cli\nprint([n for n in ('methods', 'benchmarks', 'reports', 'cli') if u.find_spec(n)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_loader_picks_the_class_by_model_kind(tiny_model_dir, monkeypatch):
    import builtins

    import pytest

    from harness.errors import ModelLoadError
    from harness.zoo.load import AUTO_CLASSES, load_hf_model
    from harness.zoo.specs import ModelSpec

    assert AUTO_CLASSES == {"causal-lm": "AutoModelForCausalLM", "image-text-to-text": "AutoModelForImageTextToText"}
    text = load_hf_model(ModelSpec(name="toy", path=str(tiny_model_dir), dtype="float32"), device="cpu")
    assert type(text.model).__name__ == "LlamaForCausalLM" and text.processor is None
    real_import = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    spec = ModelSpec(name="scenes", kind="text-to-image", path=str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match=r"text-to-image pipeline: pip install 'llm-safety-harness\[diffusion\]'"):
        load_hf_model(spec, device="cpu")
