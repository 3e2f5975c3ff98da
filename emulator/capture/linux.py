"""Capture a Debian s390x Linux guest: kernel, initramfs, QEMU run, checks.

Cache layout (under ``cache_root()``, i.e. ``$XDG_CACHE_HOME/zpci-emu``):
``apt/`` the private apt state and the downloaded .debs; ``kernel/<pkg>_<ver>/``
the unpacked kernel package plus ``sites-v2.json`` (the sites and the mark
symbol's address, found once per kernel); ``captures/`` the recorder's JSONL
and console log of each capture.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from emulator.capture import kernel as K
from emulator.capture import runner
from emulator.capture.apt import PrivateApt, cache_root, deb_version, extract_deb
from emulator.capture.initramfs import Cpio
from emulator.capture.sites import Site, scan_kernel
from emulator.capture.workloads import (MARK_MAGIC, PHASES, WORKLOADS,
                                        init_script, parse_stats)
from emulator.errors import UserError
from emulator.qemu_args import split_device
from emulator.capture.qemu import base_args

DEFAULT_KERNEL = "linux-image-6.1.0-50-s390x"
MEMORY_MB = 1024
MARK_SYMBOL = "__s390x_sys_kill"
# struct pt_regs: args[1], psw (16 bytes), gprs[16] at +24, orig_gpr2 at +152
# (measured: the pid of ``kill -0 MAGIC`` sits at +152, its signal 0 at +48)
PT_REGS_ORIG_GPR2 = 24 + 16 * 8
PT_REGS_GPR3 = 24 + 3 * 8
# FMB counters of the statistics file and the instruction each one counts
FMB_COUNTERS = {"Load operations": "PCILG", "Store operations": "PCISTG",
                "Store block operations": "PCISTB", "Refresh operations": "RPCIT"}
FMB_INSNS = frozenset(FMB_COUNTERS.values())


@dataclass
class KernelBundle:
    package: str
    version: str
    root: Path
    vmlinuz: Path
    release: str
    sites: list[Site]
    mark_addr: int

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib/modules" / self.release


REQUIRED_CONFIG = ("CONFIG_PCI=y", "CONFIG_S390_IOMMU=y", "CONFIG_DEBUG_FS=y", "CONFIG_KALLSYMS=y")


def check_config(text: str, release: str) -> None:
    """UserError unless the kernel config has what a capture needs."""
    have = set(text.splitlines())
    for opt in REQUIRED_CONFIG:
        if opt not in have:
            raise UserError(f"kernel {release} lacks {opt} (no zPCI support to capture); "
                            f"use a Debian s390x kernel such as {DEFAULT_KERNEL}")


def prepare_kernel(package: str = DEFAULT_KERNEL, apt: PrivateApt | None = None) -> KernelBundle:
    apt = apt or PrivateApt()
    deb = apt.download(package)
    version = deb_version(deb)
    root = extract_deb(deb, cache_root() / "kernel" / f"{package}_{version}")
    vml = sorted((root / "boot").glob("vmlinuz-*"))
    if not vml:
        raise UserError(f"{package} has no /boot/vmlinuz-*", where=str(deb))
    release = vml[0].name[len("vmlinuz-"):]
    config = root / "boot" / f"config-{release}"
    if config.exists():
        check_config(config.read_text(), release)
    cache = root / "sites-v2.json"
    if cache.exists():
        d = json.loads(cache.read_text())
    else:
        img = K.extract_image(vml[0].read_bytes(), where=str(vml[0]))
        syms = K.kallsyms(img)
        sites = scan_kernel(img, syms, K.IMAGE_BASE)
        if not any(s.mnemonic == "PCILG" for s in sites):
            raise UserError(f"kernel {release} has no PCILG instruction: no zPCI support")
        mark = [s.addr for s in syms if s.name == MARK_SYMBOL]
        if not mark:
            raise UserError(f"kernel {release} has no {MARK_SYMBOL} symbol")
        d = {"sites": [s.to_json() for s in sites], "mark_addr": mark[0]}
        cache.write_text(json.dumps(d, indent=1))
    return KernelBundle(package=package, version=version, root=root, vmlinuz=vml[0],
                        release=release, sites=[Site(**s) for s in d["sites"]],
                        mark_addr=d["mark_addr"])


def module_order(kb: KernelBundle, wanted: list[str]) -> list[Path]:
    """Module files for ``wanted`` and their dependencies, dependencies first."""
    files = {p.name[:-3].replace("-", "_"): p for p in kb.modules_dir.rglob("*.ko")}
    order: list[Path] = []

    def visit(name, stack=()):
        key = name.replace("-", "_")
        if key not in files:
            raise UserError(f"module {name} not in {kb.package}")
        p = files[key]
        if p in order or key in stack:
            return
        for dep in K.read_modules_deps(p.read_bytes()):
            visit(dep, stack + (key,))
        order.append(p)

    for m in wanted:
        visit(m)
    return order


def build_initrd(kb: KernelBundle, busybox: Path, workload, dest: Path) -> Path:
    mods = module_order(kb, workload.modules)
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "lib", "lib/modules", "etc"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    for m in mods:
        c.file(f"lib/modules/{m.name}", m.read_bytes())
    c.file("init", init_script(workload, [m.name for m in mods]).encode(), 0o755)
    return c.write_gz(dest)


def qemu_args(kb: KernelBundle, initrd: Path, workload, image: Path | None) -> list[str]:
    # rng_core.default_quality=0: no khwrngd refilling the entropy pool from
    # virtio-rng behind the workload's back (it would touch the function
    # during the quiesce phase, after the guest's last counter update)
    append = " ".join(x for x in ("console=ttysclp0 nokaslr quiet loglevel=4 rdinit=/init "
                                  "rng_core.default_quality=0",
                                  workload.append) if x)
    return [*base_args(str(MEMORY_MB)), "-smp", "1",
            "-kernel", str(kb.vmlinuz), "-initrd", str(initrd), "-append", append,
            "-no-reboot", *workload.qemu_devices(str(image) if image else None)]


# -- statistics cross-check ------------------------------------------------------

def _fh_of(rec) -> int | None:
    """The function handle an event addresses (without the enable bit)."""
    ops, gr = rec["operands"], [int(x, 16) for x in rec["gr_before"]]
    insn = rec["insn"]
    if insn in ("PCILG", "PCISTG"):
        return (gr[ops["r2"]] >> 32) & 0x7FFFFFFF
    if insn in ("RPCIT", "MPCIFC", "PCISTB", "STPCIFC"):
        return (gr[ops["r1"]] >> 32) & 0x7FFFFFFF
    return None


def _fmb_addr(rec) -> int | None:
    mb = rec.get("mem_before")
    if rec["insn"] != "MPCIFC" or not mb or len(mb) < 2 * 72:
        return None
    gr = [int(x, 16) for x in rec["gr_before"]]
    if gr[rec["operands"]["r1"]] & 0xFF != 0x0A:       # set measurement parameters
        return None
    return int(mb[128:144], 16)


def crosscheck(records, stats: dict[str, dict[str, int]], functions: list[str]) -> list[dict]:
    """``FmbWindow`` over the recorder's records (JSONL dicts, in order)."""
    win = FmbWindow()
    for r in records:
        if r.get("kind") == "mark":
            win.mark(r["label"])
        elif "insn" in r:
            win.event(r["insn"], _fh_of(r), r["cc"], r.get("pgm"),
                      fmb_free=r["insn"] == "MPCIFC" and _fmb_addr(r) == 0)
    return win.rows(stats, functions)


