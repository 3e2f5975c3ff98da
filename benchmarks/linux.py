"""Debian's s390x kernel under zpci-emu against QEMU: three ratios, each from one run.

1. Boot to /init: `zpci-emu boot` against qemu-system-s390x TCG, same kernel
   and initrd.  Both run Debian's stock kernel (fetched as capture does) with
   the same initramfs (busybox /init: print a marker, uname, power off), the
   same command line, memory and zPCI device, each as a separate process with
   `-append` as capture gives QEMU.  Wall and CPU time (children's
   user+system) of each, the fastest of --repeat, and zpci-emu/QEMU (aim: within
   5x), plus the guest instructions and the zPCI instructions of the zpci-emu
   run.
2. The ``blk-strict`` capture workload's workload phase (its ``workload``
   mark to its ``quiesce`` mark): natively (``native.run_workload``, host time
   at the mark lines) against the QEMU+gdb capture (``zpci-emu capture``, the
   recorder JSONL's mark times ``t``), both run here, each --repeat times
   (the fastest phase of each side; every run's phase is printed);
   QEMU/native (aim: at least 100x).
3. The whole capture, boot included: the wall time of the native run's
   process against that of ``zpci-emu capture``; QEMU/native.

Every process runs one after the other; each figure is printed with its
ratio.  The load average at the start and end is printed: the machine may be
shared, and both sides of a ratio run in the same conditions.
Usage: python benchmarks/linux.py [--repeat N] [--memory MiB] [--workload NAME] [--no-capture]
"""
from __future__ import annotations

import argparse
import json
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
from emulator.capture.qemu import base_args, find_qemu  # noqa: E402

DEVICES = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]


