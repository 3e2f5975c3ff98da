"""Run a bare-metal guest ELF under qemu-system-s390x (the reference oracle).

The fixed part of the command line is the recipe of docs qemu-oracle.md:
TCG, ``-cpu qemu``, no default devices, an SCLP console on stdio.  The guest
prints over the SCLP console and ends with a disabled-wait PSW whose address
ends in 0xfff, which QEMU treats as "signal quiesce" (exit status 0).

``programs()`` reads ``traces/guests/programs.json``: program name -> the
QEMU arguments that follow ``-kernel ELF`` (the ``-device`` strings).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import UserError

QEMU_BINARY = "qemu-system-s390x"
REPO_ROOT = Path(__file__).resolve().parents[2]
GUESTS_DIR = REPO_ROOT / "traces" / "guests"
PROGRAMS_JSON = GUESTS_DIR / "programs.json"


@dataclass(frozen=True)
class QemuResult:
    stdout: bytes
    exit_code: int | None        # None when the run was killed on timeout
    timed_out: bool
    stderr: bytes = b""
    argv: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.stdout.decode("ascii", errors="replace")

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def find_qemu(explicit: str | None = None) -> str:
    """Path of qemu-system-s390x: `explicit`, $ZPCI_QEMU, or the PATH."""
    cand = explicit or os.environ.get("ZPCI_QEMU") or QEMU_BINARY
    path = shutil.which(cand)
    if path is None:
        raise UserError(f"{cand} not found (install qemu-system-misc, or set ZPCI_QEMU)",
                        where="qemu")
    return path


def qemu_version(qemu: str | None = None) -> str:
    """First line of `qemu-system-s390x --version` (the oracle must be pinned)."""
    out = subprocess.run([find_qemu(qemu), "--version"], capture_output=True, timeout=30)
    return out.stdout.decode(errors="replace").splitlines()[0] if out.stdout else ""


def base_args(memory: str = "256M") -> list[str]:
    """The fixed arguments of every oracle run (before -kernel)."""
    return ["-nodefaults", "-nographic",
            "-machine", "s390-ccw-virtio,accel=tcg", "-cpu", "qemu", "-m", str(memory),
            "-chardev", "stdio,id=con0", "-device", "sclpconsole,chardev=con0"]


def command_line(elf: str | os.PathLike, extra_args: list[str] | tuple[str, ...] = (),
                 memory: str = "256M", qemu: str | None = None) -> list[str]:
    return [find_qemu(qemu), *base_args(memory), "-kernel", str(elf), *extra_args]


def run_qemu(elf: str | os.PathLike, extra_args: list[str] | tuple[str, ...] = (),
             memory: str = "256M", timeout: float = 60, qemu: str | None = None) -> QemuResult:
    """Boot `elf` under QEMU with `extra_args` after ``-kernel ELF``.

    Raises UserError if QEMU or the ELF is missing.  A run that does not end
    within `timeout` seconds is killed and reported with timed_out=True.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise UserError("no such guest ELF", where=str(elf))
    argv = command_line(elf, extra_args, memory=memory, qemu=qemu)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise UserError(f"cannot run: {exc.strerror or exc}", where=argv[0]) from None
    try:
        out, err = proc.communicate(timeout=timeout)
        return QemuResult(out, proc.returncode, False, err, tuple(argv))
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return QemuResult(out, None, True, err, tuple(argv))


def programs(path: str | os.PathLike = PROGRAMS_JSON) -> dict[str, list[str]]:
    """Program name -> QEMU arguments after ``-kernel ELF``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError("no such file", where=str(path)) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"not a valid programs list ({exc})", where=str(path)) from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
            for k, v in data.items()):
        raise UserError("expected an object of program name -> list of strings",
                        where=str(path))
    return data


def elf_path(name: str, guests_dir: str | os.PathLike = GUESTS_DIR) -> Path:
    return Path(guests_dir) / "build" / f"{name}.elf"


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator.capture.qemu NAME|ELF [qemu args...]``: print the guest output."""
    import sys
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m emulator.capture.qemu PROGRAM|ELF [QEMU ARGS...]", file=sys.stderr)
        return 2
    try:
        target, extra = args[0], args[1:]
        if target.endswith(".elf") or os.sep in target:
            res = run_qemu(target, extra)
        else:
            res = run_qemu(elf_path(target), extra or programs().get(target, []))
    except UserError as exc:
        print(f"zpci-emu: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(res.text)
    if res.timed_out:
        print("zpci-emu: qemu: timed out", file=sys.stderr)
        return 124
    return res.exit_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