class FmbWindow:
    """The trace's counts to compare with the guest's FMB counters, per function.

    Fed in program order with the phase marks and one call per zPCI
    instruction, it keeps counts only (a run of a million instructions keeps
    no record of each).  Window: from the MPCIFC that freed the function's
    measurement block in the ``stats-reset`` phase (QEMU zeroes its counters
    there) to the ``stats-read`` mark; counted: the function's
    PCILG/PCISTG/PCISTB/RPCIT that completed with cc 0 (QEMU counts only
    those).
    """

    def __init__(self):
        self.phase: str | None = None
        self.windows: list[tuple[int, Counter, list[int]]] = []   # (fh, counts, [late])
        self.read: list[tuple[Counter, int]] | None = None        # windows at stats-read

    def mark(self, label: str) -> None:
        self.phase = label
        if label == "stats-read":
            self.read = [(Counter(c), late[0]) for _, c, late in self.windows]

    def event(self, insn: str, fh: int | None, cc: int | None, pgm: int | None,
              fmb_free: bool = False) -> None:
        """One instruction: ``fh`` the handle it names (None: none), ``fmb_free``
        an MPCIFC setting the measurement parameters with FMB address 0."""
        if cc != 0 or pgm is not None:
            return
        if fmb_free and self.phase == "stats-reset":
            self.windows.append((fh, Counter(), [0]))
            return
        quiesce = self.phase == "quiesce" and insn in FMB_INSNS
        for wfh, counts, late in self.windows:
            if wfh == fh:
                counts[insn] += 1
                late[0] += quiesce

    def rows(self, stats: dict[str, dict[str, int]], functions: list[str]) -> list[dict]:
        rows = []
        for k, fn in enumerate(functions):
            guest = stats.get(fn)
            if guest is None or k >= len(self.windows) or self.read is None:
                rows.append({"function": fn, "ok": False,
                             "reason": "no statistics / reset / read mark recorded"})
                continue
            fh = self.windows[k][0]
            # a window opened after the last stats-read mark counted nothing before it
            counts, late = self.read[k] if k < len(self.read) else (Counter(), 0)
            cmp = {name: {"trace": counts.get(insn, 0), "guest": guest.get(name)}
                   for name, insn in FMB_COUNTERS.items()}
            ok = all(v["guest"] is not None and v["trace"] == v["guest"] for v in cmp.values())
            rows.append({"function": fn, "fh": "%x" % fh, "ok": ok, "counters": cmp,
                         "update_interval_ms": guest.get("Update interval"),
                         "samples": guest.get("Samples"), "events_after_workload": late})
        return rows


