"""Builds the guests of this directory with the s390x cross compiler.

Used by benchmarks/boot.py and tests/test_boot_priv.py; the ELFs go to a
directory the caller names, so nothing built is left in the tree.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CC = "s390x-linux-gnu-gcc"
CFLAGS = ["-m64", "-march=z10", "-O2", "-ffreestanding", "-fno-builtin", "-nostdlib",
          "-fno-pic", "-fno-pie", "-msoft-float", "-mno-vx", "-fno-asynchronous-unwind-tables",
          "-fno-stack-protector", "-static", "-no-pie", "-Wl,--no-warn-rwx-segments",
          "-Wl,--build-id=none", "-T", str(HERE / "link.ld")]


def have_compiler() -> bool:
    return shutil.which(CC) is not None


def build(out_dir: Path, name: str, sources: list[str], defines: dict | None = None) -> Path:
    """Compiles ``sources`` (names in this directory) into ``out_dir/name.elf``."""
    out = Path(out_dir) / f"{name}.elf"
    defs = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    subprocess.run([CC, *CFLAGS, *defs, "-o", str(out), *(str(HERE / s) for s in sources)],
                   check=True, capture_output=True)
    return out


def bench_zpci(out_dir: Path, loops: int) -> Path:
    return build(out_dir, "bench_zpci", ["start.S", "bench.c"],
                 {"MODE_ZPCI": 1, "ZPCI_LOOPS": loops})


def bench_plain(out_dir: Path, loops: int) -> Path:
    return build(out_dir, "bench_plain", ["start.S", "bench.c"],
                 {"MODE_PLAIN": 1, "PLAIN_LOOPS": loops})


def privprobe(out_dir: Path) -> Path:
    return build(out_dir, "privprobe", ["start.S", "privprobe_start.S", "privprobe.c"])


def listprobe(out_dir: Path) -> Path:
    return build(out_dir, "listprobe", ["start.S", "listprobe.c"])
