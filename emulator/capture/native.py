"""The Debian kernel and busybox for runs under ``zpci-emu boot`` (the native engine).

Fetched into the private cache exactly as ``capture`` does (PrivateApt,
prepare_kernel), so a machine that can capture can boot them natively.
``marker_initrd`` builds the smallest initramfs that proves a boot reached
user space: busybox and an /init that runs the given shell lines and powers
off.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from emulator.capture.apt import PrivateApt, cache_root, extract_deb
from emulator.capture.initramfs import Cpio
from emulator.capture.linux import DEFAULT_KERNEL, KernelBundle, prepare_kernel

# what /init prints first, for a run to recognise it reached user space
INIT_MARKER = "ZPCI-EMU-INIT-REACHED"
# the command line capture gives QEMU, without its workload parts
APPEND = "console=ttysclp0 nokaslr quiet loglevel=4 rdinit=/init"


@dataclass(frozen=True)
class LinuxFiles:
    vmlinuz: Path
    busybox: Path
    release: str
    kernel: KernelBundle | None = None      # the package's bundle (sites, modules)


def fetch(package: str = DEFAULT_KERNEL, apt: PrivateApt | None = None) -> LinuxFiles:
    """The kernel and busybox-static, downloaded once into the private cache."""
    apt = apt or PrivateApt()
    kb = prepare_kernel(package, apt)
    bb_root = extract_deb(apt.download("busybox-static"), cache_root() / "busybox-static")
    return LinuxFiles(kb.vmlinuz, bb_root / "bin/busybox", kb.release, kb)


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
    """A native run of a capture workload, counted as ``linux.crosscheck`` counts a capture.

    The console's ``=== MARK <phase>`` lines (echoed right after the
    workload's ``kill -0`` marks) give the phases: each is kept as a mark
    record in the recorder's shape plus ``t``, the host's seconds since the
    observer was made (the recorder's marks carry the same).  The console is
    in program order with the instructions, so an instruction belongs to the
    phase of the last mark line printed before it.  Every zPCI instruction
    the model executes is counted, not kept: per phase and mnemonic
    (``phase_counts``) and into a ``linux.FmbWindow`` (``crosscheck``), so a
    run of millions of instructions takes constant memory.  The console is
    kept up to ``console_limit`` bytes (the statistics come at the end: the
    last bytes are kept).
    """

    def __init__(self, out=None, console_limit: int = 4 << 20):
        from emulator.capture.linux import FmbWindow
        self.out = out
        self.records: list[dict] = []           # the mark records
        self.console = bytearray()
        self.console_limit = console_limit
        self.events = 0
        self.window = FmbWindow()
        self._counts: dict[tuple, int] = {}     # (phase, mnemonic) -> instructions
        self._phase = None
        self._line = bytearray()
        self._t0 = time.perf_counter()

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
        self.records.append({"kind": "mark", "label": label,
                             "t": round(time.perf_counter() - self._t0, 3)})
        self._phase = label
        self.window.mark(label)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def wrap(self, execute):
        from firmware_model.arch import FIB_SIZE
        from firmware_model.semantics import effective_address
        from emulator.capture.linux import FH_OPERAND, fmb_of, handle_of

        counts = self._counts
        window = self.window

        def handler(d, guest):
            name = d.insn.mnemonic
            reg = FH_OPERAND.get(name)
            fh = None if reg is None else handle_of(guest.gpr(d.r1 if reg == "r1" else d.r2))
            fmb = None
            if name == "MPCIFC":
                fmb = fmb_of(guest.gpr(d.r1) & 0xFF,
                             guest.read(effective_address(d, guest), FIB_SIZE))
            outcome = execute(d, guest)
            comp = outcome.completion
            key = (self._phase, name)
            counts[key] = counts.get(key, 0) + 1
            self.events += 1
            window.event(name, fh, comp.cc, comp.pgm, fmb)
            return outcome

        return handler

    def phase_counts(self, phase: str) -> dict[str, int]:
        """zPCI instructions per mnemonic in ``phase`` (every function and cc)."""
        return {name: n for (ph, name), n in self._counts.items() if ph == phase}

    def phase_seconds(self, first: str, last: str) -> float | None:
        """Host seconds from the ``first`` mark to the ``last`` one."""
        t = {r["label"]: r["t"] for r in self.records}
        return t[last] - t[first] if first in t and last in t else None


@dataclass
class WorkloadRun:
    result: object                  # emulator.cpu.boot.BootResult
    observer: WorkloadObserver
    stats: dict                     # the guest's statistics files (workloads.parse_stats)
    crosscheck: list[dict]          # linux.crosscheck of the model's events against them

    @property
    def console_lines(self) -> list[str]:
        return self.observer.console.decode("utf-8", "replace").splitlines()


def run_workload(name: str, tmp: Path, out=None, extra: tuple[str, ...] = ()) -> WorkloadRun:
    """Boot ``capture --workload name``'s kernel, initramfs, command line and
    devices under ``zpci-emu boot`` (memory and -smp as capture; the block
    image in ``tmp``)."""
    from emulator import qemu_args as qa
    from emulator.capture import linux
    from emulator.capture.workloads import WORKLOADS, parse_stats
    from emulator.cpu import boot

    w = WORKLOADS[name]
    files = fetch()
    kb = files.kernel
    initrd = linux.build_initrd(kb, files.busybox, w, Path(tmp) / "initrd.gz")
    image = None
    if w.blk_image:
        image = Path(tmp) / "disk.raw"
        w.make_image(image)
    argv = [a for a in linux.qemu_args(kb, initrd, w, image) if a != "-no-reboot"]
    obs = WorkloadObserver(out)
    result = boot.run(qa.parse(argv + list(extra)), out=obs, observe=obs.wrap)
    stats = parse_stats(obs.console.decode("utf-8", "replace").splitlines())
    return WorkloadRun(result, obs, stats, obs.window.rows(stats, w.functions))