# -- the capture ---------------------------------------------------------------------

def capture(workload_name: str, out: Path, *, package: str = DEFAULT_KERNEL,
            jsonl: Path | None = None, timeout: float = 900, log=print,
            dma_tables: bool = True, progress=None) -> dict:
    if workload_name not in WORKLOADS:
        raise UserError(f"unknown workload {workload_name!r} (one of {', '.join(WORKLOADS)})")
    w = WORKLOADS[workload_name]
    if w.native_only:
        raise UserError(f"workload {w.name} is too long for the QEMU+gdb capture (over a million "
                        f"zPCI instructions at ~14 ms each); run it natively: --engine native")
    runner.need_tool("qemu-system-s390x", "qemu-system-misc")
    runner.need_tool("gdb-multiarch", "gdb-multiarch")
    apt = PrivateApt()
    log(f"kernel: {package} (private apt state in {apt.root})")
    kb = prepare_kernel(package, apt)
    bb_root = extract_deb(apt.download("busybox-static"), cache_root() / "busybox-static")
    busybox = bb_root / "bin/busybox"
    log(f"kernel {kb.release} ({kb.version}): {len(kb.sites)} zPCI sites")
    out = Path(out)
    jsonl = Path(jsonl) if jsonl else default_jsonl(out)
    with tempfile.TemporaryDirectory(prefix="zpci-linux-") as tmp:
        tmp = Path(tmp)
        initrd = build_initrd(kb, busybox, w, tmp / "initrd.gz")
        image = None
        if w.blk_image:
            image = tmp / "disk.raw"
            w.make_image(image)
        args = qemu_args(kb, initrd, w, image)
        mark = {"addr": kb.mark_addr, "magic": MARK_MAGIC, "labels": PHASES,
                "pid_offset": PT_REGS_ORIG_GPR2, "sig_offset": PT_REGS_GPR3}
        log(f"running {w.name}: qemu-system-s390x {' '.join(args)}")
        res = runner.run(args, kb.sites, jsonl, mark=mark, timeout=timeout, memory=MEMORY_MB << 20,
                         dma_tables=dma_tables,
                         console_log=jsonl.with_name(jsonl.name + ".console"),
                         progress=progress)
    records = list(runner.read_jsonl(jsonl))
    console = [l for _, l in res.console]
    stats = parse_stats(console)
    rows = crosscheck(records, stats, w.functions)
    with open(jsonl, "a") as f:
        for fn, st in stats.items():
            f.write(json.dumps({"kind": "fmb_stats", "function": fn, "counters": st}) + "\n")
        for row in rows:
            f.write(json.dumps({"kind": "fmb_crosscheck", **row}) + "\n")
        f.write(json.dumps({"kind": "capture_info", "workload": w.name, "kernel_package": package,
                            "kernel_version": kb.version, "qemu": qemu_version(),
                            "qemu_args": shlex.join(public_args(args)),
                            "seconds": round(res.seconds, 1)}) + "\n")
    events = sum(1 for r in records if "insn" in r)
    finalize(jsonl, out)
    return {"events": events, "crosscheck": rows, "seconds": res.seconds, "jsonl": str(jsonl),
            "marks": [r["label"] for r in records if r.get("kind") == "mark"],
            "qemu_rc": res.qemu_rc}


def default_jsonl(out: Path) -> Path:
    """Where the recorder's JSONL (and the console log) go unless told:
    the cache, so a bundle folder gets only the trace."""
    d = cache_root() / "captures"
    d.mkdir(parents=True, exist_ok=True)
    return d / (Path(out).name + ".jsonl")


