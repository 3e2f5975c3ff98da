"""A workload too large for the gdb capture, run natively: ``blk-large``.

Debian's kernel under ``zpci-emu boot`` (emulator/capture/native.py
``run_workload``) reads a 2.5 GiB sparse raw image whole through virtio-blk
with ``s390_iommu=strict`` (emulator/capture/workloads.py), over a million
zPCI instructions in its workload phase.  Prints the zPCI instructions
(total and per mnemonic in the workload phase), wall and CPU seconds of the
whole run and of the workload phase (host time at its phase marks), the
guest instructions, the FMB cross-check (the guest's own 64-bit counters
against the model's instructions) and this process's peak RSS.  The
machine may be shared: the load average at start and end is printed.

``--trace OUT`` instead runs the chain that makes its trace, replays it and
reports it, once ``zpci-emu capture --engine native`` exists:
``capture --engine native --workload blk-large -o OUT``, ``replay --check
OUT``, ``report OUT``.

Usage: python benchmarks/linux_large.py [--workload NAME] [--trace OUT]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.capture import native  # noqa: E402
from emulator.capture.linux import FMB_COUNTERS  # noqa: E402
from emulator.capture.workloads import PHASES  # noqa: E402

ZPCI_EMU = str(Path(sys.executable).with_name("zpci-emu"))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def trace_chain(workload: str, out: str) -> int:
    """capture --engine native, replay --check, report: the one command of the README."""
    helptext = subprocess.run([ZPCI_EMU, "capture", "--help"], capture_output=True, text=True)
    if "--engine" not in helptext.stdout:
        print("zpci-emu capture has no --engine yet (the native capture engine is not merged)",
              file=sys.stderr)
        return 1
    for cmd in (["capture", "--engine", "native", "--workload", workload, "-o", out],
                ["replay", "--check", out], ["report", out]):
        t0 = time.perf_counter()
        rc = subprocess.run([ZPCI_EMU, *cmd]).returncode
        print(f"zpci-emu {' '.join(cmd)}: exit {rc}, {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        if rc != 0:
            return rc
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="blk-large")
    ap.add_argument("--trace", metavar="OUT")
    a = ap.parse_args()
    if a.trace:
        sys.exit(trace_chain(a.workload, a.trace))
    print(f"load average at start : {load()} ({os.cpu_count()} CPUs)")
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="zpci-bench-large-") as tmp:
        run = native.run_workload(a.workload, Path(tmp))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    obs = run.observer
    marks = [r["label"] for r in obs.records]
    work = obs.phase_counts("workload")
    phase = obs.phase_seconds("workload", "quiesce")
    stats = run.result.stats
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"workload              : {a.workload}, exit {run.result.exit_code}"
          f"{'' if run.result.message is None else ' ' + run.result.message}")
    print(f"phases                : {' '.join(marks)}{'' if marks == PHASES else ' (INCOMPLETE)'}")
    print(f"zPCI instructions     : {obs.events} in the run, {sum(work.values())} in the "
          f"workload phase ({', '.join(f'{k} {v}' for k, v in sorted(work.items()))})")
    print(f"guest instructions    : {stats['instructions'] / 1e9:.2f} G")
    print(f"whole run             : {wall:.1f} s wall, {cpu:.1f} s CPU (boot included)")
    if phase:
        print(f"workload phase        : {phase:.1f} s wall, "
              f"{sum(work.values()) / phase:,.0f} zPCI instructions/s")
    for row in run.crosscheck:
        c = row.get("counters", {})
        print(f"FMB cross-check       : {row['function']} {'OK' if row['ok'] else 'MISMATCH'}, "
              "guest/model " + ", ".join(f"{FMB_COUNTERS[k]} {v['guest']}/{v['trace']}"
                                         for k, v in c.items()))
    print(f"peak RSS              : {rss:.0f} MB")
    print(f"load average at end   : {load()}")
    for line in run.console_lines:
        if line.startswith("blk:"):
            print(f"guest                 : {line}")


if __name__ == "__main__":
    main()
