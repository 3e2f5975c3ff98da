"""The tests bite: each deliberate fault in a copy of the model fails them.

A mutant names a function of the model by module and qualified name, a
predicate that picks AST nodes inside that function, and a change to each
node (a replacement, or None to delete a statement).  For every mutant:
copy firmware_model/ and tests/ to a temporary directory, parse the module,
apply the change inside the function (asserting the predicate matched the
expected number of nodes), write the module back from the AST, run the
named tests in a subprocess whose cwd (so sys.path[0]) is that copy, and
expect failure.  The unmutated copy must pass the same tests, and the
subprocess must really import the copy.  Nothing here depends on the
source's text or layout: a refactoring that keeps the function and the
construct keeps the mutant.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mentions(node: ast.AST, *names: str) -> bool:
    """Whether ``node`` uses every one of ``names`` as a name or an attribute."""
    seen = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    seen |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return set(names) <= seen


def if_on(*names: str) -> Callable[[ast.AST], bool]:
    """An ``if`` statement whose test uses ``names``."""
    return lambda n: isinstance(n, ast.If) and mentions(n.test, *names)


def call_of(attr: str) -> Callable[[ast.AST], bool]:
    """A call of a method or function called ``attr``."""
    return lambda n: isinstance(n, ast.Call) and (
        getattr(n.func, "attr", None) == attr or getattr(n.func, "id", None) == attr)


def statement_calling(attr: str) -> Callable[[ast.AST], bool]:
    """An expression statement that is a call of ``attr``."""
    return lambda n: isinstance(n, ast.Expr) and call_of(attr)(n.value)


def delete(_node):
    return None


def expression(src: str) -> Callable[[ast.AST], ast.AST]:
    return lambda _node: ast.parse(src, mode="eval").body


def false_test(node: ast.If) -> ast.If:
    node.test = ast.Constant(False)
    return node


def attribute(name: str) -> Callable[[ast.AST], ast.AST]:
    def change(node: ast.Attribute) -> ast.Attribute:
        node.attr = name
        return node
    return change


@dataclass(frozen=True)
class Mutant:
    module: str                             # file under firmware_model/
    function: str                           # qualified name: "Host.zpci_op", "ls_reason"
    find: Callable[[ast.AST], bool]         # the nodes to change inside the function
    change: Callable[[ast.AST], ast.AST | None]
    tests: tuple[str, ...]                  # tests/ paths, at least one must fail
    count: int = 1                          # nodes ``find`` must match


TRANSPARENCY = "test_props_transparency.py::test_every_policy_is_transparent"
DECISION_TABLE = "test_policy_decisions.py::test_decide_matches_table_exhaustively"

MUTANTS = {
    "interpret-despite-shm": Mutant(
        "policy.py", "ls_reason", if_on("fh", "FH_SHM"), delete, (DECISION_TABLE,)),
    "zpci-op-ignores-ownership": Mutant(
        "host.py", "Host.zpci_op", call_of("_lookup"), expression("self.function_by_fh(fh)"),
        ("test_props_ownership.py",)),
    "ioat-kept-after-vfio-close": Mutant(
        "host.py", "Host._close", statement_calling("_drop_ioat"), delete,
        ("test_props_ownership.py",)),
    "kernel-rpcit-without-ioat": Mutant(
        "policy.py", "rpcit_kvm_reason", if_on("fn", "ioat", "IoatPath"), delete,
        (DECISION_TABLE,), count=2),
    # RPCIT past the lookup is one body for every path: its range check is held
    # to QEMU's answers
    "rpcit-skips-pba-pal": Mutant(
        "semantics.py", "translate", if_on("end", "pba", "pal"), false_test,
        ("test_semantics_dma.py",)),
    # the kernel's own decline: a function under a vfio budget is userspace's
    "kernel-rpcit-ignores-dma-budget": Mutant(
        "kvm.py", "KvmZpci.rpcit", lambda n: isinstance(n, ast.Compare)
        and mentions(n, "fn", "dma_avail"), expression("False"),
        ("test_machine.py::test_kernel_declines_a_dma_budget_it_does_not_keep",)),
    # the firmware's own load path is held to QEMU's answers too
    "load-in-error-state": Mutant(
        "semantics.py", "load", if_on("state", "_ERROR", "_PERM_ERROR"), delete,
        (TRANSPARENCY, "test_semantics_loadstore.py")),
    # the table's privileged column, applied once for every path
    "preamble-skips-privileged": Mutant(
        "semantics.py", "preamble", if_on("CHECK_PRIVILEGED"), delete,
        ("test_machine_structure.py",)),
    # a declined instruction is counted as what served it
    "declined-counted-as-served": Mutant(
        "machine.py", "Machine._declined", lambda n: isinstance(n, ast.Attribute)
        and n.attr == "declined_cell", attribute("cell"), ("test_machine_memo.py",)),
}


# Appended to the copied conftest: ci without shrinking, since a mutant only
# needs to be found, not minimised.
PROFILE = """
from hypothesis import Phase
settings.register_profile("mutant", parent=settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("mutant")
"""


def make_copy(tmp: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "firmware_model", tmp / "firmware_model", ignore=skip)
    shutil.copytree(ROOT / "tests", tmp / "tests", ignore=skip)
    with open(tmp / "tests" / "conftest.py", "a") as f:
        f.write(PROFILE)
    return tmp


def find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        assert node is not None, f"no {qualname} ({part})"
        scope = node.body
    assert isinstance(node, ast.FunctionDef), qualname
    return node


class _Apply(ast.NodeTransformer):
    def __init__(self, mutant: Mutant):
        self.mutant = mutant
        self.hits = 0

    def visit(self, node):
        if self.mutant.find(node):
            self.hits += 1
            return self.mutant.change(node)
        return self.generic_visit(node)


def mutated_source(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    fn = find_function(tree, mutant.function)
    apply = _Apply(mutant)
    fn.body = [s for s in (apply.visit(s) for s in fn.body) if s is not None]
    assert apply.hits == mutant.count, (
        f"{mutant.module}:{mutant.function}: target matched {apply.hits} times, not {mutant.count}")
    for node in ast.walk(fn):
        if isinstance(getattr(node, "body", None), list) and not node.body:
            node.body = [ast.Pass()]        # a deleted statement emptied the block
    return ast.unparse(ast.fix_missing_locations(tree))


def mutate(tmp: Path, mutant: Mutant) -> None:
    path = tmp / "firmware_model" / mutant.module
    path.write_text(mutated_source(path.read_text(), mutant))


def run_tests(tmp: Path, tests) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="ci")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
         *[f"tests/{t}" for t in tests]],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_target_exists_and_changes_the_function(name):
    m = MUTANTS[name]
    source = (ROOT / "firmware_model" / m.module).read_text()
    after = mutated_source(source, m)
    compile(after, m.module, "exec")
    before = ast.unparse(find_function(ast.parse(source), m.function))
    assert ast.unparse(find_function(ast.parse(after), m.function)) != before


def test_an_unchanged_round_trip_keeps_the_module():
    # ast.unparse must give back an equivalent module, or the mutants test a rewrite
    source = (ROOT / "firmware_model" / "semantics.py").read_text()
    keep = Mutant("semantics.py", "preamble", if_on("CHECK_PRIVILEGED"), lambda n: n, ())
    assert ast.dump(ast.parse(mutated_source(source, keep))) == ast.dump(ast.parse(source))


def test_copy_is_what_the_subprocess_imports(tmp_path):
    make_copy(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import firmware_model; print(firmware_model.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().is_relative_to(tmp_path.resolve())


def test_unmutated_copy_passes(tmp_path):
    make_copy(tmp_path)
    tests = sorted({t for m in MUTANTS.values() for t in m.tests})
    r = run_tests(tmp_path, tests)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught(tmp_path, name):
    m = MUTANTS[name]
    make_copy(tmp_path)
    mutate(tmp_path, m)
    r = run_tests(tmp_path, m.tests)
    assert r.returncode == 1, f"{name} survived:\n" + r.stdout[-3000:] + r.stderr[-2000:]
    assert "failed" in r.stdout
