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
