"""The Debian kernel and busybox for runs under ``zpci-emu boot`` (the native engine).

Fetched into the private cache exactly as ``capture`` does (PrivateApt,
prepare_kernel), so a machine that can capture can boot them natively.
``marker_initrd`` builds the smallest initramfs that proves a boot reached
user space: busybox and an /init that runs the given shell lines and powers
off.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.capture.apt import PrivateApt, cache_root, extract_deb
from emulator.errors import UserError
from emulator.capture.initramfs import Cpio
from emulator.capture.linux import DEFAULT_KERNEL, FmbWindow, prepare_kernel

# what /init prints first, for a run to recognise it reached user space
INIT_MARKER = "ZPCI-EMU-INIT-REACHED"
# the command line capture gives QEMU, without its workload parts
APPEND = "console=ttysclp0 nokaslr quiet loglevel=4 rdinit=/init"


@dataclass(frozen=True)
class LinuxFiles:
    vmlinuz: Path
    busybox: Path
    release: str


def fetch(package: str = DEFAULT_KERNEL, apt: PrivateApt | None = None) -> LinuxFiles:
    """The kernel and busybox-static, downloaded once into the private cache."""
    apt = apt or PrivateApt()
    kb = prepare_kernel(package, apt)
    bb_root = extract_deb(apt.download("busybox-static"), cache_root() / "busybox-static")
    return LinuxFiles(kb.vmlinuz, bb_root / "bin/busybox", kb.release)


def marker_initrd(busybox: Path, dest: Path, lines: tuple[str, ...] = ("uname -a",)) -> Path:
    """An initramfs whose /init prints INIT_MARKER, runs ``lines`` and powers off."""
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    script = ["#!/bin/busybox sh", "/bin/busybox --install -s /bin", f"echo {INIT_MARKER}",
              *lines, "poweroff -f", ""]
    c.file("init", "\n".join(script).encode(), 0o755)
    return c.write_gz(dest)


# -- a capture workload run natively ------------------------------------------------

MARK_LINE = "=== MARK "


class WorkloadObserver:
    """A native run of a capture workload, as ``linux.FmbWindow`` counts it.

    The console's ``=== MARK <phase>`` lines (echoed right after the
    workload's ``kill -0`` marks) give the phases: each becomes a mark record
    here (``records``), a MARK in the trace when one is written, and a phase
    of the FMB cross-check.  Every zPCI instruction the model executes is
    counted per phase and mnemonic and fed to the cross-check; nothing is
    kept per instruction.  The console is in program order with the
    instructions, so an instruction belongs to the phase of the last mark
    line printed before it.
    """

    def __init__(self, out=None, console_limit: int = 4 << 20):
        self.out = out
        self.records: list[dict] = []           # the mark records, in order
        self.console = bytearray()
        self.console_limit = console_limit      # the last bytes are kept: statistics come last
        self.events = 0
        self._t0 = time.perf_counter()
        self._line = bytearray()
        self.window = FmbWindow()
        self.counts: dict[str | None, dict[str, int]] = {None: {}}   # phase -> mnemonic -> n
        self._phase_counts = self.counts[None]
        self.writer = None                      # a TraceWriter the marks go to as well

    def write(self, data: bytes) -> int:
        self.console += data
        if len(self.console) > self.console_limit:
            del self.console[:len(self.console) - self.console_limit]
        self._line += data
        *done, rest = self._line.split(b"\n")
        self._line = bytearray(rest)
        for raw in done:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line.startswith(MARK_LINE):
                self.mark(line[len(MARK_LINE):].strip())
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def mark(self, label: str) -> None:
        # t: host seconds since the observer was made, as the recorder's marks carry
        self.records.append({"kind": "mark", "label": label,
                             "t": round(time.perf_counter() - self._t0, 3)})
        self.window.mark(label)
        self._phase_counts = self.counts.setdefault(label, {})
        if self.writer is not None:
            self.writer.mark(label)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def wrap(self, execute):
        from firmware_model.arch import FIB_SIZE, MpcifcOc
        from firmware_model.fib import Fib
        from firmware_model.insns import TABLE, StatusReg
        from firmware_model.semantics import effective_address

        # the register naming the function, per table row (None: the row names none)
        fh_reg = [None if i.fh_reg is StatusReg.NONE else i.fh_reg for i in TABLE]
        mpcifc = next(i.index for i in TABLE if i.mnemonic == "MPCIFC")
        event = self.window.event
        r2 = StatusReg.R2

        def handler(d, guest):
            index = d.index
            reg = fh_reg[index]
            fh = None if reg is None else \
                (guest.gpr(d.r2 if reg is r2 else d.r1) >> 32) & 0x7FFFFFFF
            free = False
            if index == mpcifc and guest.gpr(d.r1) & 0xFF == MpcifcOc.SET_MEASURE:
                # setting the measurement parameters with FMB address 0 frees the block
                fib = guest.read(effective_address(d, guest), FIB_SIZE)
                free = fib is not None and Fib.unpack(fib).fmb_addr == 0
            outcome = execute(d, guest)
            comp = outcome.completion
            name = outcome.mnemonic
            counts = self._phase_counts
            counts[name] = counts.get(name, 0) + 1
            self.events += 1
            event(name, fh, comp.cc, comp.pgm, free)
            return outcome

        return handler

    def phase_counts(self, phase: str | None) -> dict[str, int]:
        """zPCI instructions per mnemonic in ``phase`` (every function and cc;
        None: before the first mark)."""
        return dict(self.counts.get(phase, {}))

    def phase_seconds(self, first: str, last: str) -> float | None:
        """Host seconds from the ``first`` mark to the ``last`` one."""
        t = {r["label"]: r["t"] for r in self.records}
        return t[last] - t[first] if first in t and last in t else None



@dataclass
class WorkloadRun:
    result: object                  # emulator.cpu.boot.BootResult
    observer: WorkloadObserver
    stats: dict                     # the guest's statistics files (workloads.parse_stats)
    crosscheck: list[dict]          # linux.FmbWindow of the model's events against them
    argv: list[str]                 # the zpci-emu boot arguments of the run
    kernel: object                  # linux.KernelBundle
    seconds: float                  # the boot's wall-clock time

    @property
    def console_lines(self) -> list[str]:
        return self.observer.console.decode("utf-8", "replace").splitlines()


def run_workload(name: str, tmp: Path, out=None, extra: tuple[str, ...] = (), *,
                 package: str = DEFAULT_KERNEL, trace: Path | None = None) -> WorkloadRun:
    """Boot ``capture --workload name``'s kernel, initramfs, command line and
    devices under ``zpci-emu boot`` (memory and -smp as capture; the block
    image in ``tmp``); with ``trace``, the run's zPCI events and phase marks
    are written there (``boot --trace``)."""
    from emulator import qemu_args as qa
    from emulator.capture import linux
    from emulator.capture.workloads import WORKLOADS, parse_stats
    from emulator.cpu import boot

    w = WORKLOADS[name]
    files = fetch(package)
    kb = prepare_kernel(package)
    initrd = linux.build_initrd(kb, files.busybox, w, Path(tmp) / "initrd.gz")
    image = None
    if w.blk_image:
        image = Path(tmp) / "disk.raw"
        w.make_image(image)
    argv = [a for a in linux.qemu_args(kb, initrd, w, image) if a != "-no-reboot"] + list(extra)
    traced = argv + (["--trace", str(trace)] if trace is not None else [])
    obs = WorkloadObserver(out)
    t0 = time.monotonic()
    result = boot.run(qa.parse(traced), out=obs, observe=obs.wrap,
                      argv_text="zpci-emu boot " + shlex.join(linux.public_args(argv)),
                      on_trace=lambda writer: setattr(obs, "writer", writer))
    seconds = time.monotonic() - t0
    stats = parse_stats(obs.console.decode("utf-8", "replace").splitlines())
    return WorkloadRun(result, obs, stats, obs.window.rows(stats, w.functions), argv, kb, seconds)


# -- capture --engine native ------------------------------------------------------

@dataclass
class NativeCapture:
    run: WorkloadRun
    events: int                     # zPCI events in the trace
    seconds: float                  # the run's wall-clock time (the header's capture_seconds)

    @property
    def crosscheck(self) -> list[dict]:
        return self.run.crosscheck

    @property
    def marks(self) -> list[str]:
        return [r["label"] for r in self.run.observer.records]


def capture(workload_name: str, out: Path, *, package: str = DEFAULT_KERNEL,
            log=print) -> NativeCapture:
    """``capture --workload NAME --engine native``: the workload under ``zpci-emu
    boot``, its trace written as it runs, then restated with what only the end
    of the run knows (the cross-check, the time): the QEMU capture's header,
    marks and notes, and the events as ``boot --trace`` of a kernel holds them."""
    import tempfile

    from emulator.capture import linux
    from emulator.capture.workloads import WORKLOADS

    if workload_name not in WORKLOADS:
        raise UserError(f"unknown workload {workload_name!r} (one of {', '.join(WORKLOADS)})")
    w = WORKLOADS[workload_name]
    log(f"kernel: {package} (private apt state in {PrivateApt().root})")
    with tempfile.TemporaryDirectory(prefix="zpci-native-") as tmp:
        raw = Path(tmp) / "run.zpt"
        run = run_workload(w.name, Path(tmp), package=package, trace=raw)
        if run.result.exit_code != 0:
            raise UserError(f"guest did not run to its end: {run.result.message}",
                            where=f"workload {w.name}")
        log(f"ran {w.name} natively in {run.seconds:.1f} s: "
            f"zpci-emu boot {shlex.join(linux.public_args(run.argv))}")
        ok = bool(run.crosscheck) and all(r.get("ok") is True for r in run.crosscheck)
        kb = run.kernel
        info = {"workload": w.name, "engine": "native", "zpci_emu": zpci_emu_version(),
                "kernel_package": package, "kernel_version": kb.version,
                "boot_args": shlex.join(linux.public_args(run.argv)),
                "seconds": round(run.seconds, 1)}
        notes = [("fmb_stats", {"function": fn, "counters": st}) for fn, st in run.stats.items()]
        notes += [("fmb_crosscheck", row) for row in run.crosscheck]
        notes.append(("capture_info", info))
        events = restate(raw, Path(out), w, detail="zpci-emu boot " + info["boot_args"],
                         extra={"kernel_package": f"{package} {kb.version}", "engine": "native",
                                "zpci_emu": info["zpci_emu"],
                                "fmb_crosscheck": "match" if ok else "MISMATCH",
                                "capture_seconds": info["seconds"]},
                         notes=notes)
    return NativeCapture(run, events, run.seconds)


def restate(raw: Path, out: Path, w, detail: str, extra: dict, notes=()) -> int:
    """``raw`` (a ``boot --trace`` of the workload) as a capture trace: the
    header the QEMU capture writes (linux.capture_header), the records as
    they are, ``notes`` before the END.  Returns the number of events."""
    from emulator.capture.linux import capture_header
    from emulator.trace.reader import TraceReader
    from emulator.trace.writer import TraceWriter

    with TraceReader(raw) as rd:
        header = capture_header(rd.header.functions, w, detail, extra)
        with TraceWriter(out, header) as wr:
            wr.copy_body(rd, notes)
            return wr.events


def zpci_emu_version() -> str:
    from importlib import metadata
    try:
        return "zpci-emu " + metadata.version("zpci-emu")
    except metadata.PackageNotFoundError:
        return "zpci-emu (not installed)"