def device_props(dev: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Model name and properties of a ``-device`` string (ids and backends dropped)."""
    kind, props = split_device(dev)
    return kind, tuple((k, v) for k, v in props if k not in ("id", "drive", "netdev"))


def finalize(jsonl: Path, out: Path) -> int:
    """The trace of a captured JSONL (its capture_info and cross-check records
    give the header's command line, versions and check result)."""
    info, rows = None, []
    for r in runner.read_jsonl(jsonl):
        if r.get("kind") == "capture_info":
            info = r
        elif r.get("kind") == "fmb_crosscheck":
            rows.append(r)
    if info is None:
        raise UserError("no capture_info record: not a zpci-emu capture JSONL", where=str(jsonl))
    need = ("workload", "qemu_args", "kernel_package", "kernel_version", "qemu", "seconds")
    missing = [k for k in need if k not in info]
    if missing:
        raise UserError(f"capture_info record lacks {', '.join(missing)}", where=str(jsonl))
    w = WORKLOADS.get(info["workload"])
    if w is None:
        raise UserError(f"capture_info names unknown workload {info['workload']!r}", where=str(jsonl))
    ok = bool(rows) and all(r.get("ok") is True for r in rows)
    return write_trace(Path(jsonl), Path(out), w, detail="qemu-system-s390x " + info["qemu_args"],
                       extra={"kernel_package": f"{info['kernel_package']} {info['kernel_version']}",
                              "qemu": info["qemu"], "fmb_crosscheck": "match" if ok else "MISMATCH",
                              "capture_seconds": info["seconds"]})


def write_trace(jsonl: Path, out: Path, w, detail: str, extra: dict) -> int:
    """Import the JSONL, then restate the header as a capture (capture_header)."""
    from emulator.trace.format import Mark, Note, encode_event
    from emulator.trace.importer import import_jsonl
    from emulator.trace.reader import TraceReader
    from emulator.trace.writer import TraceWriter

    tmp = out.with_name(out.name + ".import")
    n = import_jsonl(jsonl, tmp, memory=0, workload=f"linux-{w.name}")
    try:
        with TraceReader(tmp) as rd:
            header = capture_header(rd.header.functions, w, detail, extra)
            with TraceWriter(out, header) as wr:
                for rec in rd:
                    if isinstance(rec, Mark):
                        wr.mark(rec.label)
                    elif isinstance(rec, Note):
                        wr.note(rec.kind, rec.data)
                    elif hasattr(rec, "regs_in"):
                        wr.zpci_event_raw(encode_event(
                            rec.seq, rec.addr, rec.insn, rec.flags, rec.pswm_before, rec.pswm_after,
                            rec.cc, rec.pgm, rec.regs_in, rec.regs_out, rec.reads, rec.writes),
                            rec.seq)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def capture_header(functions, w, detail: str, extra: dict):
    """The header of a capture of workload ``w``: the recorded functions with
    the devices' properties exactly as the machine got them (the recording
    alone only lets an importer guess them from the PCI ids), the command
    line (``detail``), kernel and engine versions (``extra``).

    Memory 0 (no bound): the operand addresses the kernel used are logical
    (DAT on; e.g. FIBs on vmalloc'd stacks), not absolute.
    """
    from emulator.trace.format import (FunctionInfo, SourceKind, StreamKind, TraceHeader)

    fids = {}
    for zpci, dev in w.devices:
        fid = int(dict(split_device(zpci)[1])["fid"])
        fids[fid] = device_props(dev)
    funcs = tuple(FunctionInfo(fid=f.fid, uid=f.uid, kind=fids.get(f.fid, (f.kind,))[0],
                               fhs=f.fhs, props=fids[f.fid][1] if f.fid in fids else f.props,
                               vendor_id=f.vendor_id, device_id=f.device_id)
                  for f in functions)
    return TraceHeader(source=SourceKind.CAPTURE, stream=StreamKind.ZPCI_ONLY, memory=0,
                       functions=funcs, workload=f"linux-{w.name}", detail=detail,
                       extra=tuple(sorted((k, str(v)) for k, v in extra.items())))


def public_args(args: list[str]) -> list[str]:
    """QEMU arguments with cache/temporary paths reduced to file names."""
    out = []
    for a in args:
        if a.startswith(os.sep):
            a = os.path.basename(a)
        elif "file=" + os.sep in a:
            a = ",".join("file=" + os.path.basename(p[5:]) if p.startswith("file=" + os.sep) else p
                         for p in a.split(","))
        out.append(a)
    return out


def qemu_version() -> str:
    try:
        p = subprocess.run(["qemu-system-s390x", "--version"], capture_output=True, text=True)
        return p.stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"
