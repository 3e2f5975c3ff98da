"""The Debian kernel and busybox for runs under ``zpci-emu boot`` (the native engine).

Fetched into the private cache exactly as ``capture`` does (PrivateApt,
prepare_kernel), so a machine that can capture can boot them natively.
``marker_initrd`` builds the smallest initramfs that proves a boot reached
user space: busybox and an /init that runs the given shell lines and powers
off.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emulator.capture.apt import PrivateApt, cache_root, extract_deb
from emulator.capture.initramfs import Cpio
from emulator.capture.linux import DEFAULT_KERNEL, prepare_kernel

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
    """A native run of a capture workload, as records ``linux.crosscheck`` reads.

    The console's ``=== MARK <phase>`` lines (echoed right after the
    workload's ``kill -0`` marks) give the phases; every zPCI instruction the
    model executes gives an event record in the recorder's shape (mnemonic,
    R1/R2, registers before, cc, and for MPCIFC the FIB it was given).  The
    console is in program order with the instructions, so an instruction
    belongs to the phase of the last mark line printed before it.
    """

    def __init__(self, out=None):
        self.out = out
        self.records: list[dict] = []
        self.console = bytearray()
        self._line = bytearray()

    def write(self, data: bytes) -> int:
        self.console += data
        self._line += data
        *done, rest = self._line.split(b"\n")
        self._line = bytearray(rest)
        for raw in done:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line.startswith(MARK_LINE):
                self.records.append({"kind": "mark", "label": line[len(MARK_LINE):].strip()})
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def wrap(self, execute):
        from firmware_model.arch import FIB_SIZE
        from firmware_model.semantics import effective_address

        def handler(d, guest):
            name = d.insn.mnemonic
            before = ["%016x" % guest.gpr(r) for r in range(16)]
            rec = {"insn": name, "operands": {"r1": d.r1, "r2": d.r2}, "gr_before": before}
            if name == "MPCIFC":
                fib = guest.read(effective_address(d, guest), FIB_SIZE)
                rec["mem_before"] = fib.hex() if fib else None
            outcome = execute(d, guest)
            comp = outcome.completion
            rec["cc"] = comp.cc
            if comp.pgm is not None:
                rec["pgm"] = comp.pgm
            self.records.append(rec)
            return outcome

        return handler

    def phase_counts(self, phase: str) -> dict[str, int]:
        """zPCI instructions per mnemonic in ``phase`` (every function and cc)."""
        counts: dict[str, int] = {}
        cur = None
        for r in self.records:
            if r.get("kind") == "mark":
                cur = r["label"]
            elif cur == phase:
                counts[r["insn"]] = counts.get(r["insn"], 0) + 1
        return counts


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
    kb = prepare_kernel()
    initrd = linux.build_initrd(kb, files.busybox, w, Path(tmp) / "initrd.gz")
    image = None
    if w.blk_image:
        image = Path(tmp) / "disk.raw"
        with open(image, "wb") as f:
            f.truncate(linux.BLK_IMAGE_MB << 20)
    argv = [a for a in linux.qemu_args(kb, initrd, w, image) if a != "-no-reboot"]
    obs = WorkloadObserver(out)
    result = boot.run(qa.parse(argv + list(extra)), out=obs, observe=obs.wrap)
    stats = parse_stats(obs.console.decode("utf-8", "replace").splitlines())
    return WorkloadRun(result, obs, stats, linux.crosscheck(obs.records, stats, w.functions))
