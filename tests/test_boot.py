"""zpci-emu boot: the unicorn trap path, lowcore delivery, privileged emulation, the CLI.

The small guests here are assembled by a few encoders below, so these tests
need no cross toolchain; the ones against QEMU live in test_boot_priv.py and
test_differential.py.
"""
import json
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from _helpers import run_cli
from emulator.cpu import elf_load, lowcore as lc
from emulator.errors import UserError
from emulator.cpu.machine import UcMachine
from firmware_model.insns import BY_MNEMONIC, encode
from firmware_model.outcome import Completion, Decision, Outcome, Route

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "traces" / "guests" / "build" / "probe.elf"
BASE = 0x20000
MEM = 4 << 20
QUIESCE = (0x0002000180000000, 0xFFF)


# --- a tiny assembler (two passes: labels, then bytes) -------------------------------
def _ri(op2, r, i):
    return bytes([0xA7, (r << 4) | op2]) + (i & 0xFFFF).to_bytes(2, "big")


def _rre(op, r1, r2):
    return op.to_bytes(2, "big") + bytes([0, (r1 << 4) | r2])


def _rxy(op, r1, d, b):
    return bytes([0xE3, r1 << 4, (b << 4) | ((d >> 8) & 0xF), d & 0xFF, (d >> 12) & 0xFF, op])


class Asm:
    def __init__(self, base=BASE):
        self.base, self.items, self.labels = base, [], {}

    def label(self, name):
        self.items.append(("label", name))

    def raw(self, data):
        self.items.append(("raw", bytes(data)))

    def rel(self, kind, r, target):          # relative branches / larl to a label
        self.items.append((kind, r, target))

    def align8(self):
        self.items.append(("align",))

    def build(self):
        sizes = {"brct": 4, "brc": 4, "larl": 6}
        addr = self.base
        for it in self.items:
            if it[0] == "label":
                self.labels[it[1]] = addr
            elif it[0] == "align":
                addr += -addr % 8
            else:
                addr += len(it[1]) if it[0] == "raw" else sizes[it[0]]
        out = bytearray()
        for it in self.items:
            addr = self.base + len(out)
            if it[0] == "label":
                continue
            if it[0] == "align":
                out += bytes(-addr % 8)
            elif it[0] == "raw":
                out += it[1]
            elif it[0] == "larl":
                off = (self.labels[it[2]] - addr) // 2
                out += bytes([0xC0, it[1] << 4]) + (off & 0xFFFFFFFF).to_bytes(4, "big")
            else:
                off = (self.labels[it[2]] - addr) // 2
                out += _ri(6 if it[0] == "brct" else 4, it[1], off)
        return bytes(out)


def lghi(r, i): return _ri(9, r, i)
def aghi(r, i): return _ri(0xB, r, i)
def cghi(r, i): return _ri(0xF, r, i)
def lgr(r1, r2): return _rre(0xB904, r1, r2)
def agr(r1, r2): return _rre(0xB908, r1, r2)
def ipm(r): return bytes([0xB2, 0x22, 0, r << 4])
def epsw(r1, r2): return _rre(0xB98D, r1, r2)
def stg(r, d, b=0): return _rxy(0x24, r, d, b)
def lpswe(d, b=0): return bytes([0xB2, 0xB2, (b << 4) | (d >> 8), d & 0xFF])
def stosm(d, i, b=0): return bytes([0xAD, i, (b << 4) | (d >> 8), d & 0xFF])
def mvc(l, d1, b1, d2, b2):  # noqa: E741  (12-bit displacements)
    return bytes([0xD2, l - 1, (b1 << 4) | (d1 >> 8), d1 & 0xFF,
                 (b2 << 4) | (d2 >> 8), d2 & 0xFF])


def psw(mask, addr):
    return lc.psw_bytes(mask, addr)


def image(code, data=b"", data_at=0x30000):
    segs = [elf_load.Segment(BASE, code, len(code), 1)]
    if data:
        segs.append(elf_load.Segment(data_at, data, len(data), 0))
    return elf_load.Image(BASE, tuple(segs))


def outcome(cc=None, pgm=None):
    return Outcome("PCILG", Completion(cc=cc, pgm=pgm), Decision(Route.USERSPACE, "test"))


def machine(handler, **kw):
    out = bytearray()
    m = UcMachine(MEM, handler, out.extend, **kw)
    return m, out


def quiesce_tail(a):
    a.rel("larl", 1, "exitpsw")
    a.raw(lpswe(0, 1))
    a.align8()
    a.label("exitpsw")
    a.raw(psw(*QUIESCE))


