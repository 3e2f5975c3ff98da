"""The privileged instructions of zpci-emu boot against QEMU 7.2, instruction by instruction.

benchmarks/guests/privprobe.c prints what a guest sees of STIDP, STFL,
STFLE, STAP, STPX, the control registers, EPSW, STOSM/STNSM, SIGP, SVC, an
operation exception, LPSWE to odd addresses, SCLP write-event-mask / read-SCP-info, a SERVC
specification exception and the service-signal external interruption.  Both runs must print the same bytes.
The small guests at the end (no cross compiler needed) check the odd and invalid
PSWs that branches, interruptions and STOSM produce; tests/test_boot_psw.py
compares those cases and LPSW with QEMU.
"""
import io

import pytest

from _helpers import emulate, guest_build
from conftest import needs_cross, needs_qemu
from emulator.cpu import boot
from emulator import qemu_args
from emulator.errors import UserError
from emulator.capture.qemu import base_args, run_qemu


@pytest.fixture(scope="module")
def privprobe(tmp_path_factory):
    return guest_build.privprobe(tmp_path_factory.mktemp("privprobe"))


@needs_cross
@needs_qemu
def test_privileged_instructions_match_qemu(privprobe):
    q = run_qemu(privprobe, [], timeout=60)
    assert q.exit_code == 0 and not q.timed_out
    result, out = emulate(privprobe)
    assert result.exit_code == 0, result.message
    assert out == normalise_odd_psw(q.stdout)
    assert b"PRIVPROBE done" in out
    assert b"EXT_CODE 2401\n" in out and b"EXT_COUNT 01\n" in out   # the service signal
    # the probe reached each emulated instruction at least once
    assert {"STIDP", "STFL", "STFLE", "EPSW", "STOSM", "STNSM", "SIGP", "STCTG", "SERVC",
            "LPSWE"} <= set(result.stats["privileged"])


# LPSWE to an odd instruction address (docs/deviations.md, "LPSWE/LPSW to an
# odd instruction address"): QEMU 7.2 runs the zeros at the odd address, an
# operation exception with ILC 2; the architecture (and QEMU 8.0+) gives a
# specification exception with ILC 2 before anything runs there.  The old
# PSW is the loaded one advanced by 2 either way.
ODD_PSW_LINES = (
    b"LPSWE_ODD pgm=%s old_mask=0000000180000000 old_addr_delta=0003\n",
    b"LPSWE_ODD_CC2 pgm=%s old_mask=0000200180000000 old_addr_delta=0005\n",
    b"LPSWE_ODD_31 pgm=%s old_mask=0000000080000000 old_addr_delta=0007\n",
)


def normalise_odd_psw(qemu_out: bytes) -> bytes:
    """QEMU 7.2's transcript with its LPSWE_ODD lines as the architecture has them."""
    for line in ODD_PSW_LINES:
        assert qemu_out.count(line % b"00020001") == 1, line
        qemu_out = qemu_out.replace(line % b"00020001", line % b"00020006")
    return qemu_out


@needs_cross
def test_privprobe_program_interruptions_counted(privprobe):
    result, out = emulate(privprobe)
    # two operation exceptions (the 4 zero bytes), three specification
    # exceptions for the odd PSW addresses and the SERVC one
    assert result.stats["program_interruptions"] == {"0x01": 2, "0x06": 4}
    assert b"PGM_WORD 00020001\n" in out and b"SERVC_LOW pgm=00040006\n" in out
    for line in ODD_PSW_LINES:
        assert line % b"00020006" in out


