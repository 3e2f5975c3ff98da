"""The privileged instructions a bare-metal guest uses, emulated as QEMU 7.2 does.

Unicorn runs the guest in problem state, so each of these traps before doing
anything; ``Privileged.handle`` decodes the bytes at the PC and either
completes the instruction (registers, memory, CC, PSW), delivers the program
interruption QEMU would, or stops the run with one line naming the
instruction.  Nothing is skipped silently.

Facility and CPU-identification values are those ``qemu-system-s390x -cpu
qemu`` (7.2.22) reports; they were read from it by benchmarks/guests/privprobe.c,
which tests/test_boot_priv.py runs under both (see FACILITY_DWORDS and CPUID).
"""
from __future__ import annotations

from emulator.cpu import lowcore as lc
from emulator._native import lib
from emulator.cpu.native import REG_CR0
from emulator.cpu.records import Halt
from firmware_model.guest import MASK64

# STFLE doublewords of QEMU 7.2.22's "-cpu qemu" model, as its STFLE stored
# them for benchmarks/guests/privprobe.c.  Bits 69 (zPCI), 71 and 72
# (adapter-interruption suppression) are on.
FACILITY_DWORDS: tuple[int, ...] = (0xF940F6D3F4C45C64, 0x059C000000000000, 0x7120280000000000)
# Facilities of that list whose instructions unicorn 2.1's TCG (QEMU 5.0)
# raises an operation exception for (measured, tests/test_linux_cpu.py):
# miscellaneous-instruction-extensions 2 (58: MSRKC, MGRK, AGH, BIC) and 3
# (61: NCRK, SELR), message-security-assist 8 (146: KMA), vector
# enhancements 1 (135: VBPERM, VFMAX) and 2 (148: VSTRS, VLBR).  A guest
# that runs its own instructions under unicorn (a supervisor-state kernel
# and its user space) must not be told it has them: glibc picks its
# string functions by them.
UNICORN_MISSING_FACILITIES = (58, 61, 135, 146, 148)