def timed(cmd: list[str]) -> tuple[float, float, bytes]:
    """(wall seconds, child CPU seconds, stdout) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if native.INIT_MARKER.encode() not in p.stdout:
        sys.exit(f"{cmd[0]} did not reach /init (rc {p.returncode}): "
                 f"{p.stderr.decode(errors='replace')[-300:]}")
    return wall, cpu, p.stdout


def best(cmd, repeat):
    runs = [timed(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]


def run_child(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, child CPU seconds, the process) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed (rc {p.returncode}): {p.stderr[-400:]}")
    return wall, cpu, p


def native_child(workload: str) -> None:
    """The native side of ratio 2 and 3, in its own process: one JSON line."""
    with tempfile.TemporaryDirectory(prefix="zpci-bench-native-") as tmp:
        run = native.run_workload(workload, Path(tmp))
    obs = run.observer
    print(json.dumps({"exit": run.result.exit_code, "message": run.result.message,
                      "marks": obs.records, "events": obs.events,
                      "workload": obs.phase_counts("workload"),
                      "ok": all(r["ok"] for r in run.crosscheck)}))


def phase_seconds(marks: list[dict], first="workload", last="quiesce") -> float:
    t = {m["label"]: m["t"] for m in marks}
    return t[last] - t[first]


def qemu_capture(workload: str) -> dict:
    """One QEMU+gdb capture of ``workload``: its wall, CPU, phase and counts."""
    zpci = str(Path(sys.executable).with_name("zpci-emu"))
    with tempfile.TemporaryDirectory(prefix="zpci-bench-capture-") as tmp:
        jsonl = Path(tmp) / "capture.jsonl"
        wall, cpu, _ = run_child([zpci, "capture", "--workload", workload,
                                  "-o", str(Path(tmp) / "capture.zpt"), "--jsonl", str(jsonl)])
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {"wall": wall, "cpu": cpu,
            "phase": phase_seconds([r for r in records if r.get("kind") == "mark"]),
            "events": sum(1 for r in records if "insn" in r),
            "work": workload_events(records),
            "ok": all(r.get("ok") for r in records if r.get("kind") == "fmb_crosscheck")}


def native_capture(workload: str) -> dict:
    """One native run of ``workload`` in its own process, as ``qemu_capture`` reports."""
    wall, cpu, p = run_child([sys.executable, __file__, "--native-workload", workload])
    n = json.loads(p.stdout.splitlines()[-1])
    if n["exit"] != 0:
        sys.exit(f"native {workload} stopped: {n['message']}")
    return {"wall": wall, "cpu": cpu, "phase": phase_seconds(n["marks"]), "events": n["events"],
            "work": sum(n["workload"].values()), "ok": n["ok"]}


def fastest(runs: list[dict]) -> dict:
    """The least disturbed of several runs: each time its minimum (noise only
    adds), the counts of the last run."""
    return {**runs[-1], **{k: min(r[k] for r in runs) for k in ("wall", "cpu", "phase")}}


def capture_ratios(workload: str, repeat: int) -> None:
    q_runs = [qemu_capture(workload) for _ in range(repeat)]
    n_runs = [native_capture(workload) for _ in range(repeat)]
    q, n = fastest(q_runs), fastest(n_runs)
    each = (lambda runs: ", ".join(f"{r['phase']:.2f}" for r in runs))
    print(f"{workload} QEMU+gdb capture : {q['wall']:.1f} s wall, {q['cpu']:.1f} s CPU "
          f"(qemu, gdb, recorder), {q['events']} zPCI instructions, FMB cross-check "
          f"{'OK' if q['ok'] else 'MISMATCH'}; workload phase {q['phase']:.2f} s "
          f"(runs: {each(q_runs)}), {q['work']} of them")
    print(f"{workload} natively        : {n['wall']:.1f} s wall, {n['cpu']:.1f} s CPU, "
          f"{n['events']} zPCI instructions, FMB cross-check {'OK' if n['ok'] else 'MISMATCH'}; "
          f"workload phase {n['phase']:.2f} s (runs: {each(n_runs)}), {n['work']} of them")
    print(f"workload phase        : QEMU+gdb/native = {q['phase'] / n['phase']:.1f}x (aim >= 100)")
    print(f"whole capture         : QEMU+gdb/native = {q['wall'] / n['wall']:.2f}x wall, "
          f"{q['cpu'] / n['cpu']:.2f}x CPU (boot included)")


def workload_events(records: list[dict]) -> int:
    """The recorder's events in the workload phase (the JSONL is in program order)."""
    phase, n = None, 0
    for r in records:
        if r.get("kind") == "mark":
            phase = r["label"]
        elif "insn" in r:
            n += phase == "workload"
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each side; each time is the fastest run's")
    ap.add_argument("--memory", default="512")
    ap.add_argument("--workload", default="blk-strict", help="capture workload of ratios 2 and 3")
    ap.add_argument("--no-capture", action="store_true", help="boot to /init only")
    ap.add_argument("--native-workload", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.native_workload:
        native_child(a.native_workload)
        return
    files = native.fetch()
    print(f"load average at start : {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="zpci-bench-linux-") as tmp:
        tmp = Path(tmp)
        initrd = native.marker_initrd(files.busybox, tmp / "initrd.gz")
        common = ["-kernel", str(files.vmlinuz), "-initrd", str(initrd),
                  "-append", native.APPEND, *DEVICES]
        qemu = [find_qemu(), *base_args(a.memory), "-no-reboot", *common]
        stats = tmp / "stats.json"
        ours = [str(Path(sys.executable).with_name("zpci-emu")), "boot", *base_args(a.memory),
                *common, "--stats", str(stats)]
        q_wall, q_cpu, _ = best(qemu, a.repeat)
        z_wall, z_cpu, _ = best(ours, a.repeat)
        s = json.loads(stats.read_text())
        initrd_size = initrd.stat().st_size
    print(f"kernel                : {files.release}, -m {a.memory}, initrd {initrd_size} bytes")
    print(f"qemu-system-s390x TCG : {q_wall:.1f} s wall, {q_cpu:.1f} s CPU")
    print(f"zpci-emu boot         : {z_wall:.1f} s wall, {z_cpu:.1f} s CPU "
          f"({s['instructions'] / 1e9:.2f} G instructions, "
          f"{s['instructions'] / z_cpu / 1e6:.0f} M/s of CPU time; "
          f"{sum(s['zpci'].values())} zPCI instructions)")
    print(f"boot to /init         : zpci-emu/QEMU = {z_wall / q_wall:.2f} wall, "
          f"{z_cpu / q_cpu:.2f} CPU (aim <= 5)")
    if not a.no_capture:
        capture_ratios(a.workload, a.repeat)
    print(f"load average at end   : {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