# --- the trap path ---------------------------------------------------------------
def test_pcilg_loop_reaches_model_once_each_and_guest_sees_cc_and_registers():
    n = 1000
    a = Asm()
    a.raw(lghi(3, 0) + lghi(5, 0) + lghi(6, 0) + lghi(7, n))
    a.label("loop")
    a.raw(lgr(4, 3))
    a.raw(encode("PCILG", r1=8, r2=2))
    a.rel("brc", 8, "skip")             # cc 0: skip the counter
    a.raw(aghi(6, 1))
    a.label("skip")
    a.raw(agr(5, 8) + aghi(3, 1))
    a.rel("brct", 7, "loop")
    a.raw(stg(5, 0x1000) + stg(6, 0x1008))
    quiesce_tail(a)
    seen = []

    def model(d, guest):
        seen.append((d.addr, d.r1, d.r2, d.ilen))
        i = guest.gpr(4)
        guest.set_gpr(8, 2 * i)
        return outcome(cc=1 if i % 10 == 0 else 0)

    m, _ = machine(model)
    m.load(image(a.build()))
    halt = m.run(BASE)
    assert halt.exit_code == 0 and halt.message is None
    assert len(seen) == n and m.t.zpci_traps == n
    pcilg_at = BASE + 16 + 4
    assert set(seen) == {(pcilg_at, 8, 2, 4)}
    assert int.from_bytes(m.read(0x1000, 8), "big") == sum(2 * i for i in range(n))
    assert int.from_bytes(m.read(0x1008, 8), "big") == n // 10
    # exact count: 4 setup, per iteration lgr pcilg brc agr aghi brct (+ aghi when cc 1),
    # then stg stg larl and the quiescing LPSWE
    assert m.stats.insns == 4 + 6 * n + n // 10 + 4
    assert m.stats.zpci[BY_MNEMONIC["PCILG"].index] == n


def test_fixed_zpci_result_answers_in_c_without_the_model():
    """benchmarks/boot.py's floor: the trap path with the answer fixed in C."""
    n = 500
    a = Asm()
    a.raw(lghi(6, 0) + lghi(7, n))
    a.label("loop")
    a.raw(encode("PCILG", r1=8, r2=2))
    a.rel("brc", 8, "skip")             # cc 0: skip the counter
    a.raw(aghi(6, 1))
    a.label("skip")
    a.rel("brct", 7, "loop")
    a.raw(stg(6, 0x1000))
    quiesce_tail(a)
    seen = []

    def model(d, guest):
        seen.append(d.addr)
        return outcome(cc=1)

    m, _ = machine(model)
    m.t.fixed_zpci_result = _lib().TRAP_RESUME_CC | 0
    m.load(image(a.build()))
    halt = m.run(BASE)
    assert halt.exit_code == 0 and seen == []
    assert m.t.zpci_traps == n and int.from_bytes(m.read(0x1000, 8), "big") == 0
    # the same code with the model answering: every trap reaches it, cc 1 each time
    m2, _ = machine(model)
    m2.load(image(a.build()))
    assert m2.run(BASE).exit_code == 0
    assert len(seen) == n and int.from_bytes(m2.read(0x1000, 8), "big") == n


def iilf(r, i): return bytes([0xC0, (r << 4) | 9]) + (i & 0xFFFFFFFF).to_bytes(4, "big")
def st_(r, d, b): return bytes([0x50, r << 4, (b << 4) | (d >> 8), d & 0xFF])


def _recording_model(seen, cc=0):
    def model(d, guest):
        seen.append((d.addr, d.r1, d.r2))
        return outcome(cc=cc)
    return model


def test_rewritten_zpci_site_is_decoded_again():
    """The model gets one decoded object per site; code written over the site counts."""
    new = encode("PCILG", r1=9, r2=4)
    a = Asm()
    a.raw(lghi(7, 3))
    a.label("loop")
    a.label("site")
    a.raw(encode("PCILG", r1=8, r2=2))
    a.raw(iilf(10, int.from_bytes(new, "big")))
    a.rel("larl", 11, "site")
    a.raw(st_(10, 0, 11))                    # rewrite the PCILG's register fields
    a.rel("brct", 7, "loop")
    quiesce_tail(a)
    seen = []
    m, _ = machine(_recording_model(seen))
    m.load(image(a.build()))
    assert m.run(BASE).exit_code == 0
    site = a.labels["site"]
    assert seen == [(site, 8, 2), (site, 9, 4), (site, 9, 4)]


def test_sites_sharing_a_cache_slot_keep_their_own_fields():
    """Two zPCI sites 0x800 apart share trap.c's direct-mapped slot; each keeps its fields."""
    a = Asm()
    a.raw(lghi(7, 3))
    a.label("loop")
    a.label("one")
    a.raw(encode("PCILG", r1=8, r2=2))
    a.rel("brc", 15, "two")
    a.raw(bytes(0x800 - 8))                   # never runs
    a.label("two")
    a.raw(encode("PCISTG", r1=6, r2=4))
    a.rel("brct", 7, "loop")
    quiesce_tail(a)
    code = a.build()
    assert a.labels["two"] - a.labels["one"] == 0x800
    seen = []

    def model(d, guest):
        seen.append((d.addr, d.index, d.r1, d.r2, d.ipb))
        return outcome(cc=0)

    m, _ = machine(model)
    m.load(image(code))
    assert m.run(BASE).exit_code == 0
    one = (a.labels["one"], BY_MNEMONIC["PCILG"].index, 8, 2, 0x00820000)
    two = (a.labels["two"], BY_MNEMONIC["PCISTG"].index, 6, 4, 0x00640000)
    assert seen == [one, two] * 3
    assert m.stats.zpci[BY_MNEMONIC["PCILG"].index] == 3
    assert m.stats.zpci[BY_MNEMONIC["PCISTG"].index] == 3


def _pcilg_loop(n):
    a = Asm()
    a.raw(lghi(7, n))
    a.label("loop")
    a.raw(encode("PCILG", r1=8, r2=2))
    a.rel("brct", 7, "loop")
    quiesce_tail(a)
    return image(a.build())


