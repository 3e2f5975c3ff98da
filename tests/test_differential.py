"""Every guest of traces/guests/programs.json: qemu-system-s390x vs zpci-emu boot.

The console output must be identical once tests/_normalise.py has undone the
deviations docs/deviations.md documents (QEMU side only; nothing is skipped).
"""
import re
import sys

import pytest

from _helpers import emulate
from conftest import needs_qemu
import _normalise as normalise
from emulator.capture.qemu import GUESTS_DIR, programs, run_qemu


# read at collection: a missing or broken programs.json is an error, not zero tests
PROGRAMS = sorted(programs().items())


# --max-insns per guest: a runaway guest must stop, a slow one must finish.
# devdump waits for a used-ring update that never comes (wait_used: 4e7 polls)
# about twenty times over three functions: 4.7e9 instructions in all.
MAX_INSNS = {"devdump": "1e10"}
DEFAULT_MAX_INSNS = "4e9"


@needs_qemu
@pytest.mark.parametrize("name,extra", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_guest_output_matches_qemu(name, extra):
    elf = GUESTS_DIR / "build" / f"{name}.elf"
    q = run_qemu(elf, extra, timeout=120)
    assert not q.timed_out and q.exit_code == 0, q.stderr.decode(errors="replace")[-500:]
    result, out = emulate(elf, extra, MAX_INSNS.get(name, DEFAULT_MAX_INSNS))
    expected, counts = normalise.normalise_qemu(q.stdout.decode("ascii", errors="replace"))
    if name == "probe" and sys.byteorder == "little":
        # the probe reads PCISTB data back: the byte-order rule must really have applied
        assert sum(counts.values()) > 0, counts
    got = out.decode("ascii", errors="replace")
    if expected != got or result.exit_code != 0:
        diff = normalise.diff_lines(expected, got)
        pytest.fail(f"{name}: exit {result.exit_code} {result.message or ''}\n" + "\n".join(diff))


def test_every_listed_guest_is_built():
    """The comparison above runs once per listed guest: none may vanish unnoticed."""
    assert PROGRAMS
    for name, _ in PROGRAMS:
        assert (GUESTS_DIR / "build" / f"{name}.elf").is_file(), name


def test_normaliser_rewrites_only_documented_lines():
    qemu = ("R PCILG_BAR1_AFTER_STB cc=0 st=00 reg=8002000000010008 val=0706050403020100\n"
            "R PCILG_BAR1_L8 cc=0 st=00 reg=8002000000010008 val=0706050403020100\n"
            "R PCILG_BAR1_AFTER_STB PGM=00040015 st=00 reg=0 val=0706050403020100\n")
    text, counts = normalise.normalise_qemu(qemu)
    lines = text.split("\n")
    assert lines[0].endswith("val=0001020304050607")
    assert lines[1] == qemu.split("\n")[1] and lines[2] == qemu.split("\n")[2]
    assert sum(counts.values()) == 1 and len(lines) == len(qemu.split("\n"))
    for rule in normalise.RULES:
        assert isinstance(rule.pattern, re.Pattern) and rule.name
