"""The guest's PSW and the interruptions that swap it (program, SVC, external, I/O).

Unicorn keeps a PSW of its own; the guest's view differs from it by the
bits this module keeps aside (``psw_hidden``: the I/O, external and
machine-check masks and the wait bit, plus the guest's own problem-state
bit), because the guest runs in problem state under unicorn.  Every
interruption is a PSW swap through the lowcore, written here with QEMU
7.2's field values: old PSW, interruption code and parameters stored, new
PSW loaded and checked as the architecture says.

A supervisor-state guest (a Linux kernel, ``supervisor=True``) runs with
its own PSW under unicorn: nothing is kept aside, its operands are virtual
addresses when DAT is on, its prefix is read from the CPU at each trap, and
the TOD clock and clock comparator of cbits/trap_super.h add the
clock-comparator external interruption (before the service signal, as
QEMU orders them); an enabled wait moves the clock to the comparator.

Pending interruptions: the service signal SCLP raises (external, subclass
mask CR0 bit 54) and the I/O interruptions of a ``Flic``
(firmware_model/irq.py: the zPCI bus's adapter interruptions, or any
``IoInterruption`` queued with ``make_io_pending``), delivered when the PSW's
I/O mask is on and CR6 enables the interruption's subclass: the lowest ISC
first, within it the newest, as QEMU's FLIC hands them out.  External
interruptions go first, as in QEMU's s390_cpu_do_interrupt.
"""
from __future__ import annotations

from emulator._native import ffi, lib
from emulator.cpu import lowcore as lc
from emulator.cpu.native import REG_CR0
from emulator.cpu.records import Halt, insn_hex
from firmware_model.guest import MASK64
from firmware_model.irq import Flic, IoInterruption

# bits of the guest PSW that unicorn never gets
HIDDEN = lc.PSW_MASK_INTERRUPTS | lc.PSW_MASK_WAIT | lc.PSW_MASK_PSTATE