def test_machine_run_inside_another_machines_callback():
    """trap.c's callbacks (the direct zPCI call and the extern "Python" ones) follow
    the running machine, and come back."""
    inner_seen, outer_seen = [], []

    def outer_model(d, guest):
        outer_seen.append(d.addr)
        inner, _ = machine(_recording_model(inner_seen))
        inner.load(_pcilg_loop(2))
        assert inner.run(BASE).exit_code == 0
        guest.set_gpr(8, len(outer_seen))
        return outcome(cc=0)

    m, _ = machine(outer_model)
    m.load(_pcilg_loop(3))
    assert m.run(BASE).exit_code == 0
    assert len(outer_seen) == 3 and len(inner_seen) == 6
    assert m.stats.zpci[BY_MNEMONIC["PCILG"].index] == 3
    assert m.t.gpr[8] == 3 and m.uc.reg_read(9) == 3     # R8 written back by the trap path
    # and a machine still runs on its own afterwards
    again = []
    m2, _ = machine(_recording_model(again))
    m2.load(_pcilg_loop(4))
    assert m2.run(BASE).exit_code == 0 and len(again) == 4


def test_guest_adapter_memory():
    m, _ = machine(lambda d, g: outcome())
    g = m.guest
    big = bytes(range(256)) * 40                     # larger than the reusable read buffer
    assert g.write(0x10000, big) and g.read(0x10000, len(big)) == big
    assert g.write(0x20000, bytearray(b"abc")) and g.write(0x20003, memoryview(b"def"))
    r = g.read(0x20000, 6)
    assert r == b"abcdef" and type(r) is bytes
    first = g.read(0x20000, 3)
    g.write(0x20000, b"xyz")
    assert first == b"abc" and g.read(0x20000, 3) == b"xyz"   # no aliasing of the buffer
    assert g.read(MEM - 2, 4) is None and g.read(-1, 1) is None
    assert not g.write(MEM - 2, b"1234") and g.read(MEM - 2, 2) == b"\0\0"
    assert g.read(0, 0) == b""
    g.set_gpr(3, -1)
    assert g.gpr(3) == (1 << 64) - 1


def test_guest_register_accessors_are_the_trap_states_gprs():
    # cbits/trap.c's builtins: the same array trap.c writes back to unicorn
    m, _ = machine(lambda d, g: outcome())
    g, t = m.guest, m.t
    g.set_gpr(4, (1 << 70) | 5)                     # modulo 2**64, as the Guest interface says
    g.set_gpr(15, -2)
    assert t.gpr[4] == 5 and t.gpr[15] == (1 << 64) - 2 and g.gpr(15) == (1 << 64) - 2
    t.gpr[0] = 0x1234
    assert g.gpr(0) == 0x1234
    for bad in (16, -1):
        with pytest.raises(IndexError):
            g.gpr(bad)
        with pytest.raises(IndexError):
            g.set_gpr(bad, 0)
    with pytest.raises(TypeError):
        g.set_gpr(1, 1.5)
    with pytest.raises(TypeError):
        g.set_gpr(1)
    assert t.gpr[1] == 0
    # the accessors keep the trap state alive on their own
    get, set_ = g.gpr, g.set_gpr
    del m, g, t
    import gc
    gc.collect()
    set_(2, 7)
    assert get(2) == 7


def test_program_interruption_from_model_goes_through_lowcore():
    code, labels = _guest_with_pgm_handler(
        lghi(9, 5) + cghi(9, 7),                    # cc 1 before the failing instruction
        encode("PCILG", r1=8, r2=2),
        ipm(10) + stg(10, 0x1010))                  # the CC the guest continues with

    m, _ = machine(lambda d, g: outcome(pgm=0x15))
    m.load(image(code))
    assert m.run(BASE).exit_code == 0
    old_mask = int.from_bytes(m.read(0x900, 8), "big")
    old_addr = int.from_bytes(m.read(0x908, 8), "big")
    assert old_addr == labels["after"]              # operand exception: PSW advanced
    assert old_mask == 0x0000100180000000          # cc 1 kept, problem state not shown
    assert m.read(0x920, 4) == bytes.fromhex("00040015")
    assert (int.from_bytes(m.read(0x1010, 8), "big") >> 28) & 3 == 1
    assert m.stats.program_interruptions == {0x15: 1}


def test_guest_cannot_see_problem_state():
    a = Asm()
    a.raw(epsw(2, 3) + stg(2, 0x1000) + stg(3, 0x1008) + stosm(0x1010, 0))
    quiesce_tail(a)
    m, _ = machine(lambda d, g: outcome())
    m.load(image(a.build()))
    assert m.run(BASE).exit_code == 0
    assert int.from_bytes(m.read(0x1000, 8), "big") & 0xFFFFFFFF == 0x00000001
    assert int.from_bytes(m.read(0x1008, 8), "big") & 0xFFFFFFFF == 0x80000000
    assert m.read(0x1010, 1) == b"\0"
    assert m.hooked_sites == 1 and m.stats.privileged == {"EPSW": 1, "STOSM": 1, "LPSWE": 1}


