"""The supervisor-state CPU of Linux guests (cbits/trap_super.h, emulator.cpu.kernel_insns).

Small hand-encoded programs run under UcMachine(supervisor=True): the clock
instructions answered in C, sensitive instructions found in blocks as they
first run, waits that move the clock to the comparator, program exceptions
delivered with unicorn's own code, length and prefix.
"""
from __future__ import annotations

import struct

import pytest

from emulator._native import lib
from emulator.cpu import lowcore as lc
from emulator.cpu.machine import UcMachine

MEM = 4 << 20
CODE = 0x10000
DATA = 0x20000
TOD0 = 0xE000_0000_0000_0000


def s_insn(op: int, b2: int, d2: int) -> bytes:
    """An S-format instruction (B2xx D2(B2))."""
    return op.to_bytes(2, "big") + ((b2 << 12) | d2).to_bytes(2, "big")


def lghi(r: int, imm: int) -> bytes:
    return bytes([0xA7, (r << 4) | 9]) + (imm & 0xFFFF).to_bytes(2, "big")


def aghi(r: int, imm: int) -> bytes:
    return bytes([0xA7, (r << 4) | 0xB]) + (imm & 0xFFFF).to_bytes(2, "big")


def llilh(r: int, imm: int) -> bytes:          # r = imm << 16
    return bytes([0xA5, (r << 4) | 0xE]) + imm.to_bytes(2, "big")


def _s_op(op: int):
    return lambda b2, d2: s_insn(op, b2, d2)


stck, stckf, stcke = _s_op(0xB205), _s_op(0xB27C), _s_op(0xB278)
sckc, stckc, lpswe = _s_op(0xB206), _s_op(0xB207), _s_op(0xB2B2)


QUIESCE = lc.psw_bytes(lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0xFFF)


def machine(code: bytes, data: bytes = b"", max_insns: int = 1_000_000):
    m = UcMachine(MEM, lambda d, g: None, lambda b: None, supervisor=True, tod=TOD0,
                  max_insns=max_insns)
    m.uc.mem_write(CODE, code)
    if data:
        m.uc.mem_write(DATA, data)
    return m


def u64(m, addr):
    return int.from_bytes(m.read(addr, 8), "big")


def test_clock_instructions_are_answered_in_c():
    # r1 = DATA; STCK 0(r1); STCKF 8(r1); STCKE 16(r1); LPSWE quiesce at 64(r1)
    code = (llilh(1, DATA >> 16) + stck(1, 0) + stckf(1, 8) + stcke(1, 16) + lpswe(1, 64))
    m = machine(code, bytes(64) + QUIESCE)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    t = m.t
    a, b = u64(m, DATA), u64(m, DATA + 8)
    e = m.read(DATA + 16, 16)
    assert TOD0 <= a and b >= a + 4096                 # each store 1 us or more later
    assert e[0] == 0 and int.from_bytes(e[1:9], "big") >= b + 4096 and e[9:] == bytes(7)
    assert t.clock_insns == 3 and t.other_traps == 1   # only the quiescing LPSWE reached Python
    assert m.uc.reg_read(66) & lc.PSW_MASK_CC == 0     # the wait PSW was loaded as stored


def test_set_and_store_clock_comparator():
    ckc = 0xE000_0000_1234_5000
    code = llilh(1, DATA >> 16) + sckc(1, 0) + stckc(1, 8) + lpswe(1, 64)
    m = machine(code, ckc.to_bytes(8, "big") + bytes(56) + QUIESCE)
    assert m.run(CODE).exit_code == 0
    assert u64(m, DATA + 8) == ckc and m.t.ckc == ckc


