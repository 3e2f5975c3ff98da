"""The named Linux workloads: devices, kernel arguments and the /init script.

Every workload boots the Debian kernel with an initramfs of busybox and the
virtio modules, resets the functions' measurement blocks (debugfs
``pci/<function>/statistics``: ``echo 0`` frees the FMB, which makes QEMU
zero its counters; ``echo 1`` enables it again), runs its I/O, waits longer
than the measurement update interval, prints the statistics between
``ZPCI-STATS`` lines and powers off.

Phases are announced with ``kill -0 <MARK_MAGIC + n>``: the recorder breaks
at the kill syscall and turns it into a mark record, so phase boundaries in
the trace are exact, not guessed from console timing.

Network safety: only ``net-tx`` has a network device, on QEMU's internal
user network with ``restrict=on`` (no forwarding, no route out), IPv6 off;
its packets go to an address nobody answers (static neighbour entry, so no
ARP either): transmit only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MARK_MAGIC = 0x7A700000
PHASES = ["modules", "stats-reset", "workload", "quiesce", "stats-read", "poweroff"]
# Longest wait (guest seconds) for the next measurement-block update: longer
# than the update interval QEMU's group reports (the statistics print it as
# "Update interval": 4000 ms measured under QEMU 7.2).
QUIESCE_SECONDS = 6
BLK_IMAGE_MB = 8
# blk-large: a sparse image read whole with 1 MiB direct reads.  Under
# s390_iommu=strict each segment of a request is mapped (RPCIT) and unmapped
# (RPCIT) on its own, most of them single 4 KiB pages: measured natively,
# 2048 MiB gave 942,086 RPCITs (460 per MiB), so 2560 MiB gives ~1.18 M.
BLK_LARGE_MB = 2560

IOMMU = ",iommu_platform=on,disable-legacy=on"

MOD_VIRTIO = ["virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci"]


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    devices: list[tuple[str, str]]          # (zpci options, device options)
    modules: list[str]
    body: str                               # shell lines of the workload phase
    append: str = ""
    netdev: str | None = None
    blk_image: bool = False
    image_mb: int = BLK_IMAGE_MB            # size of the (sparse) raw image
    native_only: bool = False               # too long for the gdb capture (~14 ms per zPCI insn)
    functions: list[str] = field(default_factory=list)   # PCI names for statistics

    def qemu_devices(self, image_path: str | None = None) -> list[str]:
        out = []
        if self.netdev:
            out += ["-netdev", self.netdev]
        if self.blk_image:
            out += ["-drive", f"file={image_path},format=raw,if=none,id=d0,cache=unsafe"]
        for zpci, dev in self.devices:
            out += ["-device", zpci, "-device", dev]
        return out

    def make_image(self, path) -> None:
        """The workload's raw image at ``path``: sparse, all zeros."""
        with open(path, "wb") as f:
            f.truncate(self.image_mb << 20)


def _fn(uid: int) -> str:
    # Linux names a zPCI function's bus after its UID (uid checking on in QEMU 7.2)
    return f"{uid:04x}:00:00.0"


_BLK_BODY = f"""
dd if=/dev/urandom of=/tmp/pat bs=4096 count=64 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=4096 count=64 oflag=direct conv=fsync 2>/dev/null
dd if=/dev/vda of=/tmp/back bs=4096 count=64 iflag=direct 2>/dev/null
cmp /tmp/pat /tmp/back && echo "blk: 256 KiB written and read back OK"
dd if=/dev/vda of=/dev/null bs=65536 count={BLK_IMAGE_MB * 16} iflag=direct 2>/dev/null
"""

# 1 MiB of 4 KiB direct writes at the image's end, read back and compared,
# then the whole image in 1 MiB direct reads (blk-large)
_BLK_LARGE_BODY = f"""
dd if=/dev/urandom of=/tmp/pat bs=4096 count=256 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=4096 count=256 seek={(BLK_LARGE_MB - 1) * 256} oflag=direct conv=fsync 2>/dev/null
dd if=/dev/vda of=/tmp/back bs=4096 count=256 skip={(BLK_LARGE_MB - 1) * 256} iflag=direct 2>/dev/null
cmp /tmp/pat /tmp/back && echo "blk: 1 MiB written and read back OK"
dd if=/dev/vda of=/dev/null bs=1M count={BLK_LARGE_MB} iflag=direct 2>/dev/null && echo "blk: {BLK_LARGE_MB} MiB read"
"""