def test_control_register_loads_and_stores_word_and_doubleword_forms():
    """LCTL/STCTL move the low words (register range wraps 15 -> 0), LCTLG/STCTG whole ones."""
    a = Asm()
    a.raw(bytes.fromhex("b6e00d00"))                   # stctl 14,0,0xd00
    a.raw(bytes.fromhex("b7110c00"))                   # lctl 1,1,0xc00
    a.raw(bytes.fromhex("eb220c08002f"))               # lctlg 2,2,0xc08
    a.raw(bytes.fromhex("b7220c00"))                   # lctl 2,2,0xc00: high word kept
    a.raw(bytes.fromhex("eb020d200025"))               # stctg 0,2,0xd20
    quiesce_tail(a)
    m, _ = machine(lambda d, g: outcome())
    m.load(image(a.build(), bytes.fromhex("12345678 00000000 aaaaaaaa bbbbbbbb"), data_at=0xC00))
    assert m.run(BASE).exit_code == 0
    assert m.read(0xD00, 12).hex() == "c2000000" "00000000" "000000e0"    # CR14 CR15 CR0
    assert m.read(0xD20, 24).hex() == "00000000000000e0" "0000000012345678" "aaaaaaaa12345678"
    assert {"LCTL", "LCTLG", "STCTL", "STCTG"} <= set(m.stats.privileged)


def test_runaway_guest_stops_at_max_insns():
    m, _ = machine(lambda d, g: outcome(), max_insns=200_000)
    m.load(image(bytes([0xA7, 0xF4, 0, 0])))           # j .
    halt = m.run(BASE)
    assert halt.exit_code == 1 and "--max-insns" in halt.message
    assert 200_000 <= m.stats.insns < 200_000 + 1000


def test_second_run_reports_its_own_stop():
    """A machine run again reports why that run stopped, not the previous halt."""
    m, _ = machine(lambda d, g: outcome(), max_insns=200_000)
    m.load(_pcilg_loop(2))
    first = m.run(BASE)
    assert first.exit_code == 0 and first.message is None
    m.uc.mem_write(BASE + 0x1000, bytes([0xA7, 0xF4, 0, 0]))     # j .
    second = m.run(BASE + 0x1000)
    assert second.exit_code == 1 and "--max-insns" in second.message


def test_disabled_wait_elsewhere_is_an_error():
    a = Asm()
    a.rel("larl", 1, "p")
    a.raw(lpswe(0, 1))
    a.align8()
    a.label("p")
    a.raw(psw(0x0002000180000000, 0x1234))
    m, _ = machine(lambda d, g: outcome())
    m.load(image(a.build()))
    halt = m.run(BASE)
    assert halt.exit_code == 1 and "disabled wait" in halt.message and "1234" in halt.message


def test_unemulated_privileged_instruction_stops_with_address_and_bytes():
    code = bytes.fromhex("b2290012")                   # ISKE 1,2
    m, _ = machine(lambda d, g: outcome())
    m.load(image(code))
    halt = m.run(BASE)
    assert halt.exit_code == 1
    assert f"{BASE:#x}" in halt.message and "b2290012" in halt.message


def test_missing_program_new_psw_is_reported_not_looped():
    m, _ = machine(lambda d, g: outcome(pgm=0x06))
    m.load(image(encode("PCILG", r1=1, r2=3)))
    halt = m.run(BASE)
    assert halt.exit_code == 1 and "no program-new PSW" in halt.message