def test_enabled_wait_moves_the_clock_to_the_comparator_and_interrupts():
    """LPSWE of an enabled wait with the clock comparator set: the clock jumps
    past it and the clock-comparator interruption (0x1004) is delivered with
    the wait PSW as old PSW."""
    handler = 0x11000
    wait_psw = lc.psw_bytes(lc.PSW_MASK_EXT | lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0x10800)
    code = (llilh(1, DATA >> 16) + sckc(1, 0) + lpswe(1, 16))
    m = machine(code, (TOD0 + (5 << 32)).to_bytes(8, "big") + bytes(8) + wait_psw + bytes(16)
                + QUIESCE)
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + stck(1, 8) + lpswe(1, 48))
    m.uc.mem_write(lc.EXT_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.reg_write(100, lc.CR0_RESET | lc.CR0_CKC_SC)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.EXT_INT_CODE, 2) == lc.EXT_CLOCK_COMP.to_bytes(2, "big")
    assert m.read(lc.EXT_OLD_PSW, 16) == wait_psw
    assert u64(m, DATA + 8) > TOD0 + (5 << 32)         # the handler's clock is past the comparator


def test_program_exception_uses_uncorns_code_length_and_the_prefix():
    """An operation exception (opcode 00) with the prefix moved by SPX: the
    lowcore written is the prefix area's, with code 1, ILC 2, old PSW past it."""
    prefix = 0x30000
    code = llilh(1, DATA >> 16) + s_insn(0xB210, 1, 0) + b"\x00\x00" + bytes(4)
    m = machine(code, prefix.to_bytes(4, "big"))
    handler = 0x12000
    m.uc.mem_write(prefix + lc.PROGRAM_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + lpswe(1, 64))
    m.uc.mem_write(DATA + 64, QUIESCE)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    assert m.t.prefix == prefix
    assert m.read(prefix + lc.PGM_ILEN, 4) == bytes([0, 2, 0, lc.PGM_OPERATION])
    old = m.read(prefix + lc.PROGRAM_OLD_PSW, 16)
    assert int.from_bytes(old[8:], "big") == CODE + 8 + 2
    assert m.read(lc.PGM_ILEN, 4) == bytes(4)          # not the absolute lowcore


def test_code_written_at_run_time_is_scanned_when_it_first_runs():
    """A routine copied into memory by the guest (MVC) with a STCK in it: the
    STCK is hooked when its block first runs, so it stores the clock."""
    routine = llilh(1, DATA >> 16) + stck(1, 0) + lpswe(1, 64)
    dest = 0x14000
    # r2 = dest; MVC 0(len,r2),0(r3) with r3 = the routine's copy in DATA+128
    mvc = bytes([0xD2, len(routine) - 1, 0x20, 0x00, 0x30, 0x00])     # MVC 0(n,r2),0(r3)
    code = (llilh(2, CODE >> 16) + aghi(2, dest - CODE)                 # r2 = dest
            + llilh(3, DATA >> 16) + aghi(3, 128)                      # r3 = the routine's copy
            + mvc + bytes([0x07, 0xF2]))                                # BR r2
    data = bytes(64) + QUIESCE + bytes(48) + routine
    m = machine(code, data)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    assert u64(m, DATA) >= TOD0 and m.t.clock_insns == 1
    assert m.t.hooked_sites == 2                         # the STCK and the LPSWE


def test_a_hooked_address_with_other_code_runs_it_natively():
    """The same address first holds a STCK, then (rewritten) an LGHI: the hook
    stays, and the new instruction runs as itself."""
    m = machine(llilh(1, DATA >> 16) + stck(1, 0) + lpswe(1, 64), bytes(64) + QUIESCE)
    assert m.run(CODE).exit_code == 0
    m2_code = llilh(1, DATA >> 16) + lghi(5, 77) + lpswe(1, 64)
    m.uc.mem_write(CODE, m2_code)
    lib.trap_tlb_flush(m.t)
    m.uc.ctl_remove_cache(CODE, CODE + len(m2_code))
    assert m.run(CODE).exit_code == 0
    assert m.uc.reg_read(1 + 5) == 77 and m.t.clock_insns == 1


