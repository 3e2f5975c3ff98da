"""What a supervisor-state kernel hands to Python, and how each is answered.

cbits/trap_super.h hooks the instructions unicorn would run as no-ops or
wrongly (see its table ``sensitive``); those it cannot complete in C come
here as TRAP_INTNO_HOOKED.  Program exceptions unicorn raises come here as
intno 3 with unicorn's own interruption code and length (trap_state.pgm_code,
pgm_ilen), and are delivered through the lowcore as QEMU 7.2 does.

PRNO answers query and TRNG as QEMU 7.2's "qemu" CPU model does.
Instructions shared with bare-metal guests (STFLE, STFL, STIDP, SERVC, SIGP,
LPSWE, LPSW, SCK) use emulator.cpu.privileged's handlers; the kernel-only
ones are here: DIAGNOSE as QEMU 7.2's TCG answers it, STORE SYSTEM
INFORMATION (not operational, docs/deviations.md), and the channel
subsystem of a machine with no CCW devices.  Anything else stops the run
with one line naming the instruction and its address.
"""
from __future__ import annotations

import random

from emulator.cpu import lowcore as lc
from emulator._native import lib
from emulator.cpu.native import EXCP_PGM, REG_CR0
from emulator.cpu.privileged import KERNEL_FACILITY_DWORDS, s_addr
from emulator.cpu.records import Halt, insn_hex
from firmware_model.guest import MASK64

DIAG_YIELD = 0x44
DIAG_IPL = 0x308
DIAG308_STORE = 6                # store the IPL parameter block
DIAG308_RC_NO_CONF = 0x0102      # ... there is none (-kernel with no boot device)
# STCRW with no channel report pending, STSCH of a subchannel that does not exist
CC_NO_CRW = 1
CC_NOT_OPERATIONAL = 3
# CHSC response: the command is not supported (request header: length, code)
CHSC_RESPONSE_INVALID_COMMAND = 0x0004
# PRNO: function code in GR0, the functions installed as the query's 128-bit
# mask (bit 0 leftmost): query (0) and TRNG (114), QEMU 7.2's "qemu" model
PRNO_FC_MASK = 0x7F
PRNO_QUERY = 0
PRNO_TRNG = 114
PRNO_INSTALLED = (1 << 127 - PRNO_QUERY) | (1 << 127 - PRNO_TRNG)
PRNO_CHUNK = 4096                # bytes stored per step (a fault leaves the rest undone)
PRNO_SEED = 0x7A70_6369          # the TRNG's bytes are reproducible run to run
CHANNEL_IO = {
    0x30: "CSCH", 0x31: "HSCH", 0x32: "MSCH", 0x33: "SSCH", 0x34: "STSCH", 0x35: "TSCH",
    0x36: "TPI", 0x37: "SAL", 0x38: "RSCH", 0x39: "STCRW", 0x3A: "STCPS", 0x3B: "RCHP",
    0x3C: "SCHM", 0x76: "XSCH", 0x5F: "CHSC",
}