WORKLOADS = {w.name: w for w in [
    Workload(
        name="boot", summary="boot, virtio-pci module load and probe of a virtio-rng and a virtio-net function",
        devices=[("zpci,uid=1,fid=1,target=r0", "virtio-rng-pci,id=r0"),
                 ("zpci,uid=2,fid=2,target=n0", "virtio-net-pci,id=n0,netdev=u0")],
        netdev="user,id=u0,restrict=on,ipv6=off",
        modules=MOD_VIRTIO + ["virtio-rng", "failover", "net_failover", "virtio_net"],
        body="true\n", functions=[_fn(1), _fn(2)]),
    Workload(
        name="blk-strict", summary="virtio-blk direct reads and writes on an 8 MiB raw image, s390_iommu=strict",
        devices=[("zpci,uid=1,fid=1,target=b0", "virtio-blk-pci,id=b0,drive=d0" + IOMMU)],
        blk_image=True, append="s390_iommu=strict",
        modules=MOD_VIRTIO + ["virtio_blk"], body=_BLK_BODY, functions=[_fn(1)]),
    Workload(
        name="blk-large",
        summary=f"virtio-blk direct reads of a {BLK_LARGE_MB} MiB sparse raw image, "
                "s390_iommu=strict: over 1 M zPCI instructions (native runs; too long "
                "for the gdb capture)",
        devices=[("zpci,uid=1,fid=1,target=b0", "virtio-blk-pci,id=b0,drive=d0" + IOMMU)],
        blk_image=True, image_mb=BLK_LARGE_MB, append="s390_iommu=strict", native_only=True,
        modules=MOD_VIRTIO + ["virtio_blk"], body=_BLK_LARGE_BODY, functions=[_fn(1)]),
    Workload(
        name="blk-lazy", summary="virtio-blk direct reads and writes on an 8 MiB raw image, lazy unmap (default)",
        devices=[("zpci,uid=1,fid=1,target=b0", "virtio-blk-pci,id=b0,drive=d0" + IOMMU)],
        blk_image=True,
        modules=MOD_VIRTIO + ["virtio_blk"], body=_BLK_BODY, functions=[_fn(1)]),
    Workload(
        name="rng", summary="16 reads of 64 bytes from /dev/hwrng (virtio-rng)",
        devices=[("zpci,uid=1,fid=1,target=r0", "virtio-rng-pci,id=r0" + IOMMU)],
        modules=MOD_VIRTIO + ["virtio-rng"],
        body="dd if=/dev/hwrng of=/dev/null bs=64 count=16 2>/dev/null && echo 'rng: 1 KiB read'\n",
        functions=[_fn(1)]),
    Workload(
        name="net-tx", summary="virtio-net transmit only: 20 UDP-less ICMP echo requests of 1000 B to a silent address",
        devices=[("zpci,uid=1,fid=1,target=n0", "virtio-net-pci,id=n0,netdev=u0" + IOMMU)],
        netdev="user,id=u0,restrict=on,ipv6=off",
        modules=MOD_VIRTIO + ["failover", "net_failover", "virtio_net"],
        body="""
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip neigh add 10.0.2.99 lladdr 52:54:00:00:00:99 dev eth0 nud permanent
ping -c 20 -i 0.1 -s 1000 -W 1 10.0.2.99 >/dev/null 2>&1
echo "net-tx: 20 packets sent"
ip link set eth0 down
""", functions=[_fn(1)]),
]}


def init_script(w: Workload, module_files: list[str]) -> str:
    """The /init of the initramfs (busybox sh)."""
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
        "mount -t debugfs debugfs /sys/kernel/debug",
        "mount -t tmpfs tmpfs /tmp",
        f"mark() {{ kill -0 $(({MARK_MAGIC} + $1)) 2>/dev/null; echo \"=== MARK $2\"; }}",
        f"mark {PHASES.index('modules')} modules",
    ]
    lines += [f"insmod /lib/modules/{m} || echo 'insmod {m} failed'" for m in module_files]
    # quality 0 stops khwrngd, which otherwise refills the entropy pool from
    # virtio-rng every few seconds, also during the quiesce phase
    lines += ["q=/sys/class/misc/hw_random/rng_quality",
              "[ -e $q ] && echo 0 > $q && echo \"hwrng quality $(cat $q)\"",
              "sleep 1",
              f"mark {PHASES.index('stats-reset')} stats-reset"]
    for fn in w.functions:
        st = f"/sys/kernel/debug/pci/{fn}/statistics"
        lines += [f"if [ -e {st} ]; then echo 0 > {st}; echo 1 > {st}; "
                  f"else echo 'ZPCI-STATS-MISSING {fn}'; fi"]
    lines += [f"mark {PHASES.index('workload')} workload", w.body.strip(),
              f"mark {PHASES.index('quiesce')} quiesce"]
    # Wait for the next measurement-block update after the workload, then
    # read at once: the counters then cover the whole workload and as little
    # as possible after it.  The update time is the changing field (QEMU's
    # first update writes sample count 0, the value a fresh FMB already has).
    for fn in w.functions:
        st = f"/sys/kernel/debug/pci/{fn}/statistics"
        lines += [f"s0=$(grep 'Last update' {st}); n=0",
                  f"while [ \"$(grep 'Last update' {st})\" = \"$s0\" ] && [ $n -lt {QUIESCE_SECONDS * 10} ]; "
                  "do sleep 0.1; n=$((n+1)); done"]
    lines += [f"mark {PHASES.index('stats-read')} stats-read"]
    for fn in w.functions:
        st = f"/sys/kernel/debug/pci/{fn}/statistics"
        lines += [f"echo 'ZPCI-STATS-BEGIN {fn}'", f"cat {st}", f"echo 'ZPCI-STATS-END {fn}'"]
    lines += [f"mark {PHASES.index('poweroff')} poweroff", "poweroff -f", ""]
    return "\n".join(lines)


def parse_stats(console_lines: list[str]) -> dict[str, dict[str, int]]:
    """Statistics blocks from the console: {function: {counter name: value}}."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in console_lines:
        if line.startswith("ZPCI-STATS-BEGIN "):
            cur = line.split(None, 1)[1].strip()
            out[cur] = {}
        elif line.startswith("ZPCI-STATS-END"):
            cur = None
        elif cur is not None and ":" in line:
            k, _, v = line.partition(":")
            v = v.strip().split()
            if v:
                try:
                    out[cur][k.strip()] = int(v[0], 0)
                except ValueError:
                    pass
    return out
