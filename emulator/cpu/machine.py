"""One s390x CPU and its memory under unicorn, and the run loop over cbits/trap.c.

The guest runs in problem state so that every privileged instruction, the
zPCI family included, raises a program exception (UC_HOOK_INTR intno 3)
instead of running as unicorn's silent no-op.  The C hook hands each one to
Python once: zPCI instructions go to the firmware model (the callable built
by ``_make_on_zpci``), the privileged instructions of a bare-metal guest to
emulator.cpu.privileged, SVCs and odd fetches to emulator.cpu.interrupts,
which also keeps the guest's view of the PSW.  ``run`` calls trap_run until
the guest halts and turns every way a run can end into a ``Halt``.

The jobs around it: emulator.cpu.native (libunicorn and the cffi trap
registry), emulator.cpu.guest (the adapter the model sees),
emulator.cpu.interrupts (PSW and interruptions), emulator.cpu.privileged.
"""
from __future__ import annotations

import os

from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, UC_PROT_ALL, Uc, UcError
from unicorn.s390x_const import UC_CPU_S390X_MAX

from emulator.cpu import lowcore as lc, native
from emulator.cpu.guest import DatGuest, UcGuest
from emulator.cpu.interrupts import Interrupts
from emulator.cpu.kernel_insns import KernelInsns
from emulator.cpu.native import EXCP_PGM, EXCP_SVC, REG_CR0, REG_PC, REG_PSWM
from emulator.cpu.privileged import Privileged
from emulator.cpu.records import Halt, RunStats, insn_hex
from emulator.cpu.sclp import Sclp
from emulator._native import ffi, lib
from emulator.decode import INSN_LENGTHS, to_decoded
from emulator.errors import UserError
from firmware_model.insns import TABLE

__all__ = ["DEFAULT_MAX_CONSOLE", "DEFAULT_MAX_INSNS", "Halt", "RunStats", "UcMachine", "REG_CR0",
           "REG_PC", "REG_PSWM"]

DEFAULT_MAX_INSNS = 2_000_000_000
# A guest that prints in a loop fills a terminal or a disk long before any
# instruction budget ends it (a print loop writes ~40 MiB per 1e9
# instructions); a Linux boot to /init without "quiet" prints 9.5 KiB.
DEFAULT_MAX_CONSOLE = 16 << 20
# blocks between two calls of the poll callback (~10 ms of guest code; a power
# of two, trap.c masks the block count with it)
POLL_BLOCKS = 1 << 20
# The kernel is told of instruction-execution protection (facility 130 of
# QEMU's list), so unicorn must enforce it: its default "qemu" model lacks
# it, its "max" model adds it and message-security-assist 5 (whose PRNO the
# kernel instructions hook anyway).  It is also what keeps guest stores fast:
# unicorn leaves a store on its slow path for good whenever the page's TLB
# entry is executable, and without IEP every page is.
KERNEL_CPU_MODEL = UC_CPU_S390X_MAX
# (first, second byte) of the unprivileged instructions hooked by address
SENSITIVE = {(0xB9, 0x8D), (0xB2, 0xB0)}     # EPSW, STFLE