def test_sclp_console_write_reaches_output():
    text = b"hello, sclp\n"
    sccb = bytearray(0x1000)
    tot = 8 + 6 + len(text)
    sccb[0:2] = tot.to_bytes(2, "big")
    sccb[8:10] = (6 + len(text)).to_bytes(2, "big")
    sccb[10] = 0x1A
    sccb[14:14 + len(text)] = text
    a = Asm()
    a.raw(bytes.fromhex("c0f000000000"))              # placeholder larl r15 (patched)
    a.raw(lghi(2, 0))
    a.raw(bytes.fromhex("c03f00760005"))              # iilf r3,0x00760005
    a.raw(_rre(0xB220, 3, 15))                        # servc r3,r15
    a.raw(ipm(4) + stg(4, 0x1000))
    quiesce_tail(a)
    code = bytearray(a.build())
    code[0:6] = bytes([0xC0, 0xF0]) + ((0x30000 - BASE) // 2).to_bytes(4, "big")
    m, out = machine(lambda d, g: outcome())
    m.load(image(bytes(code), bytes(sccb)))
    assert m.run(BASE).exit_code == 0
    assert bytes(out) == text
    assert m.read(0x30006, 2) == b"\x00\x20"          # normal completion
    assert m.read(0x3000B, 1)[0] & 0x80                # buffer accepted
    assert (int.from_bytes(m.read(0x1000, 8), "big") >> 28) & 3 == 0


# --- ELF loading: any bytes give a UserError or an image ----------------------------
def test_probe_elf_loads():
    img = elf_load.load(PROBE, 256 << 20)
    assert img.entry == 0x20000 and img.segments[0].flags & elf_load.PF_X


def _elf64(entry, phdrs, tail=b"", machine=22, phentsize=56, ident=b"\x02\x02\x01"):
    """A minimal ELF64 image: header, program headers (type, flags, offset, paddr,
    filesz, memsz), then ``tail`` (segment data, at offsets the caller chose)."""
    hdr = (b"\x7fELF" + ident + bytes(9)
           + struct.pack(">HHIQQQIHHHHHH", 2, machine, 1, entry, 64, 0, 0, 64, phentsize,
                         len(phdrs), 64, 0, 0))
    ph = b"".join(struct.pack(">IIQQQQQQ", t, f, off, pa | 0x40000000, pa, fs, ms, 8)
                  .ljust(phentsize, b"\0") for t, f, off, pa, fs, ms in phdrs)
    return hdr + ph + tail


def test_loader_takes_pt_load_at_paddr_with_bss_and_flags():
    data = bytes(range(1, 33))
    off = 64 + 3 * 56
    raw = _elf64(0x20000, [(1, 5, off, 0x20000, 16, 16),          # text, R+X
                           (4, 4, off, 0x99999, 8, 8),            # PT_NOTE: not loaded
                           (1, 6, off + 16, 0x30000, 16, 0x1000)],  # data + bss, R+W
                 data)
    img = elf_load.parse(raw, MEM, "t.elf")
    assert img == elf_load.Image(0x20000, (
        elf_load.Segment(0x20000, data[:16], 16, 5),
        elf_load.Segment(0x30000, data[16:], 0x1000, 6)))
    # a Linux entry point moves to 0x10000 and gets the command line at 0x10480
    lin = elf_load.parse(_elf64(0x800, [(1, 5, off - 112, 0x10000, 16, 16)], data), MEM,
                         "t.elf", "root=/dev/x")
    assert lin.linux and lin.entry == 0x10000
    assert lin.segments[-1] == elf_load.Segment(0x10480, b"root=/dev/x\0", 0)


@pytest.mark.parametrize("mutate,needle", [
    (lambda b: b"MZ" + b[2:], "not an ELF"),
    (lambda b: b[:40], "cut short"),
    (lambda b: b[:4] + b"\x01" + b[5:], "EI_CLASS at offset 0x4 is 1"),
    (lambda b: b[:4] + b"\x07" + b[5:], "EI_CLASS at offset 0x4 is 7"),
    (lambda b: b[:5] + b"\x01" + b[6:], "EI_DATA at offset 0x5 is 1"),
    (lambda b: b[:5] + b"\x00" + b[6:], "EI_DATA at offset 0x5 is 0"),
    (lambda b: b[:18] + b"\x00\x3e" + b[20:], "e_machine"),
    (lambda b: b[:56] + b"\x00\x00" + b[58:], "e_phnum at offset 0x38 is 0"),
    (lambda b: b[:56] + b"\xff\xff" + b[58:], "PN_XNUM"),
    (lambda b: b[:54] + b"\x00\x20" + b[56:], "e_phentsize at offset 0x36 is 32"),
    (lambda b: b[:32] + (1 << 40).to_bytes(8, "big") + b[40:], "program header 0 at offset"),
    (lambda b: b[:200], "beyond the end|past the end"),
    (lambda b: b[:24] + (0x20001).to_bytes(8, "big") + b[32:], "e_entry, offset 0x18"),
])
def test_malformed_elf_names_the_problem(mutate, needle):
    raw = PROBE.read_bytes()
    with pytest.raises(UserError) as e:
        elf_load.parse(mutate(raw), 256 << 20, "x.elf")
    assert str(e.value).startswith("x.elf: ") and "\n" not in str(e.value)
    assert any(n in str(e.value) for n in needle.split("|")), str(e.value)


@pytest.mark.parametrize("phdr,needle", [
    ((1, 5, 64 + 56, 0x20000, 32, 16), "p_filesz 0x20 exceeds p_memsz 0x10"),
    ((1, 5, 64 + 56, 0x20000, 4096, 4096), "runs past the end of the file"),
    ((1, 5, (1 << 64) - 8, 0x20000, 16, 16), "runs past the end of the file"),
    ((1, 5, 64 + 56, MEM - 8, 16, 16), "does not fit in 4 MiB"),
    ((1, 5, 64 + 56, (1 << 64) - 8, 16, 16), "does not fit"),
    ((4, 4, 64 + 56, 0x20000, 16, 16), "no PT_LOAD segment"),
])
def test_bad_segment_names_its_program_header(phdr, needle):
    with pytest.raises(UserError) as e:
        elf_load.parse(_elf64(0x20000, [phdr], bytes(16)), MEM, "s.elf")
    msg = str(e.value)
    assert msg.startswith("s.elf: ") and "\n" not in msg and needle in msg, msg
    if "PT_LOAD" not in needle:
        assert "program header 0 (offset 0x40)" in msg


def test_segment_beyond_memory():
    with pytest.raises(UserError, match="does not fit in 128 KiB"):
        elf_load.parse(PROBE.read_bytes(), 128 << 10, "x.elf")


def _one_line_or_image(blob, where="j.elf"):
    try:
        img = elf_load.parse(blob, 256 << 20, where)
    except UserError as exc:
        assert str(exc).startswith(where + ": ") and "\n" not in str(exc)
    else:
        assert img.segments and all(s.addr + s.memsz <= 256 << 20 for s in img.segments)


@given(st.binary(max_size=300), st.integers(0, 400))
def test_elf_parser_total_on_any_bytes(junk, cut):
    raw = PROBE.read_bytes()
    for blob in (junk, b"\x7fELF\x02\x02\x01" + junk, raw[:cut] + junk):
        _one_line_or_image(blob)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 64 + 2 * 56 + 16 - 1), st.integers(0, 255)),
                max_size=6))