@pytest.mark.parametrize("insn, what", [
    (bytes([0x83, 0x00, 0x03, 0x08]), "DIAG 0x308 subcode 0x0"),    # re-IPL (r0 = 0)
    (s_insn(0xB233, 1, 0), "program interruption 0x01"),  # SSCH: cc 3, then B2FF
])
def test_unmodelled_instructions_stop_with_one_line_naming_them(insn, what):
    """(SCK is not among them: unicorn 2.1 crashes the process on it before
    any hook could run, measured; docs/design.md.)"""
    m = machine(llilh(1, DATA >> 16) + insn + bytes([0xB2, 0xFF, 0, 0]))
    halt = m.run(CODE)
    assert halt.exit_code == 1 and "\n" not in halt.message
    at = CODE + 4 if "DIAG" in what else CODE + 8
    assert f"{at:#x}" in halt.message and halt.addr == at and what in halt.message


def test_cpu_state_offsets_match_this_unicorn():
    """trap.c reads the prefix and the program-interruption code at fixed
    offsets of unicorn's saved CPU state: a specification exception (SPX of an
    unaligned operand) must show up as code 6, length 4."""
    code = llilh(1, DATA >> 16) + s_insn(0xB210, 1, 1) + bytes(4)
    m = machine(code)
    m.uc.mem_write(lc.PROGRAM_NEW_PSW, lc.psw_bytes(lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0xFFF))
    assert m.run(CODE).exit_code == 0
    assert m.read(lc.PGM_ILEN, 4) == bytes([0, 4, 0, lc.PGM_SPECIFICATION])
    assert struct.unpack(">Q", m.read(lc.PROGRAM_OLD_PSW + 8, 8))[0] == CODE + 8


def test_io_interruption_made_pending_is_delivered_when_its_isc_is_enabled():
    """make_io_pending queues it; the enabled wait (I/O mask on, ISC 3 on in CR6)
    delivers it through the I/O new PSW with the lowcore words QEMU stores."""
    from emulator.cpu.interrupts import IoInterruption
    handler = 0x11000
    wait_psw = lc.psw_bytes(lc.PSW_MASK_IO | lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0x10800)
    m = machine(llilh(1, DATA >> 16) + lpswe(1, 0), wait_psw + bytes(48) + QUIESCE)
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + lpswe(1, 64))
    m.uc.mem_write(lc.IO_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.reg_write(100 + 6, lc.CR6_ISC_BIT0 >> 3)
    io = IoInterruption(subchannel_id=0, subchannel_nr=0, parm=0x12345678,
                        word=0x80000000 | (3 << 27))
    m.irq.make_io_pending(io)
    assert m.t.pending_io_isc == lc.CR6_ISC_BIT0 >> 3
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.IO_INT_PARM, 8) == bytes.fromhex("12345678") + io.word.to_bytes(4, "big")
    assert m.read(lc.IO_OLD_PSW, 16) == wait_psw
    assert not m.irq.flic.pending and m.t.pending_io_isc == 0


# One instruction of each facility QEMU 7.2's -cpu qemu lists but unicorn 2.1
# cannot run (emulator.cpu.privileged.UNICORN_MISSING_FACILITIES).
MISSING_FACILITY_INSNS = {
    58: bytes.fromhex("b9fd0012"),          # MSRKC (miscellaneous-instruction-extensions 2)
    61: bytes.fromhex("b9f50012"),          # NCRK (miscellaneous-instruction-extensions 3)
    135: bytes.fromhex("e70000000085"),     # VBPERM (vector enhancements 1)
    146: bytes.fromhex("b9292024"),         # KMA (message-security-assist 8)
    148: bytes.fromhex("e74020203f8b"),     # VSTRS (vector enhancements 2): glibc's strstr
}
CR0_AFP_VECTOR = (1 << 18) | (1 << 17)      # CR0 bits 45 and 46


def _program_code_of(insn: bytes) -> int | None:
    """The program interruption code ``insn`` gets under the supervisor-state CPU
    (None: it ran), with AFP and vector registers enabled."""
    from emulator.cpu.native import REG_CR0
    handler = 0x12000
    code = insn + llilh(1, DATA >> 16) + lpswe(1, 64)
    m = machine(code)
    m.uc.mem_write(DATA + 64, QUIESCE)
    m.uc.mem_write(lc.PROGRAM_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + lpswe(1, 64))
    m.uc.reg_write(REG_CR0, lc.CR0_RESET | CR0_AFP_VECTOR)
    m.uc.reg_write(2, DATA + 0x100)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    if m.stats.program_interruptions:
        return m.read(lc.PGM_ILEN + 2, 2)[1]
    return None


