"""``zpci-emu capture``: record a guest's zPCI instructions into a trace.

    zpci-emu capture --workload rng -o rng.zpt        # Debian s390x Linux guest under QEMU
    zpci-emu capture --elf traces/guests/build/probe.elf -o probe.zpt   # bare metal
    zpci-emu capture --workload rng --engine native -o rng.zpt   # the same guest under zpci-emu boot

The QEMU engine needs qemu-system-s390x and gdb-multiarch; the Linux
workloads also need network access to deb.debian.org once (packages are
cached under $XDG_CACHE_HOME/zpci-emu, default ~/.cache/zpci-emu).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from emulator.errors import quote, usage_error
from emulator.io_safe import Output, check_input, output_file


def register(sub) -> None:
    from emulator.capture.workloads import WORKLOADS

    p = sub.add_parser("capture", help="record a guest's zPCI instructions under QEMU (gdbstub)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--workload", choices=sorted(WORKLOADS),
                   help="Linux workload: " + "; ".join(f"{w.name}: {w.summary}"
                                                       for w in WORKLOADS.values()))
    g.add_argument("--elf", help="bare-metal guest ELF to run instead of Linux")
    p.add_argument("-o", "--output", required=True, help="trace file to write (.zpt)")
    p.add_argument("--engine", choices=ENGINES, default="qemu",
                   help="qemu: qemu-system-s390x with a gdb breakpoint on every zPCI instruction "
                        "(default); native: zpci-emu boot runs the guest and records each "
                        "instruction as the firmware model executes it")
    p.add_argument("--jsonl", help="where to keep the recorder's JSONL (default: "
                        "~/.cache/zpci-emu/captures/OUTPUT.jsonl)")
    p.add_argument("--kernel-package", default=None,
                   help="Debian s390x kernel package (default linux-image-6.1.0-50-s390x)")
    p.add_argument("--no-dma-tables", dest="dma_tables", action="store_false",
                   help="do not record the DMA table entries each RPCIT walks (the JSONL is then "
                        "what linux-guest-traces.md's recipe writes; replay counts those RPCITs unchecked)")
    p.add_argument("--timeout", type=seconds, default=None, help="seconds before giving up")
    p.set_defaults(func=run)


ENGINES = ("qemu", "native")
# options of the QEMU engine's gdb recorder, which the native engine has no use for
QEMU_ONLY = (("jsonl", None, "--jsonl"), ("dma_tables", True, "--no-dma-tables"),
             ("timeout", None, "--timeout"))


def seconds(text: str) -> float:
    """The argparse type of --timeout: a finite number of seconds above 0."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise usage_error(f"{quote(text)} is not a number of seconds above 0", where="--timeout")
    return v


def terminal_progress(stream=None):
    """A progress line for a terminal (None when ``stream`` is not one): seconds, records
    written, the guest's last console line; cleared when the recording ends."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        return None

    def show(seconds, records, line):
        text = "" if seconds is None else \
            f"recording: {seconds:4.0f} s, {records} records | {line}"[:100]
        stream.write("\r\x1b[K" + text)
        stream.flush()
    return show


def run(args) -> int:
    def log(msg):
        print(msg, file=sys.stderr)
    progress = terminal_progress()

    from emulator.capture.linux import default_jsonl

    out = Path(args.output)
    if args.engine == "native":
        for attr, default, option in QEMU_ONLY:
            if getattr(args, attr) != default:
                raise usage_error("only for --engine qemu (the native engine records no JSONL, "
                                  "always the DMA table entries, and runs to the guest's end)",
                                  where=option)
    if args.elf:
        check_input(args.elf)
    if args.engine == "native":
        return run_native(args, out, log)
    if args.jsonl is not None:
        Output(args.jsonl, where="--jsonl").discard()     # the recorder can write it
    jsonl = args.jsonl or default_jsonl(out)       # named after the output, not its temporary
    # The trace is reserved before QEMU starts and renamed into place at the end.
    with output_file(args.output) as tmp:     # the text as given: Path() drops a trailing /
        if args.elf:
            from emulator.capture import baremetal
            r = baremetal.capture(Path(args.elf), Path(tmp.path), jsonl=jsonl,
                                  timeout=args.timeout or 120, log=log,
                                  dma_tables=args.dma_tables, progress=progress)
        else:
            from emulator.capture import linux
            r = linux.capture(args.workload, Path(tmp.path),
                              package=args.kernel_package or linux.DEFAULT_KERNEL,
                              jsonl=jsonl, timeout=args.timeout or 900, log=log,
                              dma_tables=args.dma_tables, progress=progress)
    return report(out, r, args.elf)


def run_native(args, out: Path, log) -> int:
    """``--engine native``: a Linux workload or a bare-metal ELF under zpci-emu boot."""
    with output_file(args.output) as tmp:
        if args.elf:
            from emulator.capture import baremetal
            r = baremetal.capture_native(Path(args.elf), Path(tmp.path))
        else:
            from emulator.capture import linux, native
            c = native.capture(args.workload, Path(tmp.path),
                               package=args.kernel_package or linux.DEFAULT_KERNEL, log=log)
            r = {"events": c.events, "seconds": c.seconds, "marks": c.marks,
                 "crosscheck": c.crosscheck}
    return report(out, r, args.elf)


def report(out: Path, r: dict, elf) -> int:
    """The summary on stdout; status 1 when a statistics cross-check failed."""
    if elf:
        print(f"{out}: {r['events']} zPCI events in {r['seconds']:.1f} s")
        return 0
    print(f"{out}: {r['events']} zPCI events in {r['seconds']:.1f} s; phases: {', '.join(r['marks'])}")
    bad = 0
    for row in r["crosscheck"]:
        if "counters" in row:
            detail = ", ".join(f"{k.split()[0].lower()} {v['trace']}/{v['guest']}"
                               for k, v in row["counters"].items())
        else:
            detail = row.get("reason", "")
        print(f"  statistics {row['function']}: {'match' if row['ok'] else 'MISMATCH'} "
              f"(trace/guest: {detail})")
        bad += not row["ok"]
    return 1 if bad else 0