class Interrupts:
    """PSW state and interruption delivery of one CPU.

    ``memory`` reaches absolute guest storage (read(addr, n), write(addr,
    data)); lowcore fields are real addresses, prefixed here.
    """

    def __init__(self, uc, memory, guest, stats, sclp, t=None, supervisor: bool = False,
                 flic: Flic | None = None):
        self.uc = uc
        self.t = t
        self.supervisor = supervisor
        # the PSW bits unicorn does not get, and those it always gets
        self.hidden = 0 if supervisor else HIDDEN
        self.kept = 0 if supervisor else lc.PSW_MASK_INTERRUPTS | lc.PSW_MASK_WAIT
        self.forced = 0 if supervisor else lc.PSW_MASK_PSTATE
        self.memory = memory
        self.guest = guest              # its problem_state follows the guest PSW
        self.stats = stats
        self.sclp = sclp
        self.prefix = 0
        self.psw_hidden = 0             # guest's I/O, external, machine-check mask bits
        self.pstate = False             # the guest's own problem-state bit
        self.flic = flic if flic is not None else Flic()   # pending I/O interruptions

    # --- real storage ------------------------------------------------------------
    def real_to_abs(self, addr: int) -> int:
        """Prefixing: the lowcore pages of the CPU swap with the prefix area."""
        # a kernel sets its prefix natively: trap.c reads it at each trap
        p = self.t.prefix if self.supervisor else self.prefix
        if addr < lc.LOWCORE_SIZE:
            return addr + p
        if p <= addr < p + lc.LOWCORE_SIZE:
            return addr - p
        return addr

    def read_real(self, addr: int, size: int) -> bytes | None:
        return self.memory.read(self.real_to_abs(addr), size)

    def write_real(self, addr: int, data: bytes) -> bool:
        return self.memory.write(self.real_to_abs(addr), data)

    def read_operand(self, t, addr: int, size: int) -> bytes | None:
        """An instruction's storage operand: virtual under DAT, else real."""
        if self.supervisor and t.pswm & lc.PSW_MASK_DAT:
            buf = ffi.new("uint8_t[]", size)
            if size and lib.trap_vmem_read(t, addr, buf, size):
                return None
            return ffi.buffer(buf, size)[:]
        return self.read_real(addr, size)

    def write_operand(self, t, addr: int, data: bytes) -> bool:
        if self.supervisor and t.pswm & lc.PSW_MASK_DAT:
            return not (data and lib.trap_vmem_write(t, addr, data, len(data)))
        return self.write_real(addr, data)

    def _store(self, fields) -> None:
        """Stores (real address, size, value) lowcore fields."""
        for addr, size, value in fields:
            self.write_real(addr, value.to_bytes(size, "big"))

    # --- the guest's PSW -----------------------------------------------------------
    def guest_mask(self, uc_mask: int) -> int:
        """The PSW mask as the guest knows it, from unicorn's."""
        m = (uc_mask & ~self.hidden) | self.psw_hidden
        return m | lc.PSW_MASK_PSTATE if self.pstate and self.hidden else m

    def uc_mask(self, guest_mask: int) -> int:
        """Unicorn's PSW mask for a guest PSW mask, remembering the hidden bits."""
        self.psw_hidden = guest_mask & self.kept
        self.pstate = self.guest.problem_state = bool(guest_mask & lc.PSW_MASK_PSTATE)
        return (guest_mask & ~self.hidden) | self.forced

    def psw_enabled(self, t, bit: int) -> bool:
        """Whether the guest's PSW at the trap has mask ``bit`` on."""
        return bool(self.current_mask(t) & bit)

    def current_mask(self, t) -> int:
        """Guest PSW mask at the trap, with the CC Python may have set already."""
        m = self.guest_mask(t.new_pswm if t.set_pswm else t.pswm)
        if t.cc >= 0:
            m = (m & ~lc.PSW_MASK_CC) | (t.cc << 44)
        return m

    def load_psw(self, t, mask: int, addr: int) -> None:
        """A PSW that LPSW, LPSWE or an interruption loads, checked as the architecture says.

        An invalid PSW (lowcore.psw_invalid) is an early specification
        exception: the PSW is loaded and the interruption follows at once,
        ILC 0, the old PSW being the invalid one as loaded.  An odd address is
        recognised when the next instruction would be fetched, so nothing runs
        there (odd_fetch).  QEMU 7.2 checks neither (docs/deviations.md).
        """
        if lc.psw_invalid(mask, addr):
            self.psw_exception(t, mask, addr, lc.EARLY_PSW_ILEN,
                               f"the invalid PSW {mask:016x} {addr:016x} loaded")
        elif lc.fetches_odd(mask, addr):
            self.odd_fetch(t, mask, addr, "loaded")
        else:
            self.set_psw(t, mask, addr)

    def set_psw(self, t, mask: int, addr: int) -> None:
        """Continue at a new PSW that is valid: checks waits and interrupts."""
        t.new_pswm = self.uc_mask(mask)
        t.set_pswm = 1
        t.cc = -1
        t.next_pc = addr
        if mask & lc.PSW_MASK_WAIT:
            self._wait(t, mask, addr)
        elif mask & lc.PSW_MASK_IO and self.deliverable_io(t):
            self.deliver_pending(t)

    def new_psw(self, where: int) -> tuple[int, int]:
        """The (mask, address) of the new PSW an interruption loads from lowcore ``where``."""
        new = self.read_real(where, 16)
        return int.from_bytes(new[:8], "big"), int.from_bytes(new[8:], "big")

    def _swap(self, t, old: int, new: int, old_mask: int, old_addr: int) -> None:
        """Stores the old PSW at ``old`` and loads the new one from ``new``."""
        self.write_real(old, lc.psw_bytes(old_mask, old_addr & MASK64))
        self.load_psw(t, *self.new_psw(new))

    def _wait(self, t, mask: int, addr: int) -> None:
        if not mask & lc.PSW_MASK_INTERRUPTS:
            if addr & 0xFFF == 0xFFF:
                raise Halt(0, None)
            raise Halt(1, f"guest entered a disabled wait: PSW {mask:016x} {addr:016x}",
                       addr=t.pc)
        if self.deliver_pending(t):
            return
        if self.supervisor and self._ckc_enabled(t) and t.ckc != MASK64:
            # nothing else can end the wait: the clock runs on to the comparator
            now = lib.trap_tod_now(t)
            if t.ckc >= now:
                t.tod_base += t.ckc + 1 - now
                lib.trap_set_ckc(t, t.ckc)
            if self.deliver_pending(t):
                return
        raise Halt(1, f"guest entered an enabled wait with no interruption pending "
                      f"(QEMU would wait forever): PSW {mask:016x} {addr:016x}")

    # --- program interruptions ---------------------------------------------------
    def program_interrupt(self, t, code: int, ilen: int) -> None:
        """Deliver a program interruption for the instruction at t.pc (QEMU's rules)."""
        self.stats.count_program(code)
        old_addr = t.pc + ilen if code in lc.ADVANCING_PGM else t.pc
        old_mask = self.guest_mask(t.pswm)   # CC as before the instruction
        self._store_program(code, ilen, old_mask, old_addr)
        self._enter_program_new(t, lambda: f"program interruption {code:#04x} at {t.pc:#x} "
                                           f"(instruction {insn_hex(t)})")

    def psw_exception(self, t, old_mask: int, old_addr: int, ilen: int, what: str) -> None:
        """The specification exception of a PSW, with old PSW and ILC as given."""
        code = lc.PGM_SPECIFICATION
        self.stats.count_program(code)
        self._store_program(code, ilen, old_mask, old_addr)
        self._enter_program_new(t, lambda: f"program interruption {code:#04x} for {what} "
                                           f"at {t.pc:#x}")

    def odd_fetch(self, t, mask: int, addr: int, how: str) -> None:
        """Specification exception for fetching at the odd address of PSW (mask, addr).

        The architecture leaves the ILC unpredictable; lowcore.ODD_ADDRESS_ILEN
        (2, as QEMU 8.0+ and the hardware of kvm-unit-tests s390x/spec_ex) is
        what the old PSW's address is advanced by.
        """
        self.psw_exception(t, mask, (addr + lc.ODD_ADDRESS_ILEN) & MASK64, lc.ODD_ADDRESS_ILEN,
                           f"the odd instruction address {addr:#x} {how}")

    def _store_program(self, code: int, ilen: int, old_mask: int, old_addr: int) -> None:
        self._store(((lc.PGM_ILEN, 2, ilen), (lc.PGM_CODE, 2, code)))
        self.write_real(lc.PROGRAM_OLD_PSW, lc.psw_bytes(old_mask, old_addr & MASK64))

    def _enter_program_new(self, t, what) -> None:
        """Continues at the program-new PSW, unless that would only repeat the interruption.

        A program-new PSW that is invalid or has an odd address raises a
        specification exception that loads it again, for ever (QEMU 7.2 spins
        too); the run stops with one line instead.  ``what()`` names the
        interruption in that line: made only then (a kernel takes thousands of
        page faults).
        """
        mask, addr = self.new_psw(lc.PROGRAM_NEW_PSW)
        if mask == 0 and addr == 0:
            raise Halt(1, f"{what()} with no program-new PSW set", addr=t.pc)
        why = lc.psw_invalid(mask, addr)
        if why is None and lc.fetches_odd(mask, addr):
            why = "its instruction address is odd"
        if why is not None:
            raise Halt(1, f"{what()}: the program-new PSW {mask:016x} {addr:016x} is invalid "
                          f"({why}), so program interruptions would repeat forever")
        self.set_psw(t, mask, addr)

    # --- supervisor call -----------------------------------------------------------
    def svc(self, t) -> None:
        code = t.bytes[1] if t.nbytes >= 2 else 0
        self._store(((lc.SVC_ILEN, 2, 2), (lc.SVC_CODE, 2, code)))
        self.write_real(lc.SVC_OLD_PSW, lc.psw_bytes(self.guest_mask(t.pswm), t.pc + 2))
        mask, addr = self.new_psw(lc.SVC_NEW_PSW)
        if mask == 0 and addr == 0:
            raise Halt(1, f"SVC {code} at {t.pc:#x} with no SVC-new PSW set")
        self.load_psw(t, mask, addr)

    # --- external and I/O interruptions ----------------------------------------------
    def make_io_pending(self, io: IoInterruption) -> None:
        """Queues an I/O interruption; delivered once the guest enables its ISC
        (callable from any trap, the zPCI callable's included)."""
        self.flic.inject_io(io)
        if self.supervisor:
            self.sync_pending(self.t)

    def check_interrupts(self, t) -> None:
        """After an instruction that may enable one: deliver what is pending."""
        self.deliver_pending(t)

    def deliver_pending(self, t) -> bool:
        """Delivers the highest-priority enabled pending interruption; whether one was."""
        if self.deliverable_external(t):
            self.deliver_external(t)
            return True
        if self.deliverable_io(t):
            self.deliver_io(t)
            return True
        return False

    def _ext_enabled(self, t=None) -> bool:
        if self.supervisor:
            return t is not None and self.psw_enabled(t, lc.PSW_MASK_EXT)
        return bool(self.psw_hidden & lc.PSW_MASK_EXT)

    def _ckc_enabled(self, t) -> bool:
        return (self._ext_enabled(t)
                and bool(self.uc.reg_read(REG_CR0) & lc.CR0_CKC_SC))

    def _ckc_due(self, t) -> bool:
        return (self.supervisor and lib.trap_tod_now(t) > t.ckc and self._ckc_enabled(t))

    def deliverable_external(self, t=None) -> bool:
        if t is not None and self._ckc_due(t):
            return True
        if self.sclp.pending_param is None or not self._ext_enabled(t):
            return False
        return bool(self.uc.reg_read(REG_CR0) & lc.CR0_SERVICE_SC)

    def deliver_external(self, t) -> None:
        """The clock-comparator interruption once the clock passed it, else the
        service signal QEMU raises after SERVC."""
        if self._ckc_due(t):
            self._store(((lc.EXT_INT_CODE, 2, lc.EXT_CLOCK_COMP),))
            self._swap(t, lc.EXT_OLD_PSW, lc.EXT_NEW_PSW, self.current_mask(t), t.next_pc)
            return
        param = self.sclp.pending_param
        self.sclp.pending_param = None
        self._store(((lc.EXT_INT_CODE, 2, lc.EXT_SERVICE), (lc.EXT_PARAMS, 4, param & 0xFFFFFFFF)))
        self._swap(t, lc.EXT_OLD_PSW, lc.EXT_NEW_PSW, self.current_mask(t), t.next_pc)

    def deliverable_io(self, t=None) -> bool:
        """Whether an I/O interruption is pending for an ISC the PSW and CR6 enable."""
        flic = self.flic
        if not flic.pending:
            return False
        if not (self.psw_enabled(t, lc.PSW_MASK_IO) if self.supervisor and t is not None
                else self.psw_hidden & lc.PSW_MASK_IO):
            return False
        return flic.has_io(self.uc.reg_read(REG_CR0 + 6))

    def deliver_io(self, t) -> None:
        """The I/O interruption deliverable_io() found: its words at 0xb8-0xc3, the PSW swap."""
        io = self.flic.dequeue_io(self.uc.reg_read(REG_CR0 + 6))
        if self.supervisor:
            self.sync_pending(t)
        self._store(((lc.SUBCHANNEL_ID, 2, io.subchannel_id), (lc.SUBCHANNEL_NR, 2, io.subchannel_nr),
                     (lc.IO_INT_PARM, 4, io.parm), (lc.IO_INT_WORD, 4, io.word)))
        self._swap(t, lc.IO_OLD_PSW, lc.IO_NEW_PSW, self.current_mask(t), t.next_pc)

    def sync_pending(self, t) -> None:
        """Tells cbits/trap_super.h which subclasses have an interruption pending,
        so its block hook calls back as soon as the guest enables one."""
        t.pending_ext_sc = lc.CR0_SERVICE_SC if self.sclp.pending_param is not None else 0
        # the FLIC's byte of pending ISCs (0x80 >> isc) in CR6's position (bits 32-39)
        t.pending_io_isc = self.flic.pending << 24
