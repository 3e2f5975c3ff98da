"""``zpci-emu boot``: a bare-metal s390x guest under unicorn with the zPCI firmware model.

Ties together the QEMU-style machine description (emulator.qemu_args), the
ELF loader, the unicorn CPU with its trap path (emulator.cpu.machine) and the
firmware model (firmware_model.machine.Machine), plus the optional outputs:
``--stats`` (JSON counters for every policy at once) and ``--trace`` (the
run in the trace format of emulator/trace).
"""
from __future__ import annotations

import json
import sys
from collections import deque
from dataclasses import dataclass

from emulator._native import lib
from emulator.cpu import ipl
from emulator.cpu.lowcore import PSW_MASK_CC
from emulator.errors import UserError
from emulator.cpu.machine import DEFAULT_MAX_CONSOLE, DEFAULT_MAX_INSNS, Halt, UcMachine
from emulator.qemu_args import DEFAULT_POLICY, USAGE_EXIT, BootArgs
from firmware_model.guest import RecordingGuest
from firmware_model.insns import BY_MNEMONIC, TABLE
from firmware_model.irq import IRQ_NOTE

# a Linux kernel's decompressor alone runs ~2 G instructions, its boot to
# /init ~1 G more; a guest left waiting for an interruption that never comes
# still runs its timers, so a limit (~10 minutes) ends such a run
KERNEL_MAX_INSNS = 100_000_000_000
# TOD clock epoch (1900-01-01) to the Unix epoch, seconds
TOD_UNIX_OFFSET = 2208988800
BASELINE_POLICY = "intercept-all"
ADAPTER_IRQ_RECORD = 4096


@dataclass
class BootResult:
    exit_code: int
    message: str | None
    stats: dict


def build_firmware(args: BootArgs, policy: str):
    """The firmware model for the machine; a bad device becomes a usage error naming it."""
    from firmware_model.machine import Machine
    from firmware_model.policy import POLICY_NAMES

    if policy not in POLICY_NAMES:
        raise UserError(f"unknown policy {policy!r} (choose from {', '.join(POLICY_NAMES)})",
                        where="--policy", exit_code=USAGE_EXIT)
    _check_devices(args)
    try:
        # the -object/-netdev backends the devices name, shared by the machine's devices
        from firmware_model.devices import make_device
        from firmware_model.function import ZpciBus
        context = args.device_context()
        bus = ZpciBus.from_config(args.config,
                                  lambda kind, props: make_device(kind, props, context=context))
        return Machine(args.config, policy=policy, assume="passthrough", bus=bus)
    except ValueError as exc:       # DeviceConfigError included: an impossible machine
        raise UserError(_device_message(args, exc), exit_code=USAGE_EXIT) from None


def _check_devices(args: BootArgs) -> None:
    """Builds each PCI device once on its own, so an error names its -device string."""
    from emulator.qemu_args import CONSOLE_DEVICES, split_device
    from firmware_model.devices import DeviceConfigError, make_device

    for text in args.device_strings:
        kind, props = split_device(text)
        if kind in CONSOLE_DEVICES or kind == "zpci":
            continue
        try:
            make_device(kind, tuple((k, v) for k, v in props if k != "id"), context={})
        except DeviceConfigError as exc:
            raise UserError(str(exc).splitlines()[0], where=f"-device {text}",
                            exit_code=USAGE_EXIT) from None