# --- LPSWE/LPSW to an odd address, with the small guests of test_boot.py ------------
def _odd_psw_guest(load, pgm_new_addr):
    """A guest that loads the PSW at 0x1e0 (LPSWE, or LPSW of its first 8 bytes).

    The program-new PSW goes to ``pgm_new_addr`` (a quiescing handler at
    label "handler" when None).  Returns (machine, labels).
    """
    from test_boot import BASE, Asm, machine, quiesce_tail
    from emulator.cpu import elf_load, lowcore as lc

    a = Asm()
    a.raw(bytes([0xB2, 0xB2, 0x01, 0xE0]) if load == "LPSWE" else bytes([0x82, 0, 0x01, 0xE0]))
    a.label("target")
    a.raw(bytes(8))                                   # operation exceptions if run
    a.label("handler")
    quiesce_tail(a)
    code = a.build()
    labels = a.labels
    odd = labels["target"] + 1
    if load == "LPSWE":
        loaded = lc.psw_bytes(0x0000200180000000, odd)
    else:
        loaded = (0x0008200080000000 | odd).to_bytes(8, "big") + bytes(8)
    handler = labels["handler"] if pgm_new_addr is None else pgm_new_addr
    low = lc.psw_bytes(lc.IPL_PSW_MASK, handler) + loaded
    # a low limit so a regression stops the run instead of hanging the suite
    m, _ = machine(lambda d, g: None, max_insns=100_000)
    m.load(elf_load.Image(BASE, (elf_load.Segment(BASE, code, len(code), 1),
                                 elf_load.Segment(lc.PROGRAM_NEW_PSW, low, len(low), 0))))
    return m, labels


@pytest.mark.parametrize("load, old_mask", [("LPSWE", 0x0000200180000000),
                                            ("LPSW", 0x0000200080000000)])
def test_odd_psw_address_is_a_specification_exception(load, old_mask):
    from emulator.cpu import lowcore as lc
    m, labels = _odd_psw_guest(load, None)
    halt = m.run(labels["target"] - 4)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.PGM_ILEN, 4) == bytes.fromhex("00020006")
    assert m.read(lc.PROGRAM_OLD_PSW, 16) == lc.psw_bytes(old_mask, labels["target"] + 3)
    # nothing ran at the odd address: no operation exception
    assert m.stats.program_interruptions == {lc.PGM_SPECIFICATION: 1}


def test_odd_program_new_psw_stops_instead_of_looping():
    from emulator.cpu import lowcore as lc
    m, labels = _odd_psw_guest("LPSWE", 0x30001)
    halt = m.run(labels["target"] - 4)
    assert halt.exit_code == 1
    assert "program-new PSW" in halt.message and "odd instruction address" in halt.message
    assert m.stats.program_interruptions == {lc.PGM_SPECIFICATION: 1}


@pytest.fixture(scope="module")
def listprobe(tmp_path_factory):
    return guest_build.listprobe(tmp_path_factory.mktemp("listprobe"))


LIST_CONFIGS = {
    # automatic zpci devices (fid/uid chosen by QEMU) between explicit ones
    "mixed": ["-device", "virtio-rng-pci,id=a", "-device", "zpci,uid=7,fid=3,target=b",
              "-device", "virtio-rng-pci,id=b", "-device", "virtio-net-pci,id=c",
              "-device", "zpci,fid=9,target=d", "-device", "virtio-rng-pci,id=d,disable-legacy=on"],
    # a zpci device is listed where it was plugged, before its PCI device came
    "zpci-first": ["-device", "zpci,uid=1,target=x", "-device", "virtio-rng-pci,id=a",
                   "-device", "virtio-rng-pci,id=x", "-device", "zpci,uid=3,fid=0x10,target=y",
                   "-device", "virtio-net-pci,id=y"],
    "none": [],
}


@needs_cross
@needs_qemu
@pytest.mark.parametrize("config", sorted(LIST_CONFIGS))
def test_clp_list_order_fids_uids_handles_match_qemu(listprobe, config):
    extra = LIST_CONFIGS[config]
    q = run_qemu(listprobe, extra, timeout=60)
    assert q.exit_code == 0 and not q.timed_out
    result, out = emulate(listprobe, extra)
    assert result.exit_code == 0, result.message
    assert out == q.stdout
    assert out.count(b"FN device=") == sum(1 for a in extra if a.startswith("virtio-"))


@needs_qemu
def test_uid_taken_by_an_automatic_function_is_refused_like_qemu(listprobe):
    extra = ["-device", "zpci,uid=1,target=x", "-device", "virtio-rng-pci,id=a",
             "-device", "virtio-rng-pci,id=x", "-device", "zpci,uid=2,target=y",
             "-device", "virtio-net-pci,id=y"]
    q = run_qemu(listprobe, extra, timeout=60)
    assert q.exit_code != 0 and b"zpci,uid=2,target=y: uid 2 already in use" in q.stderr
    with pytest.raises(UserError) as e:
        qemu_args.parse([*base_args(), "-kernel", str(listprobe), *extra])
    assert e.value.exit_code == 2
    assert str(e.value) == "-device zpci,uid=2,target=y: uid 2 already in use"