def test_elf_parser_total_on_damaged_headers(edits):
    """Header and program-header bytes overwritten: an image or a one-line error."""
    off = 64 + 2 * 56
    data = bytearray(_elf64(0x20000, [(1, 5, off, 0x20000, 16, 16), (6, 4, off, 0, 8, 8)],
                            bytes(range(16))))
    for where, value in edits:
        data[where] = value
    _one_line_or_image(bytes(data))


# --- the command line ---------------------------------------------------------------
def zpci(*argv, timeout=120):
    return run_cli("boot", *argv, text=False, timeout=timeout)


def test_cli_probe_stats_and_trace(tmp_path):
    stats, trace = tmp_path / "s.json", tmp_path / "t.zt"
    r = zpci("-nodefaults", "-nographic", "-m", "256", "-chardev", "stdio,id=c",
             "-device", "sclpconsole,chardev=c", "-kernel", str(PROBE),
             "-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0",
             "--stats", str(stats), "--trace", str(trace))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"ZPCI-PROBE start\n") and b"ZPCI-PROBE done" in r.stdout
    s = json.loads(stats.read_text())
    assert s["zpci_instructions"] == sum(s["zpci"].values()) > 50
    assert set(s["outcomes"]) >= {"intercept-all", "linux-6.0", "ioat-assist", "firmware-rpcit"}
    for routes in s["outcomes"].values():
        assert sum(routes.values()) == s["zpci_instructions"]
    assert s["intercepts_saved"]["intercept-all"] == 0
    assert s["intercepts"]["intercept-all"] == s["zpci_instructions"]
    assert s["instructions"] > s["zpci_instructions"]
    from emulator.trace.reader import read_all
    header, records = read_all(trace)
    events = [r for r in records if type(r).__name__ == "Event"]
    assert len(events) == s["zpci_instructions"]
    # the blocks as they ran hold exactly the instructions the run counted
    from emulator.trace.text import block_insns
    blocks = {r.block_id: block_insns(r.code, r.addr)
              for r in records if type(r).__name__ == "Block"}
    runs = [p for r in records if type(r).__name__ == "Runs" for p in r.pairs]
    assert sum(blocks[b] * n for b, n in runs) == s["instructions"]
    assert header.functions[0].fid == 1 and header.functions[0].kind == "virtio-rng-pci"


def test_cli_bad_elf_and_missing_kernel(tmp_path):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + bytes(20))
    r = zpci("-kernel", str(bad))
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.count("\n") == 0 and "bad.elf" in err and "Traceback" not in err
    r = zpci("-m", "64")
    assert r.returncode == 2 and "no -kernel" in r.stderr.decode()


def test_cli_bad_device_string_exits_2():
    r = zpci("-kernel", str(PROBE), "-device", "zpci,uid=1,target=a,bogus=1")
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert "zpci,uid=1,target=a,bogus=1" in err and err.count("\n") == 0
    # an unknown device kind, and a bad property of a known one: the device registry's
    for dev in ("e1000,id=n0", "virtio-rng-pci,id=r0,colour=red"):
        r = zpci("-kernel", str(PROBE), "-device", dev)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and dev in err and err.count("\n") == 0, err
        assert "Traceback" not in err


def test_cli_runaway_exits_1(tmp_path):
    elf = tmp_path / "spin.elf"
    elf.write_bytes(_minimal_elf(bytes([0xA7, 0xF4, 0, 0])))
    r = zpci("-kernel", str(elf), "--max-insns", "100000")
    assert r.returncode == 1 and "--max-insns" in r.stderr.decode()


def _minimal_elf(code, addr=BASE):
    """An ELF64 big-endian EM_S390 executable with one PT_LOAD segment."""
    eh = bytearray(64)
    eh[0:7] = b"\x7fELF\x02\x02\x01"
    eh[16:18] = (2).to_bytes(2, "big")
    eh[18:20] = (22).to_bytes(2, "big")
    eh[20:24] = (1).to_bytes(4, "big")
    eh[24:32] = addr.to_bytes(8, "big")
    eh[32:40] = (64).to_bytes(8, "big")
    eh[52:54] = (64).to_bytes(2, "big")
    eh[54:56] = (56).to_bytes(2, "big")
    eh[56:58] = (1).to_bytes(2, "big")
    ph = bytearray(56)
    ph[0:4] = (1).to_bytes(4, "big")
    ph[4:8] = (5).to_bytes(4, "big")
    ph[8:16] = (120).to_bytes(8, "big")
    ph[16:24] = addr.to_bytes(8, "big")
    ph[24:32] = addr.to_bytes(8, "big")
    ph[32:40] = len(code).to_bytes(8, "big")
    ph[40:48] = len(code).to_bytes(8, "big")
    return bytes(eh) + bytes(ph) + code


