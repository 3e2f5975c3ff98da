"""The command-line contract, and a fast way to hold every subcommand to it.

Contract (README, "Errors"): a run that fails exits 1 for bad input and 2 for
bad usage and writes exactly one line ``zpci-emu: <where>: <what>`` on
stderr: no traceback, no hang, bounded memory, and no output file left
behind.

``run_cli_forked`` runs ``emulator.cli.main`` in a forked child of the test
process (the tool's modules are imported once, so a case costs
milliseconds, not a Python start-up), with the bounds the contract
promises enforced from outside: the child is killed after ``timeout``
seconds, and its address space may grow by at most ``memory`` bytes
(RLIMIT_AS).  Its stdin is /dev/null; stdout and stderr go to files.
"""
from __future__ import annotations

import functools
import io
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 60.0          # generous: the machine may be loaded; a hang is a failure anyway
MEMORY = 2 << 30
ESCAPED = 99           # exit status of a child whose main() let an exception out


@dataclass
class CliRun:
    argv: list
    rc: int | None          # None: killed (hang or signal)
    stdout: bytes
    stderr: str
    hung: bool = False
    signal: int | None = None

    def why(self) -> str:
        return f"argv={self.argv!r} rc={self.rc} hung={self.hung} signal={self.signal}\n" \
               f"stderr={self.stderr[:2000]!r}"


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(argv, cwd, memory, out, err, env) -> int:
    os.setpgid(0, 0)             # its own group: whatever it starts (QEMU) ends with it
    os.chdir(cwd)
    os.environ.update(env)
    limit = _vm_size() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdin = open(0, closefd=False)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding="utf-8")
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                  encoding="utf-8", errors="backslashreplace", line_buffering=True)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)     # as the Python start-up sets it
    from emulator.cli import main
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = ESCAPED
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
        rc = ESCAPED
    return rc


@functools.lru_cache(maxsize=None)
def _preload() -> None:
    """Every subcommand's modules, imported once in the parent: forked cases then start at once."""
    from emulator.cli import build_parser
    build_parser()
    import emulator.cpu.boot  # noqa: F401
    import emulator.report  # noqa: F401  (and the replay it runs)
    import emulator.trace.importer  # noqa: F401


def run_cli_forked(argv, cwd, timeout: float = TIMEOUT, memory: int = MEMORY,
                   env: dict | None = None) -> CliRun:
    _preload()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:           # pragma: no cover - the child
            rc = ESCAPED
            try:
                rc = _child(argv, cwd, memory, out.fileno(), err.fileno(), env or {})
            finally:
                os._exit(rc & 0xFF)
        try:
            os.setpgid(pid, pid)         # as the child does: set before either may kill it
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        hung = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                hung = True
                break
            time.sleep(0.002)
        try:
            os.killpg(pid, signal.SIGKILL)       # anything of the case's still running
        except (ProcessLookupError, PermissionError):
            pass
        out.seek(0)
        err.seek(0)
        run = CliRun(list(argv), None, out.read(),
                     err.read().decode("utf-8", "backslashreplace"), hung=hung)
        if os.WIFEXITED(status) and not hung:
            run.rc = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status) and not hung:
            run.signal = os.WTERMSIG(status)
        return run


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (files and folders), sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def assert_contract(run: CliRun, rc: int) -> None:
    """A failed run as the contract wants it (``rc`` 1 or 2), or a clean success (0)."""
    assert not run.hung, "hung: " + run.why()
    assert run.signal is None, "killed by a signal: " + run.why()
    assert "Traceback" not in run.stderr, run.why()
    assert "internal error" not in run.stderr, run.why()
    assert run.rc == rc, run.why()
    if rc == 0:
        return
    lines = run.stderr.split("\n")
    assert len(lines) == 2 and lines[1] == "", "not one line: " + run.why()
    assert lines[0].startswith("zpci-emu: ") and lines[0].isprintable(), run.why()