@needs_cross
@needs_qemu
@pytest.mark.parametrize("memory", [None, "64", "1G"])
def test_memory_size_as_qemu_reports_it(privprobe, memory):
    """READ SCP INFO's storage fields, with QEMU's default RAM when -m is absent."""
    import subprocess
    from emulator.capture.qemu import find_qemu
    args = [a for a in base_args() if a not in ("-m", "256M")]
    if memory:
        args += ["-m", memory]
    q = subprocess.run([find_qemu(), *args, "-kernel", str(privprobe)], capture_output=True,
                       timeout=60)
    assert q.returncode == 0
    out = io.BytesIO()
    result = boot.run(qemu_args.parse([*args, "-kernel", str(privprobe)]), out)
    assert result.exit_code == 0
    pick = [ln for ln in q.stdout.splitlines() if ln.startswith(b"RSCPI rn")]
    assert len(pick) == 2
    assert [ln for ln in out.getvalue().splitlines() if ln.startswith(b"RSCPI rn")] == pick


# --- odd and invalid PSWs reached otherwise than by LPSW/LPSWE (small guests) -------
# QEMU 7.2 runs whatever is at an odd address, or under an invalid PSW
# (tests/test_boot_psw.py compares it); the architecture recognises a
# specification exception first, and nothing there runs.
MVI_300 = bytes([0x92, 0xFF, 0x03, 0x00])        # mvi 0x300,0xff: shows it ran


def _lowcore_guest(body, psws, count=True):
    """Code at BASE: ``body(a)``, then label "handler" that quiesces; ``psws``
    maps a lowcore address to a (mask, address or label) PSW put there."""
    from test_boot import BASE, Asm, machine, quiesce_tail
    from emulator.cpu import elf_load, lowcore as lc
    a = Asm()
    body(a)
    a.align8()
    a.label("target")
    a.raw(b"\x00" + MVI_300 + bytes(3))
    a.label("handler")
    quiesce_tail(a)
    code = a.build()
    segs = [elf_load.Segment(BASE, code, len(code), 1)]
    for at, (mask, addr) in psws.items():
        addr = a.labels[addr[0]] + addr[1] if isinstance(addr, tuple) else addr
        segs.append(elf_load.Segment(at, lc.psw_bytes(mask, addr), 16, 0))
    m, _ = machine(lambda d, g: None, max_insns=100_000, count=count)
    m.load(elf_load.Image(BASE, tuple(segs)))
    return m, a.labels


def _branch_to_odd(a, insn):
    a.rel("larl", 1, "target")
    a.raw(bytes([0x41, 0x10, 0x10, 0x01]))          # la %r1,1(%r1)
    a.raw(insn)


PGM_TO_HANDLER = {0x1D0: (0x0000000180000000, ("handler", 0))}


@pytest.mark.parametrize("insn, count", [(bytes([0x07, 0xF1]), True),          # br %r1
                                         (bytes([0x0D, 0xE1]), True),          # basr %r14,%r1
                                         (bytes([0x47, 0xF0, 0x10, 0x00]), True),  # bc 15,0(%r1)
                                         (bytes([0x07, 0xF1]), False)])
def test_branch_to_odd_address_is_a_specification_exception(insn, count):
    from emulator.cpu import lowcore as lc
    m, labels = _lowcore_guest(lambda a: _branch_to_odd(a, insn), PGM_TO_HANDLER, count)
    halt = m.run(0x20000)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.PGM_ILEN, 4) == bytes.fromhex("00020006")
    assert m.read(lc.PROGRAM_OLD_PSW, 16) == lc.psw_bytes(lc.IPL_PSW_MASK, labels["target"] + 3)
    assert m.read(0x300, 1) == b"\x00"                       # the MVI did not run
    assert m.stats.program_interruptions == {lc.PGM_SPECIFICATION: 1}
    if insn[0] == 0x0D:                                      # BASR completed: link set
        from unicorn.s390x_const import UC_S390X_REG_R14
        assert m.uc.reg_read(UC_S390X_REG_R14) == 0x20000 + 12


