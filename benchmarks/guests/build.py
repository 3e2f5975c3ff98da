"""Builds the guests of this directory with the s390x cross compiler.

They are linked like the guests of traces/guests: its start.S, link.ld and
library (lib/, through the archive its Makefile builds), compiled with the
flags of that Makefile.  Used by benchmarks/boot.py and tests/test_boot_priv.py;
the ELFs (and the library objects) go to a directory the caller names, so
nothing built is left in the tree.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUESTS = HERE.parent.parent / "traces" / "guests"
CC = "s390x-linux-gnu-gcc"
LDFLAGS = ["-static", "-no-pie", "-Wl,--no-warn-rwx-segments", "-Wl,--build-id=none",
           "-T", "link.ld"]


def have_compiler() -> bool:
    return shutil.which(CC) is not None and shutil.which("make") is not None


def _make(*args: str) -> str:
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", str(GUESTS), *args],
                          check=True, capture_output=True, text=True).stdout


def build(out_dir: Path, name: str, sources: list[str], defines: dict | None = None) -> Path:
    """Compiles ``sources`` (names in this directory) into ``out_dir/name.elf``."""
    out = (Path(out_dir) / f"{name}.elf").resolve()
    obj = out.parent / "guestlib" / "obj"
    start, lib = obj / "start.o", obj / "libguest.a"
    _make(f"B={obj.parent}", str(start), str(lib))
    cflags = _make("print-cflags").split()
    defs = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    # in traces/guests, where the flags' -Ilib and link.ld are
    subprocess.run([CC, *cflags, *LDFLAGS, *defs, "-o", str(out), str(start),
                    *(str(HERE / s) for s in sources), str(lib)],
                   cwd=GUESTS, check=True, capture_output=True)
    return out


def bench_zpci(out_dir: Path, loops: int) -> Path:
    return build(out_dir, "bench_zpci", ["bench.c"], {"MODE_ZPCI": 1, "ZPCI_LOOPS": loops})


def bench_virtio(out_dir: Path, loops: int) -> Path:
    return build(out_dir, "bench_virtio", ["bench.c"], {"MODE_VIRTIO": 1, "ZPCI_LOOPS": loops})


def bench_plain(out_dir: Path, loops: int) -> Path:
    return build(out_dir, "bench_plain", ["bench.c"], {"MODE_PLAIN": 1, "PLAIN_LOOPS": loops})


def chatty(out_dir: Path) -> Path:
    return build(out_dir, "chatty", ["chatty.c"])


def privprobe(out_dir: Path) -> Path:
    return build(out_dir, "privprobe", ["privprobe_start.S", "privprobe.c"])


def listprobe(out_dir: Path) -> Path:
    return build(out_dir, "listprobe", ["listprobe.c"])
