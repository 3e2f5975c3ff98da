"""Command lines once reported as runaway guests, compared with QEMU 7.2.

* devdump with virtio-rng-pci then virtio-net-pci and no zpci devices (QEMU
  creates them): not a hang.  Every case the device does not complete waits
  out wait_used's 4e7 polls, so the guest needs between 2e9 and 3e9
  instructions (measured), more than the bare-guest default of --max-insns;
  with a budget that covers it the console is QEMU's byte for byte
  (tests/data/boot_qemu_devdump_rng_net.txt, QEMU's stdout for it).
* probe with -m 1: RESULT_LOG (0x100000) lies beyond RAM, every log store
  takes an addressing exception and after PGM_LIMIT of them pgm_fatal ran;
  its flush stored to the log again and re-entered pgm_fatal, printing the
  pending line forever under QEMU and zpci-emu alike.  pgm_fatal now closes
  the log first: one FATAL line, then the guest quiesces under both.
* a guest that only prints (benchmarks/guests/chatty.c): the console budget
  (--max-console) ends it, long before the instruction budget would.
"""
import pathlib

from _helpers import emulate
from conftest import needs_cross, needs_qemu
import _normalise as normalise
from emulator.capture.qemu import GUESTS_DIR, run_qemu

DATA = pathlib.Path(__file__).parent / "data"
RNG_THEN_NET = ["-device", "virtio-rng-pci,id=r0", "-device", "virtio-net-pci"]
DEVDUMP_BUDGET = "1e10"


def _boot(elf, extra, memory="256M", max_insns=None):
    result, out = emulate(GUESTS_DIR / "build" / elf, extra, max_insns, memory)
    return result, out.decode("ascii", errors="replace")


def _golden():
    return (DATA / "boot_qemu_devdump_rng_net.txt").read_text()


def test_devdump_rng_then_net_matches_qemu_transcript():
    result, got = _boot("devdump.elf", RNG_THEN_NET, max_insns=DEVDUMP_BUDGET)
    want, _ = normalise.normalise_qemu(_golden())
    assert result.exit_code == 0, result.message
    assert got == want, "\n".join(normalise.diff_lines(want, got))
    # both functions, created by the machine, went through every case
    assert "F 0 vendor=1af4 device=1005" in got and "F 1 vendor=1af4 device=1000" in got


def test_golden_transcript_is_a_complete_run():
    lines = _golden().splitlines()
    assert lines[0] == "DEVDUMP start" and lines[-1].startswith("DEVDUMP done")
    assert "FAIL" not in _golden() and "FATAL" not in _golden()


@needs_qemu
def test_golden_transcript_is_what_qemu_prints_now():
    q = run_qemu(GUESTS_DIR / "build" / "devdump.elf", RNG_THEN_NET, timeout=120)
    assert q.exit_code == 0 and not q.timed_out, q.stderr.decode(errors="replace")[-500:]
    assert q.stdout.decode() == _golden()


@needs_qemu
def test_probe_in_one_mib_ends_in_one_fatal_line_like_qemu():
    extra = ["-device", "virtio-rng-pci"]
    q = run_qemu(GUESTS_DIR / "build" / "probe.elf", extra, memory="1", timeout=60)
    assert q.exit_code == 0 and not q.timed_out, q.stderr.decode(errors="replace")[-500:]
    want, _ = normalise.normalise_qemu(q.stdout.decode("ascii", errors="replace"))
    result, got = _boot("probe.elf", extra, memory="1")
    assert result.exit_code == 0, result.message
    assert got == want, "\n".join(normalise.diff_lines(want, got))
    fatal = [line for line in got.splitlines() if line.startswith("FATAL")]
    # the addressing exception (0x05) of the log store, reported once
    assert len(fatal) == 1 and "pgm=00040005" in fatal[0], got[-400:]


def test_probe_in_one_mib_stops_itself():
    """Without QEMU: the run ends by the guest's own quiesce, well inside the budget."""
    result, got = _boot("probe.elf", ["-device", "virtio-rng-pci"], memory="1",
                        max_insns="1e8")
    assert result.exit_code == 0, result.message
    assert got.count("FATAL program-check loop") == 1
    assert len(got.splitlines()) < 100


@needs_cross
def test_a_guest_that_only_prints_is_stopped_by_the_console_budget(tmp_path):
    from _helpers import guest_build
    elf = guest_build.chatty(tmp_path)
    result, out = emulate(elf, ["--max-console", "4096"])
    assert result.exit_code == 1 and "--max-console" in result.message
    assert "\n" not in result.message
    # everything up to the budget reached the console, nothing after it
    line = b"chatty: a line that never ends the run\n"
    assert len(out) == 4096 and out == (line * (4096 // len(line) + 1))[:4096]


def test_the_console_budget_covers_a_linux_boot_and_is_an_option():
    from emulator import qemu_args
    from emulator.cpu.machine import DEFAULT_MAX_CONSOLE
    assert DEFAULT_MAX_CONSOLE >= 1 << 20
    assert qemu_args.parse(["-kernel", "x.elf", "--max-console", "1e6"]).max_console == 10 ** 6
    assert "--max-console" in qemu_args.usage()
