"""Set-up shared by several test modules: the CLI in a subprocess, zpci-emu boot
in-process with the QEMU oracle's arguments, and the benchmark guests' builder."""
from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, text: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m emulator.cli ARGS`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "emulator.cli", *map(str, args)],
                          capture_output=True, text=text, timeout=timeout, cwd=ROOT)


def emulate(elf, extra=(), max_insns: str | None = None, memory: str = "256M"):
    """zpci-emu boot of ``elf`` with the QEMU oracle's command line plus ``extra``:
    (boot result, console bytes)."""
    from emulator.cpu import boot
    from emulator import qemu_args
    from emulator.capture.qemu import base_args
    argv = [*base_args(memory), "-kernel", str(elf), *extra]
    if max_insns is not None:
        argv += ["--max-insns", max_insns]
    out = io.BytesIO()
    result = boot.run(qemu_args.parse(argv), out)
    return result, out.getvalue()


def _load_guest_build():
    spec = importlib.util.spec_from_file_location("guest_build",
                                                  ROOT / "benchmarks" / "guests" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guest_build = _load_guest_build()
