"""One s390x CPU and its memory under unicorn, with the trap path of cbits/trap.c.

The guest runs in problem state so that every privileged instruction, the
zPCI family included, raises a program exception (UC_HOOK_INTR intno 3)
instead of running as unicorn's silent no-op.  The C hook hands each one to
Python once: zPCI instructions go to the firmware model, the privileged
instructions of a bare-metal guest to emulator.cpu.privileged.  Everything the
guest can observe of the PSW is kept here as the guest's view; unicorn's copy
differs only by the problem-state bit and the interruption masks, which the
guest never sees (stored PSWs, STOSM/STNSM and EPSW show the guest's view).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, UC_PROT_ALL, Uc, UcError
from unicorn import s390x_const as sc

from emulator.cpu import lowcore as lc
from emulator._native import ffi, lib
from emulator.decode import INSN_LENGTHS, to_decoded
from emulator.errors import UserError
from firmware_model.guest import MASK64
from firmware_model.insns import TABLE

EXCP_SVC = 2
EXCP_PGM = 3
REG_CR0 = sc.UC_S390X_REG_CR0
REG_PSWM = sc.UC_S390X_REG_PSWM
REG_PC = sc.UC_S390X_REG_PC
# bits of the guest PSW that unicorn never gets
HIDDEN = lc.PSW_MASK_INTERRUPTS | lc.PSW_MASK_WAIT | lc.PSW_MASK_PSTATE

DEFAULT_MAX_INSNS = 2_000_000_000
# blocks between two calls of the poll callback (~10 ms of guest code)
POLL_BLOCKS = 1 << 20
# (first, second byte) of the unprivileged instructions hooked by address
SENSITIVE = {(0xB9, 0x8D), (0xB2, 0xB0)}     # EPSW, STFLE


def _unicorn_library() -> str:
    """Path of the libunicorn the Python binding has loaded."""
    try:
        from unicorn.unicorn_py3 import unicorn as binding
        name = getattr(binding.uclib, "_name", None)
        if name:
            return name
    except (ImportError, AttributeError):
        pass
    import unicorn
    return str(Path(unicorn.__file__).parent / "lib" / "libunicorn.so.2")


def _engine_handle(uc: Uc) -> int:
    h = getattr(uc, "_uch", None)
    value = getattr(h, "value", None)
    if not value:
        raise RuntimeError("cannot reach the unicorn engine handle (unicorn binding changed?)")
    return int(value)


class Halt(Exception):
    """Ends a run: the guest quiesced, stopped, or did what we cannot emulate."""

    def __init__(self, exit_code: int, message: str | None):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


class UcGuest:
    """firmware_model.guest.Guest over the trap context: GPRs and absolute memory.

    ``gpr`` is the C-level item getter of the trap context's GPR array (the
    model calls it several times per instruction, so no Python frame is spent
    on it); ``set_gpr`` writes the same array, which cbits/trap.c writes back
    to unicorn after the callback.  Memory goes straight to unicorn through
    trap.c's helpers; reads of up to READ_BUF bytes reuse one buffer.
    """

    __slots__ = ("gprs", "gpr", "set_gpr", "problem_state", "_t", "_size", "_buf", "_chars",
                 "_mem_read", "_mem_write", "_unpack")

    READ_BUF = 4096

    def __init__(self, t, size: int):
        self._t = t
        self.gprs = gprs = t.gpr
        self.gpr = gprs.__getitem__
        self.set_gpr = _gpr_setter(gprs)
        self._size = size
        self._buf = ffi.new("uint8_t[]", self.READ_BUF)
        self._chars = ffi.cast("char *", self._buf)     # ffi.unpack of a char * gives bytes
        self._mem_read = lib.trap_mem_read
        self._mem_write = lib.trap_mem_write
        self._unpack = ffi.unpack
        self.problem_state = False

    def read(self, addr: int, size: int) -> bytes | None:
        if addr < 0 or size < 0 or addr + size > self._size:
            return None
        if size > self.READ_BUF:
            buf = ffi.new("uint8_t[]", size)
            if self._mem_read(self._t, addr, buf, size):
                return None
            return ffi.buffer(buf, size)[:]
        if size and self._mem_read(self._t, addr, self._buf, size):
            return None
        return self._unpack(self._chars, size)

    def write(self, addr: int, data: bytes) -> bool:
        n = len(data)
        if addr < 0 or addr + n > self._size:
            return False
        if data.__class__ is not bytes:
            data = bytes(data)
        if n and self._mem_write(self._t, addr, data, n):
            return False
        return True


def _gpr_setter(gprs):
    def set_gpr(r: int, value: int) -> None:
        gprs[r] = value & MASK64
    return set_gpr


# --- the extern "Python" functions of cbits/trap_cdef.h ------------------------------
# cbits/trap.c calls these three by name for the rare traps (privileged
# instructions other than zPCI, the block hook, the poll); UcMachine.run
# attaches the running machine's handlers to them (ffi.def_extern again,
# ~1 us) for the length of its trap_run and restores the previous ones
# afterwards, so a machine run from inside another machine's callback works
# too.  Outside any run the idle handlers below are attached: they stop a run
# nobody attached to.  (cffi itself keeps the last machine's handlers
# referenced, measured: that one machine is freed once another machine has
# run.)  The zPCI callback, once per zPCI instruction, is not among them:
# trap_run takes it as a Python object and trap.c calls it directly, which
# saves cffi's extern "Python" entry and exit (~0.19 us a call).
_EXTERNS = ("trap_py_other", "trap_py_block", "trap_py_poll")


def _idle_stop(*_args) -> int:
    return 1


def _idle_block(*_args) -> None:
    return None


_IDLE = ((_idle_stop, None), (_idle_block, None), (_idle_stop, None))
_attached: tuple = ()


def _attach(handlers: tuple) -> tuple:
    """Attaches ((other, onerror), (block, onerror), (poll, onerror)).

    Returns what was attached before, for the caller to attach again.
    """
    global _attached
    previous = _attached
    if handlers is not previous:
        for name, (fn, onerror) in zip(_EXTERNS, handlers):
            ffi.def_extern(name=name, onerror=onerror)(fn)
        _attached = handlers
    return previous


def _object_pointer(obj):
    """``obj`` as the ``PyObject *`` trap_run takes (a ``void *`` in the cdef).

    In CPython ``id()`` is the object's address.  The pointer is only valid
    while the caller keeps ``obj`` referenced; trap_run takes its own
    reference for the run and drops it at the end.
    """
    return ffi.cast("void *", id(obj))


if sys.implementation.name != "cpython":     # id() is an address only there
    raise ImportError("emulator.cpu.machine needs CPython (trap_run takes PyObject pointers)")

_attach(_IDLE)


@dataclass
class RunStats:
    insns: int = 0
    zpci: list = field(default_factory=lambda: [0] * len(TABLE))
    privileged: dict = field(default_factory=dict)      # mnemonic -> count
    program_interruptions: dict = field(default_factory=dict)   # code -> count
    blocks: int = 0


class UcMachine:
    """The CPU, its memory and the trap path; ``run()`` boots an image."""

    def __init__(self, memory_size: int, zpci_handler, console_out, *, console: bool = True,
                 count: bool = True, block_hook=None, max_insns: int = DEFAULT_MAX_INSNS,
                 pci_configure=None, pci_deconfigure=None):
        from emulator.cpu.sclp import Sclp
        from emulator.cpu import privileged

        if lib.trap_bind(_unicorn_library().encode()) != 0:
            raise RuntimeError(ffi.string(lib.trap_last_error()).decode())
        self.memory_size = memory_size
        self.uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        try:
            self.uc.mem_map(0, memory_size, UC_PROT_ALL)
        except UcError as exc:
            raise UserError(f"cannot map {memory_size >> 20} MiB of guest memory: {exc}",
                            where="-m", exit_code=2) from None
        self.t = ffi.new("trap_state *")
        self.t.insn_limit = max_insns
        self.max_insns = max_insns
        self.guest = UcGuest(self.t, memory_size)
        self.zpci_handler = zpci_handler
        self.privileged = privileged.Privileged(self)
        self.sclp = Sclp(console_out, memory_size, console=console,
                         pci_configure=pci_configure, pci_deconfigure=pci_deconfigure)
        self.stats = RunStats()
        self.prefix = 0
        self.psw_hidden = 0          # guest's I/O, external, machine-check mask bits
        self.pstate = False          # the guest's own problem-state bit
        self.halted: Halt | None = None
        self.hooked_sites = 0
        self._error = None
        self._block_hook = block_hook
        t = self.t
        self._sites: list = [None] * lib.TRAP_SITES
        self._on_zpci = self._make_on_zpci()
        self._handlers = ((lambda: self._on_other(t), self._on_error),
                          (self._on_block, self._on_error_void),
                          (self._on_poll, self._on_error))
        t.poll_interval = POLL_BLOCKS
        rc = lib.trap_install(t, _engine_handle(self.uc), 1 if count else 0,
                              1 if block_hook else 0)
        if rc != 0:
            raise RuntimeError(ffi.string(lib.trap_last_error()).decode())
        # QEMU's initial CPU reset values of the control registers
        for i in range(16):
            self.uc.reg_write(REG_CR0 + i, 0)
        self.uc.reg_write(REG_CR0, lc.CR0_RESET)
        self.uc.reg_write(REG_CR0 + 14, lc.CR14_RESET)

    # --- memory ----------------------------------------------------------------
    def load(self, image) -> None:
        from emulator.cpu.elf_load import PF_X
        for seg in image.segments:
            if seg.data:
                self.uc.mem_write(seg.addr, seg.data)
            if seg.flags & PF_X:
                self.hook_sensitive(seg.addr, seg.data)

    def hook_sensitive(self, addr: int, code: bytes) -> int:
        """Hooks every EPSW and STFLE in ``code`` (walked by instruction length).

        Both are unprivileged, so they would run inside unicorn: EPSW would
        show the problem-state bit, STFLE unicorn's facility list.  Code the
        guest writes at run time is not scanned.
        """
        n = 0
        off, end = 0, len(code)
        lengths = INSN_LENGTHS
        while off + 2 <= end:
            b0 = code[off]
            ilen = lengths[b0]
            if ilen == 4 and off + 4 <= end and (b0, code[off + 1]) in SENSITIVE:
                if lib.trap_hook_at(self.t, addr + off) != 0:
                    raise RuntimeError(ffi.string(lib.trap_last_error()).decode())
                n += 1
            off += ilen
        self.hooked_sites += n
        return n

    def read(self, addr: int, size: int) -> bytes | None:
        return self.guest.read(addr, size)

    def write(self, addr: int, data: bytes) -> bool:
        return self.guest.write(addr, data)

    def real_to_abs(self, addr: int) -> int:
        """Prefixing: the lowcore pages of the CPU swap with the prefix area."""
        p = self.prefix
        if addr < lc.LOWCORE_SIZE:
            return addr + p
        if p <= addr < p + lc.LOWCORE_SIZE:
            return addr - p
        return addr

    def read_real(self, addr: int, size: int) -> bytes | None:
        return self.read(self.real_to_abs(addr), size)

    def write_real(self, addr: int, data: bytes) -> bool:
        return self.write(self.real_to_abs(addr), data)

    # --- PSW -------------------------------------------------------------------
    def guest_mask(self, uc_mask: int) -> int:
        """The PSW mask as the guest knows it, from unicorn's."""
        m = (uc_mask & ~HIDDEN) | self.psw_hidden
        return m | lc.PSW_MASK_PSTATE if self.pstate else m

    def uc_mask(self, guest_mask: int) -> int:
        """Unicorn's PSW mask for a guest PSW mask, remembering the hidden bits."""
        self.psw_hidden = guest_mask & (lc.PSW_MASK_INTERRUPTS | lc.PSW_MASK_WAIT)
        self.pstate = self.guest.problem_state = bool(guest_mask & lc.PSW_MASK_PSTATE)
        return (guest_mask & ~HIDDEN) | lc.PSW_MASK_PSTATE

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

    def odd_fetch(self, t, mask: int, addr: int, how: str) -> None:
        """Specification exception for fetching at the odd address of PSW (mask, addr).

        The architecture leaves the ILC unpredictable; lowcore.ODD_ADDRESS_ILEN
        (2, as QEMU 8.0+ and the hardware of kvm-unit-tests s390x/spec_ex) is
        what the old PSW's address is advanced by.
        """
        self.psw_exception(t, mask, (addr + lc.ODD_ADDRESS_ILEN) & MASK64, lc.ODD_ADDRESS_ILEN,
                           f"the odd instruction address {addr:#x} {how}")

    def psw_exception(self, t, old_mask: int, old_addr: int, ilen: int, what: str) -> None:
        """The specification exception of a PSW, with old PSW and ILC as given."""
        code = lc.PGM_SPECIFICATION
        s = self.stats.program_interruptions
        s[code] = s.get(code, 0) + 1
        self.write_real(lc.PGM_ILEN, ilen.to_bytes(2, "big"))
        self.write_real(lc.PGM_CODE, code.to_bytes(2, "big"))
        self.write_real(lc.PROGRAM_OLD_PSW, lc.psw_bytes(old_mask, old_addr))
        self._enter_program_new(t, f"program interruption {code:#04x} for {what} at {t.pc:#x}")

    def _enter_program_new(self, t, what: str) -> None:
        """Continues at the program-new PSW, unless that would only repeat the interruption.

        A program-new PSW that is invalid or has an odd address raises a
        specification exception that loads it again, for ever (QEMU 7.2 spins
        too); the run stops with one line instead.
        """
        mask, addr = self._new_psw(lc.PROGRAM_NEW_PSW)
        if mask == 0 and addr == 0:
            raise Halt(1, f"{what} with no program-new PSW set")
        why = lc.psw_invalid(mask, addr)
        if why is None and lc.fetches_odd(mask, addr):
            why = "its instruction address is odd"
        if why is not None:
            raise Halt(1, f"{what}: the program-new PSW {mask:016x} {addr:016x} is invalid "
                          f"({why}), so program interruptions would repeat forever")
        self.set_psw(t, mask, addr)

    def _new_psw(self, where: int) -> tuple[int, int]:
        """The (mask, address) of the new PSW an interruption loads from lowcore ``where``."""
        new = self.read_real(where, 16)
        return int.from_bytes(new[:8], "big"), int.from_bytes(new[8:], "big")

    def set_psw(self, t, mask: int, addr: int) -> None:
        """Continue at a new PSW that is valid: checks waits and interrupts."""
        t.new_pswm = self.uc_mask(mask)
        t.set_pswm = 1
        t.cc = -1
        t.next_pc = addr
        if mask & lc.PSW_MASK_WAIT:
            self._wait(t, mask, addr)

    def _wait(self, t, mask: int, addr: int) -> None:
        if not mask & lc.PSW_MASK_INTERRUPTS:
            if addr & 0xFFF == 0xFFF:
                raise Halt(0, None)
            raise Halt(1, f"guest entered a disabled wait: PSW {mask:016x} {addr:016x}")
        if self.deliverable_external():
            self.deliver_external(t)
            return
        raise Halt(1, f"guest entered an enabled wait with no interruption pending "
                      f"(QEMU would wait forever): PSW {mask:016x} {addr:016x}")

    def deliverable_external(self) -> bool:
        if self.sclp.pending_param is None or not self.psw_hidden & lc.PSW_MASK_EXT:
            return False
        return bool(self.uc.reg_read(REG_CR0) & lc.CR0_SERVICE_SC)

    def deliver_external(self, t) -> None:
        """The service-signal external interruption QEMU raises after SERVC."""
        param = self.sclp.pending_param
        self.sclp.pending_param = None
        self.write_real(lc.EXT_INT_CODE, lc.EXT_SERVICE.to_bytes(2, "big"))
        self.write_real(lc.EXT_PARAMS, (param & 0xFFFFFFFF).to_bytes(4, "big"))
        old_mask = self.current_mask(t)
        old_addr = t.next_pc
        self.write_real(lc.EXT_OLD_PSW, lc.psw_bytes(old_mask, old_addr))
        self.load_psw(t, *self._new_psw(lc.EXT_NEW_PSW))

    def check_interrupts(self, t) -> None:
        """After an instruction that may enable one: deliver what is pending."""
        if self.deliverable_external():
            self.deliver_external(t)

    def program_interrupt(self, t, code: int, ilen: int) -> None:
        """Deliver a program interruption for the instruction at t.pc (QEMU's rules)."""
        s = self.stats.program_interruptions
        s[code] = s.get(code, 0) + 1
        old_addr = t.pc + ilen if code in lc.ADVANCING_PGM else t.pc
        old_mask = self.guest_mask(t.pswm)   # CC as before the instruction
        self.write_real(lc.PGM_ILEN, ilen.to_bytes(2, "big"))
        self.write_real(lc.PGM_CODE, code.to_bytes(2, "big"))
        self.write_real(lc.PROGRAM_OLD_PSW, lc.psw_bytes(old_mask, old_addr & MASK64))
        self._enter_program_new(t, f"program interruption {code:#04x} at {t.pc:#x} "
                                   f"(instruction {self.insn_hex(t)})")

    def insn_hex(self, t) -> str:
        return bytes(t.bytes[0:min(t.d.ilen, t.nbytes)]).hex() or "(unreadable)"

    # --- callbacks from cbits/trap.c --------------------------------------------
    def _on_error(self, exc_type, exc, tb):
        if self._error is None:
            self._error = exc
        return 1

    def _on_zpci_error(self, exc) -> None:
        """trap_run's error callable: an exception the zPCI callback raised."""
        if self._error is None:
            self._error = exc

    def _on_error_void(self, exc_type, exc, tb):
        if self._error is None:
            self._error = exc
        self.uc.emu_stop()

    def _make_on_zpci(self):
        """The zPCI callable of this machine's trap_run, with everything it needs bound locally.

        cbits/trap.c has decoded the instruction into ``t.d`` (counted per
        table row in ``t.zpci_counts``) and read the GPRs into ``t.gpr``, which
        the guest adapter serves.  The model gets a Python ``Decoded``, whose
        attributes it reads several times each: one per instruction site,
        made again only when trap.c reports the site's slot refilled
        (argument ``s`` with ``TRAP_SITE_NEW``: another address, or the code
        at it changed).  A condition code goes back in the return value.
        trap.c calls it directly; an exception it raises goes to
        ``_on_zpci_error`` and stops the run.
        """
        t = self.t
        cd = t.d
        guest = self.guest
        handler = self.zpci_handler
        machine = self
        cut = getattr(self._block_hook, "cut", None)
        sites = self._sites
        site_new = lib.TRAP_SITE_NEW
        resume_cc = lib.TRAP_RESUME_CC

        def on_zpci(s: int) -> int:
            if s < site_new:
                d = sites[s]
            else:
                d = sites[s - site_new] = to_decoded(cd)
            if cut is not None:
                cut(d.addr, d.ilen)
            try:
                comp = handler(d, guest).completion
                if comp.pgm is not None:
                    machine.program_interrupt(t, comp.pgm, d.ilen)
                elif comp.cc is not None:
                    return resume_cc | comp.cc
            except Halt as h:
                machine.halted = h
                return 1
            return 0

        return on_zpci

    def _on_other(self, t) -> int:
        odd = t.intno == lib.TRAP_INTNO_ODD_FETCH
        cut = getattr(self._block_hook, "cut", None)
        if cut is not None and not odd:
            # the trapping instruction ends the block that was running (an
            # odd-fetch trap has no instruction, and its block never ran)
            cut(t.pc, t.d.ilen)
        try:
            if odd:
                # a branch reached an odd address; the PSW there is the
                # current one (the branch completed)
                self.odd_fetch(t, self.guest_mask(t.pswm), t.pc, "branched to")
            elif t.intno == EXCP_SVC:
                self._svc(t)
            elif t.intno == EXCP_PGM or t.intno == lib.TRAP_INTNO_HOOKED:
                self.privileged.handle(t)
            else:
                raise Halt(1, f"unexpected unicorn exception {t.intno} at {t.pc:#x}")
        except Halt as h:
            if h.exit_code == 0 and t.counting:
                t.insns += 1        # the quiescing LPSWE did complete
            self.halted = h
            return 1
        return 0

    def _on_poll(self) -> int:
        """Runs now and then so Python handles signals (Ctrl-C) during a long run."""
        return 0

    def _on_block(self, addr, size) -> None:
        self._block_hook(addr, size)

    def _svc(self, t) -> None:
        code = t.bytes[1] if t.nbytes >= 2 else 0
        self.write_real(lc.SVC_ILEN, (2).to_bytes(2, "big"))
        self.write_real(lc.SVC_CODE, code.to_bytes(2, "big"))
        self.write_real(lc.SVC_OLD_PSW, lc.psw_bytes(self.guest_mask(t.pswm), t.pc + 2))
        mask, addr = self._new_psw(lc.SVC_NEW_PSW)
        if mask == 0 and addr == 0:
            raise Halt(1, f"SVC {code} at {t.pc:#x} with no SVC-new PSW set")
        self.load_psw(t, mask, addr)

    def _odd_end(self, pc: int) -> Halt | None:
        """The odd-fetch exception at ``pc`` outside a hook; the Halt if it ends the run."""
        t = self.t
        t.pc = t.next_pc = pc
        t.nbytes = 0
        t.pswm = self.uc.reg_read(REG_PSWM)
        t.set_pswm, t.cc = 0, -1
        try:
            self.odd_fetch(t, self.guest_mask(t.pswm), pc, "branched to")
        except Halt as h:
            return h
        if t.set_pswm:
            self.uc.reg_write(REG_PSWM, t.new_pswm)
        self.uc.reg_write(REG_PC, t.next_pc)
        return None

    # --- running ------------------------------------------------------------------
    def run(self, entry: int, mask: int = lc.IPL_PSW_MASK) -> Halt:
        """Runs from (mask, entry) until the guest halts; returns why."""
        t = self.t
        self.halted = None
        self.uc.reg_write(REG_PSWM, self.uc_mask(mask))
        pc = entry
        # referenced here for the whole loop: trap_run gets their addresses
        on_zpci, on_error = self._on_zpci, self._on_zpci_error
        zpci_ptr, error_ptr = _object_pointer(on_zpci), _object_pointer(on_error)
        while True:
            previous = _attach(self._handlers)
            try:
                err = lib.trap_run(t, pc, zpci_ptr, error_ptr)
            finally:
                _attach(previous)
            self.stats.insns = t.insns
            self.stats.blocks = t.blocks
            self.stats.zpci = list(t.zpci_counts[0:len(TABLE)])
            if self._error is not None:
                exc, self._error = self._error, None
                if isinstance(exc, (UserError, KeyboardInterrupt)) or \
                        os.environ.get("ZPCI_EMU_DEBUG"):
                    raise exc
                # a guest drove the model somewhere it fails: one line, not a traceback
                return Halt(1, f"internal error at {t.pc:#x} (instruction {self.insn_hex(t)}): "
                               f"{type(exc).__name__}: {exc} (ZPCI_EMU_DEBUG=1 for a traceback)")
            text = ffi.string(t.error_text).decode("utf-8", "replace")
            if text:
                # trap.c could not hand a zPCI trap to Python (see TRAP_STOP_ERROR)
                return Halt(1, f"internal error at {t.pc:#x} (instruction {self.insn_hex(t)}): "
                               f"{text}")
            if self.halted is not None:
                return self.halted
            if t.stop == lib.TRAP_STOP_LIMIT:
                return Halt(1, f"guest ran more than {self.max_insns} instructions "
                               f"(--max-insns) without quiescing; stopped at "
                               f"{self.uc.reg_read(REG_PC):#x}")
            if t.stop == lib.TRAP_STOP_UNMAPPED:
                return Halt(1, f"guest accessed {t.fault_addr:#x}, beyond its "
                               f"{self.memory_size >> 20} MiB of memory (instruction near "
                               f"{t.fault_pc:#x})")
            pc = self.uc.reg_read(REG_PC)
            if err != 0:
                return Halt(1, f"unicorn stopped at {pc:#x}: error {err}")
            if t.stop == lib.TRAP_STOP_NONE:
                # uc_emu_start returned by itself: only reaching its end
                # address, 1, does that, before any block hook could see the
                # odd address; it is the odd fetch the hook would report
                if pc & 1:
                    halt = self._odd_end(pc)
                    if halt is not None:
                        return halt
                    pc = self.t.next_pc
                    continue
                return Halt(1, f"emulation ended unexpectedly at {pc:#x}")
            # TRAP_STOP_PYTHON without a halt: resume where the hook left PC