def without_facilities(dwords: tuple[int, ...], bits: tuple[int, ...]) -> tuple[int, ...]:
    """``dwords`` (STFLE doublewords, bit 0 leftmost) with ``bits`` off."""
    out = list(dwords)
    for bit in bits:
        out[bit // 64] &= ~(1 << (63 - bit % 64))
    return tuple(out)


KERNEL_FACILITY_DWORDS = without_facilities(FACILITY_DWORDS, UNICORN_MISSING_FACILITIES)
# STIDP of CPU 0 under the same QEMU: machine type 0x8561, version and id 0.
CPUID = 0x0000000085610000

HOOKED = lib.TRAP_INTNO_HOOKED
SIGP_SENSE = 0x01
SIGP_STOP = 0x05
SIGP_SET_ARCH = 0x12
SIGP_SENSE_RUNNING = 0x15
SIGP_STAT_INVALID_PARAMETER = 0x100


# The divides, by (first byte, selector); R1 of each names an even/odd pair.
DIVIDES = frozenset({
    (0x5D, None), (0x1D, None),                 # D, DR
    (0xB9, 0x97), (0xB9, 0x87),                 # DLR, DLGR
    (0xB9, 0x0D), (0xB9, 0x1D),                 # DSGR, DSGFR
    (0xE3, 0x97), (0xE3, 0x87),                 # DL, DLG
    (0xE3, 0x0D), (0xE3, 0x1D),                 # DSG, DSGF
})


def _bd(t, hi: int, lo: int, index: int = 0) -> int:
    """Base (high nibble of hi) + 12-bit displacement + index register, unwrapped."""
    base = hi >> 4
    return (t.gpr[base] if base else 0) + (t.gpr[index] if index else 0) + ((hi & 0xF) << 8 | lo)


def s_addr(t, b: bytes) -> int:
    """Second-operand address of an S/SI/RS-format instruction (12-bit displacement)."""
    return _wrap(t, _bd(t, b[2], b[3]))


def _rsy_addr(t, b: bytes, index: int = 0) -> int:
    """Second-operand address of an RSY (or, with ``index``, RXY) instruction: signed DH:DL."""
    dh = b[4] - 0x100 if b[4] & 0x80 else b[4]
    return _wrap(t, _bd(t, b[2], b[3], index) + (dh << 12))


def _wrap(t, addr: int) -> int:
    mask = t.pswm
    if mask & lc.PSW_MASK_64:
        return addr & MASK64
    if mask & lc.PSW_MASK_32:
        return addr & 0x7FFFFFFF
    return addr & 0xFFFFFF


class Privileged:
    """Dispatch of the trapped non-zPCI instructions of one machine."""

    def __init__(self, machine):
        self.m = machine
        # (first byte, second byte or None) -> (mnemonic, handler)
        self.table = {
            (0xB2, 0x20): ("SERVC", self.servc),
            (0xB2, 0xB2): ("LPSWE", self.lpswe),
            (0xB2, 0x10): ("SPX", self.spx),
            (0xB2, 0x11): ("STPX", self.stpx),
            (0xB2, 0x12): ("STAP", self.stap),
            (0xB2, 0x02): ("STIDP", self.stidp),
            (0xB2, 0xB1): ("STFL", self.stfl),
            (0xB2, 0x0D): ("PTLB", self.ptlb),
            (0x80, None): ("SSM", self.ssm),
            (0x82, None): ("LPSW", self.lpsw),
            (0xAC, None): ("STNSM", self.stnsm),
            (0xAD, None): ("STOSM", self.stosm),
            (0xB7, None): ("LCTL", self.lctl),
            (0xB6, None): ("STCTL", self.stctl),
            (0xAE, None): ("SIGP", self.sigp),
            (0xEB, 0x2F): ("LCTLG", self.lctl),
            (0xEB, 0x25): ("STCTG", self.stctl),
        }
        # unprivileged, reached through trap_hook_at (emulator.cpu.machine.SENSITIVE)
        self.hooked = {
            (0xB9, 0x8D): ("EPSW", self.epsw),
            (0xB2, 0xB0): ("STFLE", self.stfle),
        }

    def lookup(self, b: bytes):
        """(mnemonic, handler) for a complete instruction ``b``, or None."""
        if b[0] == 0xB2:
            return self.table.get((0xB2, b[1]))
        if b[0] == 0xEB:
            return self.table.get((0xEB, b[5]))
        return self.table.get((b[0], None))

    def handle(self, t) -> None:
        m = self.m
        b = bytes(t.bytes[0:t.nbytes])
        if t.intno == HOOKED:
            entry = self.hooked.get((b[0], b[1])) if len(b) >= 4 else None
            if entry is None:
                raise Halt(1, f"hooked instruction at {t.pc:#x} changed to {b.hex()}; "
                              "self-modifying code is not supported")
            name, fn = entry
            m.stats.count_privileged(name)
            t.next_pc = t.pc + 4
            fn(t, b[:4], 4)
            return
        if not b:
            raise Halt(1, f"program exception at {t.pc:#x}, whose instruction is not in memory")
        ilen = t.d.ilen
        entry = self.lookup(b[:ilen]) if len(b) >= ilen else None
        if entry is None:
            code = self.classify(t, b[:ilen], ilen) if len(b) >= ilen else None
            if code is not None:
                m.irq.program_interrupt(t, code, ilen)
                return
            raise Halt(1, f"stopped at {t.pc:#x}: instruction {b[:ilen].hex()} raised a "
                          "program exception that is not emulated (an unsupported privileged "
                          "instruction, or an exception unicorn does not identify)")
        name, fn = entry
        if m.irq.pstate:
            m.irq.program_interrupt(t, lc.PGM_PRIVILEGED, ilen)
            return
        m.stats.count_privileged(name)
        t.next_pc = t.pc + ilen
        fn(t, b[:ilen], ilen)

    # --- exceptions unicorn raised on its own ---------------------------------
    def classify(self, t, b: bytes, ilen: int) -> int | None:
        """The program-interruption code of an exception unicorn does not name.

        Unicorn reports every program exception as intno 3 without its code, so
        the instruction is examined: an opcode no instruction has (operation),
        a divide (specification for an odd register pair, else divide), or a
        storage operand beyond guest memory (addressing).  Anything else is
        left unclassified and stops the run.
        """
        op = b[0]
        if op == 0x00:
            return lc.PGM_OPERATION
        key = (op, b[5]) if ilen == 6 else (op, b[1]) if op in (0xB9,) else (op, None)
        if key in DIVIDES:
            r1 = (b[3] >> 4) if op == 0xB9 else (b[1] >> 4)
            if r1 & 1:
                return lc.PGM_SPECIFICATION
            return lc.PGM_FIXPT_DIVIDE
        for addr in self.operand_addresses(t, b, ilen):
            if addr >= self.m.memory_size:
                return lc.PGM_ADDRESSING
        return None

    def operand_addresses(self, t, b: bytes, ilen: int):
        op = b[0]
        if 0x40 <= op <= 0x7F and ilen == 4:                    # RX
            yield _wrap(t, _bd(t, b[2], b[3], b[1] & 0xF))
        elif op == 0xE5 and ilen == 6:                          # SIL
            yield s_addr(t, b)
        elif op in (0xE3, 0xEB) and ilen == 6:                  # RXY, RSY
            yield _rsy_addr(t, b, b[1] & 0xF if op == 0xE3 else 0)
        elif (0x88 <= op <= 0x9F or 0xB6 <= op <= 0xBF) and ilen == 4:   # RS, SI
            yield s_addr(t, b)
        elif 0xD0 <= op <= 0xDF and ilen == 6:                  # SS
            yield s_addr(t, b)
            yield _wrap(t, _bd(t, b[4], b[5]))
        elif op in (0xC4, 0xC6) and ilen == 6:                  # RIL, relative long
            rel = int.from_bytes(b[2:6], "big", signed=True)
            yield _wrap(t, t.pc + 2 * rel)

    # --- helpers ---------------------------------------------------------------
    def _read(self, t, addr: int, size: int, ilen: int) -> bytes | None:
        data = self.m.irq.read_operand(t, addr, size)
        if data is None:
            self.m.irq.program_interrupt(t, lc.PGM_ADDRESSING, ilen)
        return data

    def _write(self, t, addr: int, data: bytes, ilen: int) -> bool:
        if not self.m.irq.write_operand(t, addr, data):
            self.m.irq.program_interrupt(t, lc.PGM_ADDRESSING, ilen)
            return False
        return True

    def _aligned(self, t, addr: int, n: int, ilen: int) -> bool:
        if addr % n:
            self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)
            return False
        return True

    def _read_aligned(self, t, addr: int, align: int, size: int, ilen: int) -> bytes | None:
        """The operand, or None once the specification or addressing exception is delivered."""
        if not self._aligned(t, addr, align, ilen):
            return None
        return self._read(t, addr, size, ilen)

    # --- PSW -------------------------------------------------------------------
    def lpswe(self, t, b, ilen) -> None:
        psw = self._read_aligned(t, s_addr(t, b), 8, 16, ilen)
        if psw is None:
            return
        self.m.irq.load_psw(t, int.from_bytes(psw[:8], "big"), int.from_bytes(psw[8:], "big"))

    def lpsw(self, t, b, ilen) -> None:
        raw = self._read_aligned(t, s_addr(t, b), 8, 8, ilen)
        if raw is None:
            return
        short = int.from_bytes(raw, "big")
        mask = short & 0xFFFFFFFF00000000
        if not mask & (1 << 51):
            # an ESA/390 PSW must have bit 12 set
            self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)
            return
        mask &= ~(1 << 51)
        if short & 0x80000000:
            mask |= lc.PSW_MASK_32
        self.m.irq.load_psw(t, mask, short & 0x7FFFFFFF)

    def ssm(self, t, b, ilen) -> None:
        m = self.m
        if m.uc.reg_read(REG_CR0) & (1 << 30):
            # CR0 bit 33: SSM suppression
            m.irq.program_interrupt(t, lc.PGM_SPECIAL_OP, ilen)
            return
        data = self._read(t, s_addr(t, b), 1, ilen)
        if data is None:
            return
        mask = (self.m.irq.current_mask(t) & ~(0xFF << 56)) | (data[0] << 56)
        self._set_mask(t, mask, ilen)

    def _set_mask(self, t, mask: int, ilen: int) -> None:
        """SSM/STOSM/STNSM complete; a system mask with a bit that must be zero
        makes the PSW invalid: an early specification exception, ILC 2, the old
        PSW the invalid one (QEMU 7.2 keeps the bit and runs on)."""
        if lc.psw_invalid(mask, t.next_pc):
            self.m.irq.psw_exception(t, mask, t.next_pc, ilen,
                                 f"the invalid system mask {mask >> 56:02x} set")
            return
        self.m.irq.set_psw(t, mask, t.next_pc)
        self.m.irq.check_interrupts(t)

    def _stnosm(self, t, b, ilen, op) -> None:
        addr = s_addr(t, b)
        mask = self.m.irq.current_mask(t)
        if not self._write(t, addr, bytes([mask >> 56]), ilen):
            return
        i2 = b[1]
        if op == "and":
            mask &= (i2 << 56) | 0x00FFFFFFFFFFFFFF
        else:
            mask |= i2 << 56
        self._set_mask(t, mask, ilen)

    def stnsm(self, t, b, ilen) -> None:
        self._stnosm(t, b, ilen, "and")

    def stosm(self, t, b, ilen) -> None:
        self._stnosm(t, b, ilen, "or")

    # --- control registers ----------------------------------------------------
    def _cr_range(self, b):
        r1, r3 = b[1] >> 4, b[1] & 0xF
        n = (r3 - r1) % 16 + 1
        return [(r1 + i) % 16 for i in range(n)]

    def _cr_operand(self, t, b, ilen) -> tuple[int, int]:
        """Address and bytes per register: LCTL/STCTL (RS, words) or LCTLG/STCTG (RSY)."""
        if ilen == 6:
            return _rsy_addr(t, b), 8
        return s_addr(t, b), 4

    def lctl(self, t, b, ilen) -> None:
        """LCTL and LCTLG."""
        m = self.m
        addr, size = self._cr_operand(t, b, ilen)
        regs = self._cr_range(b)
        data = self._read_aligned(t, addr, size, size * len(regs), ilen)
        if data is None:
            return
        for i, r in enumerate(regs):
            v = int.from_bytes(data[i * size:(i + 1) * size], "big")
            if size == 4:
                v |= m.uc.reg_read(REG_CR0 + r) & 0xFFFFFFFF00000000
            m.uc.reg_write(REG_CR0 + r, v)
        m.irq.check_interrupts(t)

    def stctl(self, t, b, ilen) -> None:
        """STCTL and STCTG."""
        m = self.m
        addr, size = self._cr_operand(t, b, ilen)
        if not self._aligned(t, addr, size, ilen):
            return
        out = b"".join((m.uc.reg_read(REG_CR0 + r) & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
                       for r in self._cr_range(b))
        self._write(t, addr, out, ilen)

    # --- CPU identity and prefix -------------------------------------------------
    def spx(self, t, b, ilen) -> None:
        m = self.m
        data = self._read_aligned(t, s_addr(t, b), 4, 4, ilen)
        if data is None:
            return
        prefix = int.from_bytes(data, "big") & 0x7FFFE000
        if prefix != m.irq.prefix:
            raise Halt(1, f"SPX at {t.pc:#x} sets prefix {prefix:#x}: only prefix 0 is emulated")

    def stpx(self, t, b, ilen) -> None:
        addr = s_addr(t, b)
        if self._aligned(t, addr, 4, ilen):
            self._write(t, addr, self.m.irq.prefix.to_bytes(4, "big"), ilen)

    def stap(self, t, b, ilen) -> None:
        addr = s_addr(t, b)
        if self._aligned(t, addr, 2, ilen):
            self._write(t, addr, (0).to_bytes(2, "big"), ilen)

    def stidp(self, t, b, ilen) -> None:
        addr = s_addr(t, b)
        if self._aligned(t, addr, 8, ilen):
            self._write(t, addr, CPUID.to_bytes(8, "big"), ilen)

    def stfl(self, t, b, ilen) -> None:
        word = FACILITY_DWORDS[0] >> 32
        self.m.irq.write_real(lc.STFL_FAC_LIST, word.to_bytes(4, "big"))

    def stfle(self, t, b, ilen, dwords: tuple[int, ...] = FACILITY_DWORDS) -> None:
        """QEMU's HELPER(stfle): as many doublewords as both sides have room for."""
        addr = s_addr(t, b)
        if not self._aligned(t, addr, 8, ilen):
            return
        have = len(dwords)
        room = (t.gpr[0] & 0xFF) + 1
        data = b"".join(d.to_bytes(8, "big") for d in dwords[:min(room, have)])
        if not self._write(t, addr, data, ilen):
            return
        t.gpr[0] = (t.gpr[0] & ~0xFF) | (have - 1)
        t.cc = 0 if room >= have else 3

    def epsw(self, t, b, ilen) -> None:
        """EXTRACT PSW with the guest's PSW, not unicorn's problem-state one."""
        r1, r2 = b[3] >> 4, b[3] & 0xF
        mask = self.m.irq.current_mask(t)
        t.gpr[r1] = (t.gpr[r1] & 0xFFFFFFFF00000000) | (mask >> 32)
        if r2:
            t.gpr[r2] = (t.gpr[r2] & 0xFFFFFFFF00000000) | (mask & 0xFFFFFFFF)

    def ptlb(self, t, b, ilen) -> None:
        """No TLB is modelled (DAT is never on), so purging it changes nothing."""

    # --- service call and signal processor ---------------------------------------
    def servc(self, t, b, ilen) -> None:
        m = self.m
        r1, r2 = b[3] >> 4, b[3] & 0xF
        pgm = m.sclp.service_call(t.gpr[r1] & 0xFFFFFFFF, t.gpr[r2], m.irq.prefix,
                                  m.read, m.write)
        if pgm is not None:
            m.irq.program_interrupt(t, pgm, ilen)
            return
        t.cc = 0
        m.irq.check_interrupts(t)

    def sigp(self, t, b, ilen) -> None:
        r1, r3 = b[1] >> 4, b[1] & 0xF
        order = s_addr(t, b) & 0xFF
        cpu_addr = t.gpr[r3] & 0xFFFF
        if cpu_addr != 0:
            t.cc = 3            # not operational: there is one CPU, address 0
            return
        if order == SIGP_SENSE:
            t.cc = 0
        elif order == SIGP_SENSE_RUNNING:
            # a running CPU: "order code accepted"
            t.cc = 0
        elif order == SIGP_SET_ARCH:
            # QEMU always runs in z/Architecture (CZAM) and rejects the order
            t.gpr[r1] = (t.gpr[r1] & 0xFFFFFFFF00000000) | SIGP_STAT_INVALID_PARAMETER
            t.cc = 1
        elif order == SIGP_STOP:
            if self.m.irq.supervisor:
                # a kernel powering off stops its CPU: with no CPU left
                # running QEMU shuts the machine down
                raise Halt(0, None)
            raise Halt(1, f"guest stopped its only CPU (SIGP STOP at {t.pc:#x}); "
                          "QEMU would wait forever")
        else:
            raise Halt(1, f"SIGP order {order:#x} at {t.pc:#x} is not emulated")
