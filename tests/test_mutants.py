"""The property tests bite: each deliberate one-line fault in a copy of the model fails them.

For every mutant: copy firmware_model/ and the relevant tests to a temporary
directory, replace one exact line (asserting it exists exactly once), run
the relevant tests in a subprocess whose cwd (so sys.path[0]) is that copy,
and expect failure.  The unmutated copy must pass the same tests, and the
subprocess must really import the copy.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["conftest.py", "test_props_world.py", "test_policy_decisions.py",
         "test_props_ownership.py", "test_props_transparency.py", "test_props_lifecycle.py"]

# name: (file, exact text, replacement, tests that must fail)
MUTANTS = {
    "interpret-despite-shm": (
        "policy.py",
        "    if fh & FH_SHM:\n        return Reason.SHM\n    if not lsi:\n",
        "    if not lsi:\n",
        ["test_policy_decisions.py::test_decide_matches_table_exhaustively"]),
    "zpci-op-ignores-ownership": (
        "host.py",
        "        hf = self._lookup(vm, fh)\n",
        "        hf = self.function_by_fh(fh)\n",
        ["test_props_ownership.py"]),
    "rpcit-skips-pba-pal": (
        "kvm.py",
        "        elif end < fn.pba or start > fn.pal:\n",
        "        elif False:\n",
        ["test_props_transparency.py::test_every_policy_is_transparent"]),
    "ioat-kept-after-vfio-close": (
        "host.py",
        "        self._drop_ioat(hf)\n        vm.stats[\"vfio_close\"] += 1\n",
        "        vm.stats[\"vfio_close\"] += 1\n",
        ["test_props_ownership.py"]),
    "kernel-rpcit-without-ioat": (
        "policy.py",
        "        return Reason.NOT_OWNER\n    if fn.ioat is IoatPath.NONE:\n        return Reason.NO_IOAT\n"
        "    if fn.ioat is not IoatPath.KVM:\n        return Reason.IOAT_USERSPACE\n",
        "        return Reason.NOT_OWNER\n",
        ["test_policy_decisions.py::test_decide_matches_table_exhaustively"]),
    # not in the brief's list: the firmware's own load path is held to QEMU's answers too
    "firmware-loads-in-error-state": (
        "firmware.py",
        "            guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.BLOCKED << 24))\n"
        "            return _CC1\n        value = pci_load(",
        "            pass\n        value = pci_load(",
        ["test_props_transparency.py::test_every_policy_is_transparent"]),
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
    shutil.copytree(ROOT / "firmware_model", tmp / "firmware_model",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp / "tests").mkdir()
    for name in TESTS:
        shutil.copy(ROOT / "tests" / name, tmp / "tests" / name)
    with open(tmp / "tests" / "conftest.py", "a") as f:
        f.write(PROFILE)
    return tmp


def mutate(tmp: Path, filename: str, old: str, new: str) -> None:
    path = tmp / "firmware_model" / filename
    text = path.read_text()
    assert text.count(old) == 1, f"mutation target not found exactly once in {filename}"
    path.write_text(text.replace(old, new))


def run_tests(tmp: Path, tests: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="ci")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
         *[f"tests/{t}" for t in tests]],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def test_copy_is_what_the_subprocess_imports(tmp_path):
    make_copy(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import firmware_model; print(firmware_model.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().is_relative_to(tmp_path.resolve())


def test_unmutated_copy_passes(tmp_path):
    make_copy(tmp_path)
    tests = sorted({t for m in MUTANTS.values() for t in m[3]})
    r = run_tests(tmp_path, tests)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught(tmp_path, name):
    filename, old, new, tests = MUTANTS[name]
    make_copy(tmp_path)
    mutate(tmp_path, filename, old, new)
    r = run_tests(tmp_path, tests)
    assert r.returncode == 1, f"{name} survived:\n" + r.stdout[-3000:] + r.stderr[-2000:]
    assert "failed" in r.stdout