class KernelInsns:
    """Dispatch of one supervisor-state machine's traps other than zPCI."""

    def __init__(self, machine, privileged):
        self.m = machine
        self.entropy = random.Random(PRNO_SEED)
        self.privileged = p = privileged
        # (first byte, second byte or None) -> (mnemonic, privileged, handler)
        self.table = {
            (0xB2, 0xB0): ("STFLE", False, self.stfle),
            (0xB2, 0xB1): ("STFL", True, p.stfl),
            (0xB2, 0x02): ("STIDP", True, p.stidp),
            (0xB2, 0x20): ("SERVC", True, p.servc),
            (0xB2, 0xB2): ("LPSWE", True, p.lpswe),
            (0x82, None): ("LPSW", True, p.lpsw),
            (0xAE, None): ("SIGP", True, p.sigp),
            (0x83, None): ("DIAG", True, self.diag),
            (0xB2, 0x7D): ("STSI", True, self.stsi),
            (0xB2, 0x04): ("SCK", True, self.sck),
            (0xB9, 0x3C): ("PRNO", False, self.prno),
        }
        for op2, name in CHANNEL_IO.items():
            self.table[(0xB2, op2)] = (name, True, self.channel_io)

    def lookup(self, b: bytes):
        return self.table.get((b[0], b[1] if b[0] in (0xB2, 0xB9) else None))

    def handle(self, t) -> None:
        m = self.m
        if t.intno == EXCP_PGM:
            self.program_exception(t)
            return
        ilen = t.d.ilen
        b = bytes(t.bytes[0:t.nbytes])
        entry = self.lookup(b) if len(b) >= max(ilen, 2) else None
        if entry is None:
            raise Halt(1, f"instruction {insn_hex(t)} at {t.pc:#x} is not modelled", addr=t.pc)
        name, privileged, fn = entry
        if privileged and t.pswm & lc.PSW_MASK_PSTATE:
            m.irq.program_interrupt(t, lc.PGM_PRIVILEGED, ilen)
            return
        m.stats.count_privileged(name)
        t.next_pc = t.pc + ilen
        fn(t, b[:ilen], ilen)

    def program_exception(self, t) -> None:
        """A program exception unicorn raised: delivered with its own code and length."""
        code = t.pgm_code & 0xFFFF
        if code == 0:
            raise Halt(1, f"program exception at {t.pc:#x} (instruction {insn_hex(t)}) without "
                          "an interruption code", addr=t.pc)
        ilen = t.pgm_ilen if t.pgm_ilen in (2, 4, 6) else (t.d.ilen or 2)
        if code == lc.PGM_PROTECTION and self._false_low_address_protection(t):
            # unicorn 2.1 protects whole pages 0 and 1 under low-address
            # protection, not their first 512 bytes: a store to the lowcore
            # beyond them faults.  Low-address protection goes off and the
            # instruction runs again (docs/deviations.md).
            uc = self.m.uc
            uc.reg_write(REG_CR0, uc.reg_read(REG_CR0) & ~lc.CR0_LOW_ADDRESS_PROTECTION)
            lib.trap_tlb_flush(t)
            self.m.stats.count_privileged("low-address-protection-off")
            return
        self.m.irq.program_interrupt(t, code, ilen)

    def _false_low_address_protection(self, t) -> bool:
        """A protection exception in page 0 or 1 whose operands all lie past the
        512 bytes low-address protection covers in each."""
        if not self.m.uc.reg_read(REG_CR0) & lc.CR0_LOW_ADDRESS_PROTECTION:
            return False
        tec = int.from_bytes(self.m.irq.read_real(lc.TRANS_EXC_CODE, 8), "big")
        if tec >> 13:
            return False                    # a page beyond 0 and 1: DAT protection
        b = bytes(t.bytes[0:t.nbytes])
        ilen = t.d.ilen
        if len(b) < ilen:
            return False
        addrs = list(self.privileged.operand_addresses(t, b[:ilen], ilen))
        return bool(addrs) and all(a & 0xFFF >= 512 for a in addrs if a < 0x2000)

    # --- the kernel-only instructions ------------------------------------------------
    def stfle(self, t, b, ilen) -> None:
        """QEMU's facility list less what unicorn cannot run (privileged.py)."""
        self.privileged.stfle(t, b, ilen, KERNEL_FACILITY_DWORDS)

    def diag(self, t, b, ilen) -> None:
        """QEMU 7.2 TCG's helper_diag: yield is a no-op, re-IPL is not modelled,
        every other code is a specification exception."""
        code = s_addr(t, b) & 0xFFFF
        if code == DIAG_YIELD:
            return
        if code == DIAG_IPL:
            self._diag308(t, b, ilen)
            return
        self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)

    def _diag308(self, t, b, ilen) -> None:
        """IPL functions: STORE answers that no IPL parameter block exists, as
        QEMU does for a -kernel boot with no boot device; the others re-IPL."""
        r1, r3 = b[1] >> 4, b[1] & 0xF
        subcode = t.gpr[r3]
        if subcode == DIAG308_STORE:
            if r1 & 1 or t.gpr[r1] & 0xFFF:
                self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)
                return
            t.gpr[r1 + 1] = DIAG308_RC_NO_CONF
            return
        raise Halt(1, f"DIAG 0x308 subcode {subcode:#x} (re-IPL) at {t.pc:#x} is not modelled",
                   addr=t.pc)

    def stsi(self, t, b, ilen) -> None:
        """No system information: cc 3, registers unchanged (QEMU stores level 3
        blocks; recorded in docs/deviations.md)."""
        t.cc = CC_NOT_OPERATIONAL

    def prno(self, t, b, ilen) -> None:
        """PERFORM RANDOM NUMBER OPERATION as QEMU 7.2's "qemu" CPU model offers it
        (MSA 5 with only the TRNG function): query and TRNG.

        Without the TRNG a kernel's random pool is never seeded at boot and its
        first /dev/urandom read spins on the clock for entropy (measured: 330 M
        guest instructions in blk-strict's workload phase; QEMU with
        ``-cpu qemu,prno-trng=off`` spins the same way).  The bytes come from a
        generator seeded per machine, so a run is reproducible.
        """
        fc = t.gpr[0] & PRNO_FC_MASK
        if not (PRNO_INSTALLED >> (127 - fc)) & 1:
            self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)
            return
        r1, r2 = b[3] >> 4, b[3] & 0xF
        if fc == PRNO_QUERY:
            if self.privileged._write(t, t.gpr[1], PRNO_INSTALLED.to_bytes(16, "big"), ilen):
                t.cc = 0
            return
        if r1 & 1 or r1 == 0 or r2 & 1 or r2 == 0:
            self.m.irq.program_interrupt(t, lc.PGM_SPECIFICATION, ilen)
            return
        for r in (r1, r2):             # the raw-entropy buffer, then the conditioned one
            addr, length = t.gpr[r], t.gpr[r + 1]
            while length:
                n = min(length, PRNO_CHUNK)
                if not self.privileged._write(t, addr, self.entropy.randbytes(n), ilen):
                    return
                addr, length = (addr + n) & MASK64, length - n
                t.gpr[r], t.gpr[r + 1] = addr, length
        t.cc = 0

    def sck(self, t, b, ilen) -> None:
        raise Halt(1, f"SCK (set the TOD clock) at {t.pc:#x} is not modelled", addr=t.pc)

    def channel_io(self, t, b, ilen) -> None:
        """A channel subsystem with no subchannel, as QEMU's with no CCW device."""
        op2 = b[1]
        if op2 == 0x39:                          # STCRW: no report pending, zeros stored
            addr = s_addr(t, b)
            if self.m.irq.write_operand(t, addr, bytes(4)):
                t.cc = CC_NO_CRW
            else:
                self.m.irq.program_interrupt(t, lc.PGM_ADDRESSING, ilen)
        elif op2 == 0x36:                        # TPI: no I/O interruption pending
            t.cc = 0
        elif op2 in (0x37, 0x3C):                # SAL, SCHM: accepted, nothing to do
            pass
        elif op2 == 0x5F:
            self._chsc(t, b, ilen)
        else:                                    # no such subchannel or channel path
            t.cc = CC_NOT_OPERATIONAL

    def _chsc(self, t, b, ilen) -> None:
        r1 = b[3] >> 4
        req = t.gpr[r1]
        head = self.m.irq.read_operand(t, req, 4)
        if head is None:
            self.m.irq.program_interrupt(t, lc.PGM_ADDRESSING, ilen)
            return
        length = int.from_bytes(head[0:2], "big")
        response = (8).to_bytes(2, "big") + CHSC_RESPONSE_INVALID_COMMAND.to_bytes(2, "big") + bytes(4)
        if not self.m.irq.write_operand(t, req + length, response):
            self.m.irq.program_interrupt(t, lc.PGM_ADDRESSING, ilen)
            return
        t.cc = 0
