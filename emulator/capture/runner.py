"""Run a guest under qemu-system-s390x with the gdbstub and the recorder.

QEMU starts stopped (``-S``) with its gdbstub on a private unix socket (no
TCP port: nothing outside this process pair can attach).  gdb-multiarch runs
``gdb_recorder.py``, which sets the breakpoints, records, and lets the guest
run to its end (power-off or QEMU's quiesce exit).  The console goes to a
file, each line stamped with the host time it arrived.

``ZPCI_CAPTURE_DEBUG=1`` makes the recorder also log the mark-breakpoint hits
it could not match (``mark_miss`` records with the raw pt_regs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.errors import UserError

RECORDER = Path(__file__).with_name("gdb_recorder.py")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"{name} not found: apt-get install {package}")
    return path


def check_network_safe(args: list[str]) -> None:
    """Refuse QEMU arguments that could let the guest reach outside QEMU.

    Allowed: no network, ``user`` with ``restrict=on`` and no forwarding, a
    ``hubport``; anything else (tap, bridge, socket, forwards) is refused.
    """
    for i, a in enumerate(args):
        if a in ("-netdev", "-nic", "-net") and i + 1 < len(args):
            spec = args[i + 1]
            kind, _, rest = spec.partition(",")
            opts = dict(p.partition("=")[::2] for p in rest.split(",") if p)
            if a == "-net" and kind == "none":
                continue
            if kind == "hubport":
                continue
            if kind == "user" and opts.get("restrict") in ("on", "yes", "y") and not any(
                    k in opts for k in ("hostfwd", "guestfwd", "smb", "tftp", "bootfile")):
                continue
            raise UserError(f"unsafe guest network {a} {spec}: only user,restrict=on (no "
                            "forwarding) or a hubport are allowed")
        if "hostfwd" in a or "guestfwd" in a:
            raise UserError(f"port forwarding refused: {a}")


@dataclass
class RunResult:
    jsonl: Path
    console: list[tuple[float, str]] = field(default_factory=list)
    qemu_rc: int | None = None
    gdb_rc: int | None = None
    seconds: float = 0.0
    gdb_stderr: str = ""


def _pump(stream, sink: list, logf):
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        sink.append((time.time(), line))
        if logf:
            logf.write(line + "\n")
            logf.flush()


# seconds between two progress reports
PROGRESS_INTERVAL = 0.5


def watch(stop: threading.Event, progress, t0: float, jsonl: Path, console: list,
          interval: float = PROGRESS_INTERVAL) -> None:
    """Until ``stop``: ``progress(seconds, records, last console line)`` every ``interval``.

    ``records`` counts the lines the recorder has written to ``jsonl`` so far
    (read incrementally; the recorder buffers, so it rises in steps).
    """
    records = pos = 0
    while not stop.wait(interval):
        try:
            with open(jsonl, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except OSError:
            chunk = b""
        pos += len(chunk)
        records += chunk.count(b"\n")
        progress(time.time() - t0, records, console[-1][1] if console else "")


def run(qemu_args: list[str], sites, out_jsonl: Path, *, mark: dict | None = None,
        timeout: float = 600, console_log: Path | None = None, max_events: int = 0,
        memory: int = 0, dma_tables: bool = True, progress=None) -> RunResult:
    """Boot QEMU with ``qemu_args`` (no gdb options) and record into ``out_jsonl``.

    ``dma_tables``: record the DMA table entries each RPCIT walks; off, the
    recording is what linux-guest-traces.md's recipe writes (registers and
    operand blocks only).

    ``progress``, if given, is called as ``watch`` describes while the guest
    runs, and once more with seconds None when the recording has ended.
    """
    qemu = need_tool("qemu-system-s390x", "qemu-system-misc")
    gdb = need_tool("gdb-multiarch", "gdb-multiarch")
    check_network_safe(qemu_args)
    out_jsonl = Path(out_jsonl)
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zpci-capture-") as tmp:
        sock = os.path.join(tmp, "gdb.sock")
        cfg = os.path.join(tmp, "cfg.json")
        with open(cfg, "w") as f:
            json.dump({"target": sock, "out": str(out_jsonl), "max_events": max_events,
                       "memory": memory, "dma_tables": dma_tables,
                       "sites": [s.to_json() for s in sites], "mark": mark,
                       "debug_marks": bool(os.environ.get("ZPCI_CAPTURE_DEBUG"))}, f)
        cmd = [qemu, *qemu_args, "-S", "-gdb", f"unix:{sock},server=on,wait=off"]
        logf = open(console_log, "w") if console_log else None
        t0 = time.time()
        q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        res = RunResult(jsonl=out_jsonl)
        pump = threading.Thread(target=_pump, args=(q.stdout, res.console, logf), daemon=True)
        pump.start()
        g = None
        try:
            for _ in range(200):                      # the socket appears once QEMU is up
                if os.path.exists(sock) or q.poll() is not None:
                    break
                time.sleep(0.05)
            if not os.path.exists(sock):
                pump.join(2)
                msg = " | ".join(l for _, l in res.console[-3:]) or f"exit status {q.poll()}"
                raise UserError(f"qemu-system-s390x did not start: {msg}")
            g = subprocess.Popen([gdb, "-nx", "-batch", "-x", str(RECORDER)],
                                 env=dict(os.environ, ZPCI_CAPTURE_CONFIG=cfg),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            stop = threading.Event()
            ticker = None
            if progress is not None:
                ticker = threading.Thread(target=watch, daemon=True,
                                          args=(stop, progress, t0, out_jsonl, res.console))
                ticker.start()
            try:
                _, err = g.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                g.kill()
                _, err = g.communicate()
                raise UserError(f"capture did not finish within {timeout:.0f} s "
                                f"(guest hung? see the console log)")
            finally:
                stop.set()
                if ticker is not None:
                    ticker.join()
                    progress(None, 0, "")
            res.gdb_rc = g.returncode
            res.gdb_stderr = err.decode("utf-8", "replace")
            try:
                res.qemu_rc = q.wait(timeout=30)
            except subprocess.TimeoutExpired:
                q.kill()
                res.qemu_rc = q.wait()
        finally:
            for p in (g, q):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            pump.join(5)
            if logf:
                logf.close()
        res.seconds = time.time() - t0
    if res.gdb_rc not in (0, None) or "gdb_recorder:" in res.gdb_stderr:
        line = [l for l in res.gdb_stderr.splitlines() if "gdb_recorder" in l or "rror" in l]
        raise UserError(f"recorder failed: {(line or ['exit status %s' % res.gdb_rc])[-1]}")
    return res


def read_jsonl(path: Path):
    from emulator.trace.importer import jsonl_records
    return jsonl_records(path)
