"""Boot to /init: `zpci-emu boot` against qemu-system-s390x TCG, same kernel and initrd.

Both run Debian's stock kernel (fetched as capture does) with the same
initramfs (busybox /init: print a marker, uname, power off), the same
command line, memory and zPCI device, each as a separate process with
`-append` as capture gives QEMU.  Prints wall and CPU time (children's
user+system) of each, best of --repeat, and the ratio zpci-emu/QEMU (the
issue's aim: within 5x), plus the guest instructions and the clock and zPCI
instructions of the zpci-emu run.  The load average at the start is
printed: the machine is shared, and both sides run in the same conditions.
Usage: python benchmarks/linux.py [--repeat N] [--memory MiB]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--memory", default="512")
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
