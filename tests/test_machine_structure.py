"""The model's structure, as docs/design.md draws it, checked on the code.

* imports go strictly downward through the layers, and no path (firmware,
  kvm, userspace) imports another path or the decisions;
* nothing in the model selects an instruction by its mnemonic: code selects
  by the table's columns;
* the table's check columns drive the preamble, on every path and policy;
* one PCILG goes from Machine.execute to the device through at most the
  documented number of calls, in the files design.md names.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from firmware_model.arch import Pgm
from firmware_model.insns import TABLE
from firmware_model.policy import POLICY_NAMES

import test_props_world as w
from test_machine import booted

MODEL = Path(__file__).resolve().parent.parent / "firmware_model"

# Layer of each top-level module of the model: a module imports only from lower layers.
LAYERS = {
    "arch": 0, "config": 0,
    "insns": 1, "guest": 1, "device": 1, "fib": 1, "outcome": 1, "irq": 1,
    "dma": 2, "host": 2, "clp": 2, "devices": 2,
    "function": 3,
    "semantics": 4,
    "firmware": 5, "kvm": 5, "userspace": 5, "policy": 5,
    "stats": 6, "passthrough": 6, "irq_routes": 6,
    "machine": 7,
}
PATHS = ("firmware", "kvm", "userspace")


def model_imports(name: str) -> set[str]:
    """The model modules ``name`` imports (top level or inside functions)."""
    tree = ast.parse((MODEL / f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                parts = [mod] if mod else [a.name for a in node.names]
            elif node.level == 0 and mod.startswith("firmware_model."):
                parts = [mod.split(".")[1]]
            else:
                continue
            out.update(p.split(".")[0] for p in parts)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names
                       if a.name.startswith("firmware_model."))
    return out


def test_every_model_module_has_a_layer():
    modules = {p.stem for p in MODEL.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS) - {"devices"}


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"devices"}))
def test_imports_go_strictly_downward(name):
    for imported in model_imports(name):
        assert LAYERS[imported] < LAYERS[name], f"{name} imports {imported}"


def test_no_path_imports_a_sibling_path_or_the_decisions():
    for p in PATHS:
        assert not model_imports(p) & (set(PATHS) | {"policy", "machine", "stats"}), p


def test_the_layer_check_sees_a_sideways_import(tmp_path, monkeypatch):
    # the parser must see both import spellings, or the tests above prove nothing
    (tmp_path / "kvm.py").write_text("from .firmware import ROWS\nimport firmware_model.userspace\n")
    monkeypatch.setattr(sys.modules[__name__], "MODEL", tmp_path)
    assert model_imports("kvm") == {"firmware", "userspace"}


def _mnemonic_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and n.body and isinstance(n.body[0], ast.Expr)}
    names = {i.mnemonic for i in TABLE}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and n.value in names and id(n) not in docstrings]


def test_model_selects_by_table_columns_not_by_mnemonic():
    found = {p.name: _mnemonic_strings(p) for p in MODEL.glob("*.py")}
    assert {k: v for k, v in found.items() if v} == {}


# --- the table drives the preamble ------------------------------------------------

def _instruction(row, r2: int):
    """Row ``row``; the caller puts the first function's handle in R1..R3."""
    return w.decoded(row.mnemonic, r1=1, r2=r2, r3=3)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_privileged_rows_in_problem_state_get_the_privileged_operation_exception(policy):
    m, g = booted(policy)
    fh = w.handle("enabled", 0)
    for row in TABLE:
        for r in (1, 2, 3):
            g.set_gpr(r, fh << 32)
        g.problem_state = True
        pgm = m.execute(_instruction(row, r2=3), g).completion.pgm
        g.problem_state = False
        if row.privileged:
            # before the odd-pair check (R2 = 3 is odd): the table's order
            assert pgm == Pgm.PRIVILEGED, row.mnemonic
        else:
            assert pgm != Pgm.PRIVILEGED, row.mnemonic


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_even_r2_rows_with_an_odd_r2_get_the_specification_exception(policy):
    m, g = booted(policy)
    fh = w.handle("enabled", 0)
    rows = [row for row in TABLE if row.even_r2]
    assert rows
    for row in rows:
        g.set_gpr(1, fh << 32)
        g.set_gpr(3, fh << 32)
        assert m.execute(_instruction(row, r2=3), g).completion.pgm == Pgm.SPECIFICATION, row.mnemonic