# --- program exceptions unicorn raises by itself ----------------------------------
def _guest_with_pgm_handler(setup: bytes, insn: bytes, after: bytes = b""):
    """setup; insn; after; quiesce.  The program handler saves the old PSW (0x900)
    and the ILC/code word (0x920), then resumes at the old PSW."""
    a = Asm()
    a.rel("larl", 1, "newpsw")
    a.raw(mvc(16, 0x1D0, 0, 0, 1))      # program-new PSW
    a.raw(setup)
    a.label("insn")
    a.raw(insn)
    a.label("after")
    a.raw(after)
    quiesce_tail(a)
    a.label("handler")
    a.raw(mvc(16, 0x900, 0, 0x150, 0) + mvc(4, 0x920, 0, 0x8C, 0))
    a.raw(lpswe(0x150))
    a.align8()
    a.label("newpsw")
    a.raw(psw(0x0000000180000000, 0))
    code = bytearray(a.build())
    off = a.labels["newpsw"] - BASE + 8
    code[off:off + 8] = a.labels["handler"].to_bytes(8, "big")
    return bytes(code), a.labels


@pytest.mark.parametrize("setup,insn,word", [
    (lghi(2, 0) + lghi(3, 7) + lghi(4, 0), bytes([0x1D, 0x24]), "00020009"),   # dr 2,4: /0
    (lghi(3, 7) + lghi(4, 1), bytes([0x1D, 0x34]), "00020006"),               # dr 3,4: odd pair
    (bytes.fromhex("c02120000000"), _rxy(0x04, 3, 0, 2), "00060005"),         # lg beyond memory
    ((b""), bytes([0x00, 0x00]), "00020001"),                                 # no such opcode
])
def test_unicorn_exceptions_are_classified_like_qemu(setup, insn, word):
    code, labels = _guest_with_pgm_handler(setup, insn)
    m, _ = machine(lambda d, g: outcome())
    m.load(image(code))
    halt = m.run(BASE)
    assert halt.exit_code == 0, halt.message
    assert m.read(0x920, 4) == bytes.fromhex(word)
    # all four codes are non-nullifying in QEMU: the old PSW points past the instruction
    assert int.from_bytes(m.read(0x908, 8), "big") == labels["after"]
    assert int.from_bytes(m.read(0x900, 8), "big") & lc.PSW_MASK_PSTATE == 0


def test_model_failure_is_one_line_not_a_traceback():
    def broken(d, g):
        raise KeyError("boom")

    m, _ = machine(broken)
    m.load(image(encode("PCILG", r1=1, r2=2)))
    halt = m.run(BASE)
    assert halt.exit_code == 1
    assert "internal error" in halt.message and "b9d20012" in halt.message
    assert "KeyError" in halt.message and "\n" not in halt.message


# --- the direct zPCI call (trap.c calls the machine's callable itself) -------------
def test_zpci_callable_references_are_dropped_after_each_run():
    """trap_run holds the callables for the run only: no leak, none left behind."""
    import gc
    import weakref

    def counts(*objs):
        gc.collect()
        return [sys.getrefcount(o) for o in objs]

    m, _ = machine(lambda d, g: outcome(cc=0))
    m.load(_pcilg_loop(5))
    # one bound method for every run, to count (run() takes it from the instance)
    m._on_zpci_error = m._on_zpci_error
    on_zpci, on_error = m._on_zpci, m._on_zpci_error
    before = counts(on_zpci, on_error)
    for _ in range(3):
        assert m.run(BASE).exit_code == 0
        # (the Halt's traceback keeps run()'s frame, whose locals name both)
        m.halted = None
        assert counts(on_zpci, on_error) == before
    assert m.t.py_zpci == m.t.py_error == _ffi().NULL
    # and after runs that an exception stopped
    m2, _ = machine(lambda d, g: 1 / 0)
    m2.load(_pcilg_loop(5))
    fn = m2._on_zpci
    before = counts(fn)
    for _ in range(3):
        assert "ZeroDivisionError" in m2.run(BASE).message
        assert counts(fn) == before
    del fn, on_zpci, on_error
    # the machine itself is freed (C holds nothing of it between runs)
    gone = weakref.ref(m2)
    del m2
    gc.collect()
    assert gone() is None


def _ffi():
    from emulator._native import ffi
    return ffi


def _lib():
    from emulator._native import lib
    return lib


def test_zpci_callable_errors_stop_the_run_with_one_line():
    # a result that is no int
    m, _ = machine(lambda d, g: outcome(cc=0))
    m.load(_pcilg_loop(3))
    m._on_zpci = lambda site: None
    halt = m.run(BASE)
    assert halt.exit_code == 1 and "internal error" in halt.message
    assert "TypeError" in halt.message and "NoneType" in halt.message
    assert "\n" not in halt.message and m.stats.zpci[BY_MNEMONIC["PCILG"].index] == 1
    # an int out of range
    m, _ = machine(lambda d, g: outcome(cc=0))
    m.load(_pcilg_loop(3))
    m._on_zpci = lambda site: 1 << 70
    assert "OverflowError" in m.run(BASE).message
    # the error callable fails too: trap.c reports it on its own (TRAP_STOP_ERROR)
    m, _ = machine(lambda d, g: outcome(cc=0))
    m.load(_pcilg_loop(3))

    def bad(site):
        raise ValueError("first\nsecond")

    def worse(exc):
        raise RuntimeError("no")

    m._on_zpci, m._on_zpci_error = bad, worse
    halt = m.run(BASE)
    assert halt.exit_code == 1 and m.t.stop == _lib().TRAP_STOP_ERROR
    assert "ValueError: first second" in halt.message and "\n" not in halt.message
    assert "b9d20082" in halt.message