class UcMachine:
    """The CPU, its memory and the trap path; ``run()`` boots an image."""

    def __init__(self, memory_size: int, zpci_handler, console_out, *, console: bool = True,
                 count: bool = True, block_hook=None, max_insns: int = DEFAULT_MAX_INSNS,
                 pci_configure=None, pci_deconfigure=None, supervisor: bool = False,
                 tod: int = 0, flic=None, max_console: int = DEFAULT_MAX_CONSOLE):
        native.bind()
        self.memory_size = memory_size
        self.uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        if supervisor:
            # before the CPU exists (mem_map creates it): see KERNEL_CPU_MODEL
            self.uc.ctl_set_cpu_model(KERNEL_CPU_MODEL)
        try:
            self.uc.mem_map(0, memory_size, UC_PROT_ALL)
        except UcError as exc:
            raise UserError(f"cannot map {memory_size >> 20} MiB of guest memory: {exc}",
                            where="-m", exit_code=2) from None
        self.t = ffi.new("trap_state *")
        self.t.insn_limit = max_insns
        self.max_insns = max_insns
        # absolute storage (the lowcore, SCCBs), and the model's view of the guest
        self.memory = UcGuest(self.t, memory_size)
        self.guest = DatGuest(self.t, memory_size, self.memory) if supervisor else self.memory
        self.zpci_handler = zpci_handler
        self.sclp = Sclp(self._bounded(console_out, max_console), memory_size, console=console,
                         pci_configure=pci_configure, pci_deconfigure=pci_deconfigure)
        self.stats = RunStats()
        self.supervisor = supervisor
        # flic: the zPCI bus's pending adapter interruptions (firmware_model/irq.py)
        self.irq = Interrupts(self.uc, self.memory, self.guest, self.stats, self.sclp,
                              t=self.t, supervisor=supervisor, flic=flic)
        self.privileged = Privileged(self)
        self.kernel_insns = KernelInsns(self, self.privileged) if supervisor else None
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
        native.check(lib.trap_install(t, native.engine_handle(self.uc), 1 if count else 0,
                                      1 if block_hook else 0, memory_size))
        if supervisor:
            native.check(lib.trap_supervise(t))
            t.tod_base = tod
        # QEMU's initial CPU reset values of the control registers
        for i in range(16):
            self.uc.reg_write(REG_CR0 + i, 0)
        self.uc.reg_write(REG_CR0, lc.CR0_RESET)
        self.uc.reg_write(REG_CR0 + 14, lc.CR14_RESET)

    @staticmethod
    def _bounded(console_out, limit: int):
        """console_out, ending the run once the guest has written more than limit bytes."""
        written = 0

        def out(data: bytes) -> None:
            nonlocal written
            room = limit - written
            written += len(data)
            if written > limit:
                console_out(data[:max(room, 0)])
                raise Halt(1, f"guest wrote more than {limit} bytes to its console "
                              "(--max-console) without quiescing")
            console_out(data)
        return out

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
                native.check(lib.trap_hook_at(self.t, addr + off))
                n += 1
            off += ilen
        self.hooked_sites += n
        return n

    def read(self, addr: int, size: int) -> bytes | None:
        return self.memory.read(addr, size)

    def write(self, addr: int, data: bytes) -> bool:
        return self.memory.write(addr, data)

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
        irq = self.irq
        flic = irq.flic
        supervisor = self.supervisor
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
                    irq.program_interrupt(t, comp.pgm, d.ilen)
                elif flic.pending:
                    # a device raised an interruption: taken now if enabled, else
                    # trap_super.h is told which ISC to watch for
                    if comp.cc is not None:
                        t.cc = comp.cc
                    irq.deliver_pending(t)
                    if supervisor:
                        irq.sync_pending(t)
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
                self.irq.odd_fetch(t, self.irq.guest_mask(t.pswm), t.pc, "branched to")
            elif t.intno == EXCP_SVC:
                self.irq.svc(t)
            elif self.supervisor:
                self._on_supervisor(t)
            elif t.intno == EXCP_PGM or t.intno == lib.TRAP_INTNO_HOOKED:
                self.privileged.handle(t)
            else:
                raise Halt(1, f"unexpected unicorn exception {t.intno} at {t.pc:#x}")
            if self.supervisor:
                self.irq.sync_pending(t)
        except Halt as h:
            if h.exit_code == 0 and t.counting:
                t.insns += 1        # the quiescing LPSWE did complete
            self.halted = h
            return 1
        return 0

    def _on_supervisor(self, t) -> None:
        if t.intno == lib.TRAP_INTNO_EVENT:
            self.irq.deliver_pending(t)
        elif t.intno == EXCP_PGM or t.intno == lib.TRAP_INTNO_HOOKED:
            self.kernel_insns.handle(t)
        else:
            raise Halt(1, f"unexpected unicorn exception {t.intno} at {t.pc:#x}", addr=t.pc)

    def _on_poll(self) -> int:
        """Runs now and then so Python handles signals (Ctrl-C) during a long run."""
        return 0

    def _on_block(self, addr, size) -> None:
        self._block_hook(addr, size)

    def _odd_end(self, pc: int) -> Halt | None:
        """The odd-fetch exception at ``pc`` outside a hook; the Halt if it ends the run."""
        t = self.t
        t.pc = t.next_pc = pc
        t.nbytes = 0
        t.pswm = self.uc.reg_read(REG_PSWM)
        t.set_pswm, t.cc = 0, -1
        try:
            self.irq.odd_fetch(t, self.irq.guest_mask(t.pswm), pc, "branched to")
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
        self.uc.reg_write(REG_PSWM, self.irq.uc_mask(mask))
        pc = entry
        # referenced here for the whole loop: trap_run gets their addresses
        on_zpci, on_error = self._on_zpci, self._on_zpci_error
        zpci_ptr, error_ptr = native.object_pointer(on_zpci), native.object_pointer(on_error)
        while True:
            previous = native.attach(self._handlers)
            try:
                err = lib.trap_run(t, pc, zpci_ptr, error_ptr)
            finally:
                native.attach(previous)
            self.stats.insns = t.insns
            self.stats.blocks = t.blocks
            self.stats.zpci = list(t.zpci_counts[0:len(TABLE)])
            if self._error is not None:
                exc, self._error = self._error, None
                if isinstance(exc, (UserError, KeyboardInterrupt)) or \
                        os.environ.get("ZPCI_EMU_DEBUG"):
                    raise exc
                # a guest drove the model somewhere it fails: one line, not a traceback
                return Halt(1, f"internal error at {t.pc:#x} (instruction {insn_hex(t)}): "
                               f"{type(exc).__name__}: {exc} (ZPCI_EMU_DEBUG=1 for a traceback)")
            text = ffi.string(t.error_text).decode("utf-8", "replace")
            if text:
                # trap.c could not hand a zPCI trap to Python (see TRAP_STOP_ERROR)
                return Halt(1, f"internal error at {t.pc:#x} (instruction {insn_hex(t)}): "
                               f"{text}")
            if self.halted is not None:
                return self.halted
            if t.stop == lib.TRAP_STOP_LIMIT:
                pc = self.uc.reg_read(REG_PC)
                return Halt(1, f"guest ran more than {self.max_insns} instructions "
                               f"(--max-insns) without quiescing; stopped at {pc:#x}", addr=pc)
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