def test_the_preamble_runs_before_the_chosen_path():
    # a PCILG the firmware serves: the exception is the preamble's, and it is
    # counted where the decision sent the instruction, once
    m, g = booted("linux-6.0")
    m.reset_stats()
    d = w.load_store(g, "PCILG", w.handle("enabled", 0), 15, 4, 0, 0)
    g.problem_state = True
    out = m.execute(d, g)
    assert out.completion.pgm == Pgm.PRIVILEGED and out.decision.route.value == "firmware"
    s = m.stats()
    assert s["active"]["firmware"] == {"PCILG": 1} and s["vm"]["instructions"] == 1


def test_the_memoised_preamble_follows_the_problem_state():
    # one memo (same function, row, encoding) served in both states, alternately
    m, g = booted("linux-6.0")
    for problem in (False, True, False, True):
        d = w.load_store(g, "PCILG", w.handle("enabled", 0), 15, 4, 0, 0)
        g.problem_state = problem
        out = m.execute(d, g)
        assert (out.completion.pgm == Pgm.PRIVILEGED) is problem
        assert out.completion.cc == (None if problem else 0)
    g.problem_state = False
    s = m.stats()
    assert s["active"]["firmware"] == {"PCILG": 4}


# --- the path of one PCILG --------------------------------------------------------

# Machine.execute -> semantics.load (the firmware's body) -> the resolved access op:
# the device's own (no Python frame at all) or, for a device without ops, the
# generic one (semantics._config_load) -> the device
PCILG_DEPTH = 3


def _profile_execute(m, d, g):
    """(Python frames of one execute as call stacks, what execute itself calls, the Outcome)."""
    stack: list = []
    frames: list = []
    direct: list = []       # what Machine.execute itself calls

    def profile(frame, event, arg):
        if event == "call":
            if len(stack) == 1 and Path(frame.f_code.co_filename).name != "guest.py":
                direct.append(frame.f_code.co_name)
            stack.append(frame.f_code)
            frames.append(list(stack))
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        out = m.execute(d, g)
    finally:
        sys.setprofile(None)
    return frames, direct, out


def _where(code) -> tuple[str, str]:
    return Path(code.co_filename).name, code.co_name


def test_one_pcilg_reaches_the_device_within_the_documented_depth():
    m, g = booted("linux-6.0")          # memdev: config_read and no access ops
    d = w.load_store(g, "PCILG", w.handle("enabled", 0), 15, 4, 0, 0)
    m.execute(d, g)                                 # the decisions memoised, the access resolved
    frames, direct, out = _profile_execute(m, d, g)
    assert out.completion.cc == 0 and out.decision.route.value == "firmware"
    chain = next(f for f in frames if f[-1].co_name in ("config_read", "bar_read"))
    assert _where(chain[0]) == ("machine.py", "execute")
    assert len(chain) - 1 <= PCILG_DEPTH, [c.co_name for c in chain]
    assert [_where(c) for c in chain[1:-1]] == [("semantics.py", "load"),
                                                ("semantics.py", "_config_load")]
    # besides the guest's registers, the dispatcher calls only the path's body: the
    # decisions and the preamble's answer are memoised, the table lookup is its own
    assert direct == ["load"]


def test_a_device_with_access_ops_is_read_without_a_python_frame():
    g = w.new_guest()
    vm = w.machine("linux-6.0", config=w.CONFIG_VIRTIO)
    for a in [("clp", "list", 0), ("clp", "enable", 0)]:
        w.perform(vm, g, a)
    dev = vm.bus.functions[0].device
    for pcias, offset in ((15, 0), (1, 8)):        # config space; BAR 1, an MSI-X table word
        d = w.load_store(g, "PCILG", w.handle("enabled", 0), pcias, 4, offset, 0)
        vm.execute(d, g)
        frames, direct, out = _profile_execute(vm, d, g)
        assert out.completion.cc == 0 and out.decision.route.value == "firmware"
        model = [[_where(c) for c in f] for f in frames if _where(f[-1])[0] != "guest.py"]
        assert model == [[("machine.py", "execute")],
                         [("machine.py", "execute"), ("semantics.py", "load")]]
        # the op reads the device's state at each call, never a copy
        want = dev.config_read(0, 4) if pcias == 15 else dev.bar_read(1, 8, 4)
        assert g.gpr(1) == (int.from_bytes(want.to_bytes(4, "little"), "big") if pcias == 15
                            else want)
    dev.cfg.data[0] ^= 0xFF
    assert vm.execute(w.load_store(g, "PCILG", w.handle("enabled", 0), 15, 4, 0, 0),
                      g).completion.cc == 0
    assert g.gpr(1) >> 24 == dev.cfg.data[0]