def test_keyboard_interrupt_in_the_model_reaches_the_caller():
    def model(d, g):
        raise KeyboardInterrupt

    m, _ = machine(model)
    m.load(_pcilg_loop(3))
    with pytest.raises(KeyboardInterrupt):
        m.run(BASE)
    # the machine is usable again afterwards
    m2, _ = machine(_recording_model([]))
    m2.load(_pcilg_loop(2))
    assert m2.run(BASE).exit_code == 0


def test_trap_run_without_a_zpci_callable_stops_cleanly():
    from emulator.cpu import native
    from emulator._native import ffi, lib

    m, _ = machine(lambda d, g: outcome(cc=0))
    m.load(_pcilg_loop(3))
    m.uc.reg_write(native.REG_PSWM, m.irq.uc_mask(lc.IPL_PSW_MASK))     # as run() does
    previous = native.attach(m._handlers)
    try:
        err = lib.trap_run(m.t, BASE, ffi.NULL, ffi.NULL)
        assert err == 0 and m.t.stop == lib.TRAP_STOP_ERROR
        assert b"no zPCI callable" in ffi.string(m.t.error_text)
        not_callable = 12345
        err = lib.trap_run(m.t, BASE, native.object_pointer(not_callable), ffi.NULL)
        assert err == -1 and m.t.stop == lib.TRAP_STOP_ERROR
        assert b"not callable" in ffi.string(m.t.error_text)
    finally:
        native.attach(previous)
    # a trap_state no engine was installed in: refused, not a crash
    assert lib.trap_run(ffi.new("trap_state *"), BASE, ffi.NULL, ffi.NULL) == -1
    assert b"trap_install" in ffi.string(lib.trap_last_error())


def test_zpci_callable_result_outside_the_contract_stops_the_run():
    """Only 0 and TRAP_RESUME_CC | cc resume (trap_api.h); any other int stops the run
    at the first zPCI instruction, without touching the condition code."""
    from emulator.cpu import native

    lib = _lib()
    for bad in (-1, 0x30, lib.TRAP_RESUME_CC | 0x100 | 2, 2, -(1 << 31)):
        m, _ = machine(lambda d, g: outcome(cc=0))
        m.load(_pcilg_loop(3))
        m.uc.reg_write(native.REG_PSWM, m.irq.uc_mask(lc.IPL_PSW_MASK))     # as run() does
        # both referenced here for the whole call: trap_run gets their addresses
        fn, on_error = (lambda v: lambda site: v)(bad), m._on_zpci_error
        previous = native.attach(m._handlers)
        try:
            err = lib.trap_run(m.t, BASE, native.object_pointer(fn),
                               native.object_pointer(on_error))
        finally:
            native.attach(previous)
        assert err == 0 and m._error is None, (bad, m._error)
        assert (m.t.stop, m.t.zpci_traps, m.t.cc) == (lib.TRAP_STOP_PYTHON, 1, -1), bad
        assert m.uc.reg_read(native.REG_PSWM) & lc.PSW_MASK_CC == 0, bad


def test_nested_machine_failing_inside_the_outer_callback():
    """The inner machine's error stays its own; the outer run goes on."""
    results = []

    def outer_model(d, guest):
        inner, _ = machine(lambda d, g: {}["missing"])
        inner.load(_pcilg_loop(2))
        results.append(inner.run(BASE).message)
        return outcome(cc=0)

    m, _ = machine(outer_model)
    m.load(_pcilg_loop(3))
    assert m.run(BASE).exit_code == 0
    assert len(results) == 3 and all("KeyError" in r for r in results)


def test_guest_problem_state_reaches_the_model_and_svc_returns():
    a = Asm()
    a.rel("larl", 1, "svcnew")
    a.raw(mvc(16, 0x1C0, 0, 0, 1))
    a.rel("larl", 1, "userpsw")
    a.raw(lpswe(0, 1))                                  # to problem state, at "user"
    a.label("user")
    a.raw(encode("PCILG", r1=8, r2=2))
    a.raw(bytes([0x0A, 0x07]))                          # svc 7: back to supervisor
    a.raw(encode("PCILG", r1=8, r2=2))
    quiesce_tail(a)
    a.label("svch")
    a.raw(bytes.fromhex("94fe0141"))                    # ni 0x141,0xfe: clear bit 15
    a.raw(lpswe(0x140))
    a.align8()
    a.label("svcnew")
    a.raw(psw(0x0000000180000000, 0))
    a.label("userpsw")
    a.raw(psw(0x0001000180000000, 0))
    code = bytearray(a.build())
    for name, target in (("svcnew", "svch"), ("userpsw", "user")):
        off = a.labels[name] - BASE + 8
        code[off:off + 8] = a.labels[target].to_bytes(8, "big")
    states = []

    def model(d, guest):
        states.append(guest.problem_state)
        return outcome(cc=0)

    m, _ = machine(model)
    m.load(image(bytes(code)))
    assert m.run(BASE).exit_code == 0
    assert states == [True, False]
    assert m.read(0x88, 4) == bytes.fromhex("00020007")            # SVC ILC and number
    assert int.from_bytes(m.read(0x140, 8), "big") == 0x0000000180000000   # after the ni