def _device_message(args: BootArgs, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if len(args.device_strings) == 1:
        return f"-device {args.device_strings[0]}: {text}"
    return f"bad -device: {text}"


def _trace_header(args: BootArgs, fw, argv_text: str, supervisor: bool = False):
    """A bare-metal guest's trace is the full stream; a supervisor-state
    kernel's (Linux) holds its zPCI events only, as a capture does: the block
    recorder reads code by absolute address, which under DAT is not where
    the kernel runs, and its operand addresses are virtual (memory 0: no
    bound)."""
    from emulator.trace.format import FunctionInfo, SourceKind, StreamKind, TraceHeader
    fns = []
    for fn in fw.bus.functions:
        dev = fn.device
        spec = _spec_of(args, fn.target)
        fns.append(FunctionInfo(fid=fn.fid, uid=fn.uid,
                                kind=spec.kind if spec else getattr(dev, "kind", "?"),
                                fhs=(fn.fh,), props=tuple(spec.props) if spec else (),
                                vendor_id=getattr(dev, "vendor_id", None),
                                device_id=getattr(dev, "device_id", None)))
    workload = args.kernel.rsplit("/", 1)[-1].removesuffix(".elf")
    if supervisor:
        return TraceHeader(source=SourceKind.CAPTURE, stream=StreamKind.ZPCI_ONLY, memory=0,
                           functions=tuple(fns), workload=workload, detail=argv_text)
    return TraceHeader(source=SourceKind.BOOT, stream=StreamKind.FULL,
                       memory=args.config.memory, functions=tuple(fns), workload=workload,
                       detail=argv_text)


def _spec_of(args: BootArgs, target):
    for spec in args.config.functions:
        if spec.target == target:
            return spec
    return None


def run(args: BootArgs, out=None, argv_text: str = "", observe=None,
        on_trace=None) -> BootResult:
    """Boots ``args.kernel``; console bytes go to ``out`` (a binary stream).

    ``observe``, if given, wraps the firmware model's execute (the handler of
    every zPCI instruction): it gets that function and returns its stand-in.
    ``on_trace``, if given, gets the ``--trace`` writer before the guest runs
    (to add marks to it).
    """
    out = out if out is not None else sys.stdout.buffer
    policy = args.policy or DEFAULT_POLICY
    fw = build_firmware(args, policy)
    # the bus's record of raised ISCs serves tests of the model; a run of
    # millions of instructions keeps only the latest (it grows per interrupt)
    fw.bus.adapter_interrupts = deque(fw.bus.adapter_interrupts, maxlen=ADAPTER_IRQ_RECORD)
    image = ipl.load(args.kernel, args.config.memory, args.append, args.initrd)

    def console(data: bytes) -> None:
        out.write(data)
        out.flush()

    writer = None
    handler = fw.execute
    if args.trace:
        from emulator.trace.writer import TraceWriter
        try:
            writer = TraceWriter(args.trace, _trace_header(args, fw, argv_text, image.supervisor))
        except OSError as exc:
            raise UserError(exc.strerror or str(exc), where=args.trace) from None
        if on_trace is not None:
            on_trace(writer)

    recorder = traced = None
    if writer is not None and image.supervisor:
        handler = _traced_operands(fw, writer, lambda: uc.t)
    elif writer is not None:
        recorder = _block_recorder(None, writer)
        handler = traced = _traced(fw, writer, lambda: uc.t)
    if observe is not None:
        handler = observe(handler)
    try:
        # SCLP (de)configure changes the bus outside the instruction path: through the
        # Machine, so the host's records (handles, registrations, mappings) follow.
        default_max = KERNEL_MAX_INSNS if image.supervisor else DEFAULT_MAX_INSNS
        uc = UcMachine(args.config.memory, handler, console, console=args.console,
                       max_insns=args.max_insns or default_max, count=True,
                       max_console=args.max_console or DEFAULT_MAX_CONSOLE,
                       block_hook=recorder,
                       pci_configure=fw.sclp_configure,
                       pci_deconfigure=fw.sclp_deconfigure, flic=fw.bus.flic,
                       supervisor=image.supervisor, tod=host_tod())
        # device DMA, MSIs and indicators reach absolute storage, whatever view
        # (DAT under a kernel) the vCPU gives an instruction's operands
        storage = uc.memory
        if traced is not None:
            storage = traced.storage = RecordingGuest(storage)
        fw.attach(storage)
        if recorder is not None:
            recorder.machine = uc
        if image.supervisor:
            # the measurement block's last-update time: the guest's clock since
            # the start, as QEMU's fmb_update takes its virtual clock
            tod0 = uc.t.tod_base
            fw.bus.tod = lambda: lib.trap_tod_now(uc.t) - tod0
        uc.load(image)
        halt = uc.run(image.entry)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        if recorder is not None:
            if halt.exit_code != 0 and recorder.pending is not None:
                recorder.pending = None       # stopped before that block could run
            recorder.close()
        writer.note(IRQ_NOTE, fw.irq.stats())     # what the replayed events cannot say
        writer.close()
    if image.supervisor and halt.exit_code != 0 and halt.addr is not None:
        from emulator.cpu.symbols import function_at
        fn = function_at(args.kernel, halt.addr)
        if fn:
            halt.message = f"{halt.message} in {fn}"
    stats = collect_stats(uc, fw, halt)
    if args.stats:
        try:
            with open(args.stats, "w") as f:
                json.dump(stats, f, indent=1, sort_keys=True)
                f.write("\n")
        except OSError as exc:
            raise UserError(exc.strerror or str(exc), where=args.stats) from None
    return BootResult(halt.exit_code, halt.message, stats)


def host_tod() -> int:
    """The TOD clock QEMU starts a guest with: the host's time of day."""
    import time
    return (time.time_ns() // 1000 + TOD_UNIX_OFFSET * 1_000_000) << 12


class _block_recorder:
    """UC_HOOK_BLOCK consumer of --trace: each distinct block once, then its runs.

    The hook fires before a block runs, so a block is only written once it is
    known how far it ran: to its end when the next block starts, or up to and
    including the instruction that trapped inside it (``cut``).
    """

    def __init__(self, machine, writer):
        self.machine = machine
        self.writer = writer
        self.ids: dict = {}
        self.pending = None

    def __call__(self, addr: int, size: int) -> None:
        if self.pending is not None:
            self._emit(*self.pending)
        self.pending = (addr, size)

    def cut(self, pc: int, ilen: int) -> None:
        p = self.pending
        self.pending = None
        if p is not None and p[0] <= pc < p[0] + p[1]:
            self._emit(p[0], pc + ilen - p[0])
            return
        if p is not None:
            self._emit(*p)
        # unicorn made a block of the trapping instruction alone (size 0)
        self._emit(pc, ilen)

    def close(self) -> None:
        if self.pending is not None:
            self._emit(*self.pending)
            self.pending = None

    def _emit(self, addr: int, size: int) -> None:
        if size <= 0:
            return
        key = (addr, size)
        bid = self.ids.get(key)
        if bid is None:
            code = self.machine.read(addr, size) or b""
            bid = self.writer.add_block(addr, code)
            self.ids[key] = bid
        self.writer.run_block(bid)


class _traced:
    """The firmware model's execute, recording one trace event per instruction.

    ``storage`` is the machine's storage as a RecordingGuest (set once the
    CPU exists): the event holds the instruction's accesses and its device's
    DMA, in order, so replay can run the device models live.
    """

    def __init__(self, fw, writer, trap_state):
        self.execute = fw.execute
        self.writer = writer
        self.trap_state = trap_state
        self.storage: RecordingGuest | None = None

    def __call__(self, d, guest):
        t = self.trap_state()
        before = list(guest.gprs)
        log = self.storage
        log.clear()
        view = log if guest is log.inner else RecordingGuest(guest, log)
        outcome = self.execute(d, view)
        comp = outcome.completion
        cc = comp.cc if comp.cc is not None else (t.pswm >> 44) & 3
        self.writer.zpci_event(d.addr, bytes(t.bytes[0:d.ilen]), before, list(guest.gprs),
                               cc=None if comp.pgm is not None else cc,
                               reads=log.reads, writes=log.writes, pgm=comp.pgm)
        return outcome


def _traced_operands(fw, writer, trap_state):
    """The firmware model's execute for a supervisor-state kernel, recording
    one event per instruction as a capture holds it: the guest's own PSW mask
    (the kernel runs with it under unicorn) and the memory the instruction
    itself read and wrote at the addresses it used (virtual under DAT), with
    the DMA table entries RPCIT walked at their absolute addresses.

    Device DMA, interruptions and the model's synchronous measurement-block
    store go to the machine's absolute storage, not through the
    instruction's guest, so they are not in it (a QEMU capture cannot have
    them either: QEMU stores the FMB from a timer).
    """
    execute = fw.execute
    rpcit = BY_MNEMONIC["RPCIT"].index
    sites: dict = {}
    event = writer.operand_event
    cc_bits = ~PSW_MASK_CC
    view = [RecordingGuest(None)]          # the vCPU passes one guest: one view, cleared

    def handler(d, guest):
        t = trap_state()
        pswm = t.pswm
        gprs = guest.gprs
        before = list(gprs)
        rg = view[0]
        if rg.inner is guest:
            rg.clear()
        else:
            rg = view[0] = RecordingGuest(guest)
        outcome = execute(d, rg)
        comp = outcome.completion
        key = (d.ipa, d.ipb)
        site = sites.get(key)
        if site is None:
            site = sites[key] = writer.site(bytes(t.bytes[0:d.ilen]), d.index == rpcit)
        cc = comp.cc
        if cc is None or comp.pgm is not None:
            # unchanged (SIC), or the old PSW an interruption stores
            after, cc = pswm, (pswm >> 44) & 3
        else:
            after = (pswm & cc_bits) | cc << 44
        event(site, d.addr, pswm, after, cc, comp.pgm, before, list(gprs), rg.reads, rg.writes)
        return outcome

    return handler


def _kernel_cpu_stats(uc: UcMachine) -> dict | None:
    """How a supervisor-state kernel's sensitive instructions were met (trap_super.h)."""
    if not uc.supervisor:
        return None
    t = uc.t
    return {"clock_instructions_in_c": t.clock_insns, "hooked_sites": t.hooked_sites,
            "blocks_scanned": t.scanned_blocks, "python_traps": t.other_traps,
            "zpci_traps": t.zpci_traps}


def collect_stats(uc: UcMachine, fw, halt: Halt) -> dict:
    """The --stats document: counts from this run for every policy at once."""
    zpci = {TABLE[i].mnemonic: n for i, n in enumerate(uc.stats.zpci) if n}
    fws = fw.stats()
    outcomes = {}
    intercepts = {}
    for policy, acc in fws["policies"].items():
        routes = {r: acc["routes"].get(r, 0) for r in ("firmware", "kvm", "userspace")}
        outcomes[policy] = routes
        intercepts[policy] = routes["kvm"] + routes["userspace"]
    baseline = intercepts.get(BASELINE_POLICY, 0)
    return {
        "exit": {"code": halt.exit_code, "message": halt.message},
        "instructions": uc.stats.insns,
        "blocks": uc.stats.blocks,
        "zpci_instructions": sum(zpci.values()),
        "zpci": zpci,
        "privileged": dict(sorted(uc.stats.privileged.items())),
        "program_interruptions": {f"{k:#04x}": v for k, v in
                                  sorted(uc.stats.program_interruptions.items())},
        "sclp_commands": {f"{k:#010x}": v for k, v in sorted(uc.sclp.commands.items())},
        "kernel_cpu": _kernel_cpu_stats(uc),
        "policy": fw.policy,
        "outcomes": outcomes,
        "intercepts": intercepts,
        "intercepts_saved": {p: baseline - n for p, n in intercepts.items()},
        "model": fws,
    }