def test_branch_to_address_1_is_a_specification_exception():
    """1 is the end address trap_run gives unicorn, so no block hook sees it."""
    from test_boot import lghi
    from emulator.cpu import lowcore as lc
    m, labels = _lowcore_guest(lambda a: a.raw(lghi(1, 1) + bytes([0x07, 0xF1])), PGM_TO_HANDLER)
    halt = m.run(0x20000)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.PGM_ILEN, 4) == bytes.fromhex("00020006")
    assert m.read(lc.PROGRAM_OLD_PSW, 16) == lc.psw_bytes(lc.IPL_PSW_MASK, 3)


@pytest.mark.parametrize("new_mask, new_addr, ilc_code, old", [
    # odd address: late exception, ILC 2, old PSW advanced by 2
    (0x0000000180000000, ("target", 1), "00020006", ("target", 3)),
    # invalid masks: early exception, ILC 0, old PSW = the invalid one
    (0x8000000180000000, ("handler", 0), "00000006", ("handler", 0)),
    (0x0008000180000000, ("handler", 0), "00000006", ("handler", 0)),
    (0x0000000100000000, ("handler", 0), "00000006", ("handler", 0)),
    (0x0000000080000000, 0x80000000, "00000006", 0x80000000),   # beyond 31 bits
])
def test_svc_new_psw_odd_or_invalid(new_mask, new_addr, ilc_code, old):
    from emulator.cpu import lowcore as lc
    psws = {**PGM_TO_HANDLER, 0x1C0: (new_mask, new_addr)}
    m, labels = _lowcore_guest(lambda a: a.raw(bytes([0x0A, 0x07])), psws)    # svc 7
    halt = m.run(0x20000)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.SVC_OLD_PSW, 16) == lc.psw_bytes(lc.IPL_PSW_MASK, 0x20002)
    assert m.read(lc.PGM_ILEN, 4) == bytes.fromhex(ilc_code)
    old_addr = labels[old[0]] + old[1] if isinstance(old, tuple) else old
    assert m.read(lc.PROGRAM_OLD_PSW, 16) == lc.psw_bytes(new_mask, old_addr)
    assert m.read(0x300, 1) == b"\x00"
    assert m.stats.program_interruptions == {lc.PGM_SPECIFICATION: 1}


@pytest.mark.parametrize("mask, addr, why", [
    (0x0000000180000000, ("target", 1), "odd"),
    (0x8000000180000000, ("handler", 0), "must be zero"),
    (0x0000000100000000, ("handler", 0), "bit 31"),
])
def test_invalid_program_new_psw_stops_with_one_line(mask, addr, why):
    """An operation exception whose program-new PSW is odd or invalid would
    interrupt again for ever (QEMU 7.2 spins, measured): one line, exit 1."""
    from emulator.cpu import lowcore as lc
    m, _ = _lowcore_guest(lambda a: a.raw(bytes(2)), {0x1D0: (mask, addr)})
    halt = m.run(0x20000)
    assert halt.exit_code == 1
    assert "program-new PSW" in halt.message and why in halt.message
    assert "\n" not in halt.message
    assert m.stats.program_interruptions == {lc.PGM_OPERATION: 1}
    assert m.stats.insns < 1000                              # stopped at once, not by the limit


def test_stosm_of_an_invalid_bit_is_an_early_specification_exception():
    """STOSM completes; the PSW it made invalid interrupts at once with ILC 2."""
    from test_boot import stosm
    from emulator.cpu import lowcore as lc
    m, _ = _lowcore_guest(lambda a: a.raw(stosm(0x300, 0x80) + bytes(2)), PGM_TO_HANDLER)
    halt = m.run(0x20000)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.PGM_ILEN, 4) == bytes.fromhex("00040006")
    assert m.read(lc.PROGRAM_OLD_PSW, 16) == lc.psw_bytes(lc.IPL_PSW_MASK | 1 << 63, 0x20004)
    assert m.read(0x300, 1) == b"\x00"                       # the old system mask was stored
    assert m.stats.program_interruptions == {lc.PGM_SPECIFICATION: 1}