@pytest.mark.parametrize("facility", sorted(MISSING_FACILITY_INSNS))
def test_the_kernel_is_not_told_of_facilities_unicorn_cannot_run(facility):
    from emulator.cpu.privileged import FACILITY_DWORDS, KERNEL_FACILITY_DWORDS

    def has(dwords, bit):
        return bool(dwords[bit // 64] >> (63 - bit % 64) & 1)

    assert _program_code_of(MISSING_FACILITY_INSNS[facility]) == lc.PGM_OPERATION
    assert has(FACILITY_DWORDS, facility) and not has(KERNEL_FACILITY_DWORDS, facility)


def test_kernel_stfle_stores_qemus_list_less_the_missing_facilities():
    from emulator.cpu.privileged import FACILITY_DWORDS, KERNEL_FACILITY_DWORDS
    # the vector facility itself (129) runs, so it stays: VL
    assert _program_code_of(bytes.fromhex("e70020000006")) is None
    # r0 = 2 (three doublewords); STFLE 0(r1); LPSWE quiesce
    code = lghi(0, 2) + llilh(1, DATA >> 16) + s_insn(0xB2B0, 1, 0) + lpswe(1, 64)
    m = machine(code, bytes(64) + QUIESCE)
    assert m.run(CODE).exit_code == 0
    stored = tuple(u64(m, DATA + 8 * i) for i in range(3))
    assert stored == KERNEL_FACILITY_DWORDS
    gone = [i for i in range(192)
            if FACILITY_DWORDS[i // 64] >> (63 - i % 64) & 1 and not stored[i // 64] >> (63 - i % 64) & 1]
    assert gone == sorted(MISSING_FACILITY_INSNS)


def prno(r1: int, r2: int) -> bytes:
    return bytes([0xB9, 0x3C, 0, (r1 << 4) | r2])


def test_prno_query_offers_only_the_trng_as_qemus_cpu_model():
    """PRNO query (GR0 = 0) stores the 16-byte mask of installed functions at
    GR1: query (0) and TRNG (114), what QEMU 7.2's "qemu" model answers; the
    kernel seeds its random pool from it at boot (kernel_insns.prno)."""
    code = lghi(0, 0) + llilh(1, DATA >> 16) + prno(2, 4) + llilh(1, DATA >> 16) + lpswe(1, 64)
    m = machine(code, bytes([0xAA] * 16) + bytes(48) + QUIESCE)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    mask = int.from_bytes(m.read(DATA, 16), "big")
    assert [b for b in range(128) if mask >> (127 - b) & 1] == [0, 114]
    assert m.uc.reg_read(66) & lc.PSW_MASK_CC == 0


def test_prno_trng_fills_both_buffers_and_steps_the_registers():
    """TRNG (fc 114): R1's and R2's buffers filled, addresses advanced by their
    lengths, lengths zero, cc 0; the bytes differ between the buffers."""
    buf1, buf2 = DATA + 0x100, DATA + 0x1000
    code = (lghi(0, 114) + llilh(2, DATA >> 16) + aghi(2, 0x100) + lghi(3, 40)
            + llilh(4, DATA >> 16) + aghi(4, 0x1000) + lghi(5, 5000)
            + prno(2, 4) + llilh(1, DATA >> 16) + lpswe(1, 64))
    m = machine(code, bytes(64) + QUIESCE)
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    r = [m.uc.reg_read(1 + i) for i in range(2, 6)]    # unicorn numbers r0 as 1
    assert r == [buf1 + 40, 0, buf2 + 5000, 0]
    a, b = m.read(buf1, 40), m.read(buf2, 5000)
    assert a != bytes(40) and b.count(0) < 100 and a not in b
    assert m.read(buf1 + 40, 8) == bytes(8)            # nothing past the buffer


@pytest.mark.parametrize("fc,r1", [(3, 2), (127, 2), (114, 3)])
def test_prno_function_not_installed_or_odd_register_is_a_specification_exception(fc, r1):
    handler = 0x12000
    code = lghi(0, fc) + llilh(1, DATA >> 16) + prno(r1, 4)
    m = machine(code, bytes(64) + QUIESCE)
    m.uc.mem_write(lc.PROGRAM_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + lpswe(1, 64))
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    assert m.read(lc.PGM_ILEN, 4) == bytes([0, 4, 0, lc.PGM_SPECIFICATION])


# DAT tables of the instruction-execution-protection test: one segment, its
# page table mapping the first MiB one to one
PAGE_TABLE = 0x30000
SEGMENT_TABLE = 0x34000
PTE_IEP = 0x100                   # page-table entry bit 55
STE_INVALID = 0x20                # segment-table entry bit 58
CR0_IEP = 1 << 20                 # CR0 bit 43 (Linux's ctl bit 20)
NOEXEC_PAGE = 0x15000


def _fetch_from_iep_page(cr0_iep: bool):
    """(program interruption code or None, ILC) of branching, with DAT on,
    into a page whose entry has the IEP bit."""
    from emulator.cpu.native import REG_CR0
    handler = 0x12000
    m = machine(llilh(1, DATA >> 16) + lpswe(1, 128))
    for page in range(256):
        pte = page << 12 | (PTE_IEP if page << 12 == NOEXEC_PAGE else 0)
        m.uc.mem_write(PAGE_TABLE + 8 * page, pte.to_bytes(8, "big"))
    m.uc.mem_write(SEGMENT_TABLE, PAGE_TABLE.to_bytes(8, "big"))
    for seg in range(1, 512):
        m.uc.mem_write(SEGMENT_TABLE + 8 * seg, STE_INVALID.to_bytes(8, "big"))
    m.uc.reg_write(REG_CR0 + 1, SEGMENT_TABLE)           # primary ASCE, segment table
    m.uc.reg_write(REG_CR0, lc.CR0_RESET | (CR0_IEP if cr0_iep else 0))
    m.uc.mem_write(DATA + 128, lc.psw_bytes(lc.IPL_PSW_MASK | lc.PSW_MASK_DAT, NOEXEC_PAGE))
    m.uc.mem_write(NOEXEC_PAGE, llilh(1, DATA >> 16) + lpswe(1, 64))
    m.uc.mem_write(DATA + 64, QUIESCE)
    m.uc.mem_write(lc.PROGRAM_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, handler))
    m.uc.mem_write(handler, llilh(1, DATA >> 16) + lpswe(1, 64))
    halt = m.run(CODE)
    assert halt.exit_code == 0, halt.message
    if not m.stats.program_interruptions:
        return None
    return m.read(lc.PGM_ILEN + 3, 1)[0]


def test_instruction_execution_protection_is_enforced_as_the_kernel_is_told():
    """The kernel is told of facility 130 (QEMU's list), so a fetch from a page
    whose entry has the IEP bit is a protection exception once CR0 enables
    IEP, and runs when it does not."""
    from emulator.cpu.privileged import KERNEL_FACILITY_DWORDS
    assert KERNEL_FACILITY_DWORDS[130 // 64] >> (63 - 130 % 64) & 1
    assert _fetch_from_iep_page(cr0_iep=True) == lc.PGM_PROTECTION
    assert _fetch_from_iep_page(cr0_iep=False) is None


@pytest.mark.parametrize("supervisor", [True, False])
def test_a_store_beyond_storage_is_an_addressing_exception(supervisor):
    """The unmapped-access hook covers only what lies above storage (a hook
    over storage keeps every store on unicorn's slow path); a store beyond
    storage is still the addressing exception QEMU gives, never a store."""
    beyond = MEM + 0x1000
    code = llilh(1, beyond >> 16) + bytes.fromhex("a7290005") + bytes.fromhex("50201000")  # ST 2,0(1)
    m = UcMachine(MEM, lambda d, g: None, lambda b: None, supervisor=supervisor, tod=TOD0,
                  max_insns=1_000_000)
    m.uc.mem_write(CODE, code + bytes(8))
    halt = m.run(CODE)
    assert halt.exit_code == 1
    assert "program interruption 0x05" in halt.message and "\n" not in halt.message
