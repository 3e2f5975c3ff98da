"""The CPU side is split by job with no import cycle (read from the sources with ast)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("emulator", "firmware_model")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its body (function-local imports too)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[:len(base) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import module" imports a module; "from module import name" does not
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for target in targets:
            # the innermost project module the name reaches
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not target.startswith(name + ".") \
                    and not name.startswith(target + "."):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_and_from_imports_are_resolved(tmp_path):
    known = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    f = tmp_path / "c.py"
    f.write_text("from .. import a\nfrom ..b import thing\nimport pkg.sub\n"
                 "def f():\n    from pkg.a import x\n")
    assert _imports("pkg.sub.c", f, known) == {"pkg.a", "pkg.b"}


def test_no_import_cycle_in_the_emulator_and_model():
    graph = _graph()
    assert "emulator.cpu.machine" in graph and "emulator.cpu.privileged" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


CPU_JOBS = {
    "emulator.cpu.native": "binding libunicorn and the cffi trap registry",
    "emulator.cpu.guest": "the Guest adapter the model sees",
    "emulator.cpu.interrupts": "PSW loading, program/external/I/O interruptions, waits",
    "emulator.cpu.privileged": "privileged instructions",
    "emulator.cpu.machine": "UcMachine and the run loop",
}


@pytest.mark.parametrize("module", sorted(CPU_JOBS))
def test_cpu_jobs_do_not_reach_up_to_the_run_loop(module):
    """Only the run loop (and the commands above it) may import the machine."""
    graph = _graph()
    if module != "emulator.cpu.machine":
        assert "emulator.cpu.machine" not in graph[module]
    assert "emulator.cpu.boot" not in graph[module]


def test_public_names_stay_importable():
    from emulator.cpu.machine import DEFAULT_MAX_INSNS, Halt, UcMachine   # noqa: F401
    from emulator.cpu.records import Halt as RecordHalt
    assert Halt is RecordHalt
