"""Replay speed and memory: zPCI events per second per core, peak RSS, at 1M and 10M events.

    .venv/bin/python benchmarks/replay.py [--source TRACE] [--sizes 1000000,10000000]

The big traces repeat the event mix of a real recorded trace (default: the
bundled trace with the most events, e.g. traces/linux/blk-strict.zpt, a
Linux guest under QEMU) with fresh sequence numbers, written compressed to a
temporary directory.  Each size is replayed in a fresh child process under
every policy (the report's mode), which prints its CPU time and its peak
resident memory; the parent prints rates and ratios.  The same process also
replays the source trace once with the full model on every event
(``fast=False``), to show what the decision cache buys and that the counts
agree.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.report import bundled_traces  # noqa: E402
from emulator.trace.format import RECORD_HEAD, RecordType, StreamKind  # noqa: E402
from emulator.trace.reader import TraceReader  # noqa: E402
from emulator.trace.writer import TraceWriter  # noqa: E402


def event_mix(path: Path):
    """The source's header and its EVENT records, framed, with the offsets of their seq fields."""
    with TraceReader(path) as rd:
        hdr = rd.header
        chunks, seq_offs, pos = [], [], 0
        for rtype, buf, start, n, off in rd.body():
            if rtype == RecordType.EVENT:
                rec = bytes(buf[start - RECORD_HEAD.size:start + n])
                chunks.append(rec)
                seq_offs.append(pos + RECORD_HEAD.size)
                pos += len(rec)
                rd.n_events += 1
            else:
                rd.other_record(rtype, buf, start, n, off)
    return hdr, bytearray(b"".join(chunks)), seq_offs


def build(src: Path, dst: Path, events: int) -> None:
    hdr, mix, offs = event_mix(src)
    # The source kind stays the recording's: it says which stores the events hold.
    hdr = dataclasses.replace(hdr, stream=StreamKind.ZPCI_ONLY, workload=f"{hdr.workload}-x{events}",
                              detail=f"benchmarks/replay.py: {src.name} event mix repeated to {events} events")
    pack = struct.Struct("<Q").pack_into
    seq = 0
    with TraceWriter(dst, hdr, compress=True) as w:
        while seq < events:
            k = min(len(offs), events - seq)
            first = seq
            for o in offs[:k]:
                pack(mix, o, seq)
                seq += 1
            end = offs[k] - RECORD_HEAD.size if k < len(offs) else len(mix)
            w.append_event_records(bytes(mix[:end]), k, first, seq - 1)


def child(path: str) -> None:
    from emulator.replay import replay
    import emulator.decode, firmware_model.devices, firmware_model.machine  # noqa: F401,E401 - imports out of the timing
    t0, c0 = time.perf_counter(), time.process_time()
    (r,) = replay([path], progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"events": r.events, "wall": wall, "cpu": cpu,
                      "full_model_events": r.full_model_events,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "exits": {p: r.exits(p) for p in r.policies}}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="trace whose event mix is repeated")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return 0
    if a.source:
        src = Path(a.source)
    else:
        cands = [p for p in bundled_traces() if p.suffix == ".zpt"]
        if not cands:
            print("no bundled traces (traces/*.zpt, traces/linux/*.zpt); pass --source")
            return 1
        src = max(cands, key=event_count)
    from emulator.replay import replay
    t0 = time.process_time()
    (full,) = replay([src], fast=False, progress=False)
    full_cpu = time.process_time() - t0
    t0 = time.process_time()
    (fast,) = replay([src], progress=False)
    fast_cpu = time.process_time() - t0
    same = fast.routes == full.routes
    print(f"source {src} ({full.events} events, mix: "
          + ", ".join(f"{m} {n}" for m, n in sorted(full.by_mnemonic.items())) + ")")
    print(f"  full model on every event: {full.events / full_cpu:,.0f} events/s/core; "
          f"cached: {fast.events / fast_cpu:,.0f} events/s/core; counts identical: {same}",
          flush=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zpci-bench-") as tmp:
        for n in sizes:
            p = Path(tmp) / f"mix-{n}.zpt"
            t0 = time.perf_counter()
            build(src, p, n)
            gen = time.perf_counter() - t0
            out = subprocess.run([sys.executable, __file__, "--child", str(p)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout)
            rows.append((n, os.path.getsize(p), gen, r))
            p.unlink()
    print(f"{'events':>11} {'file MB':>8} {'cpu s':>7} {'events/s/core':>14} {'peak RSS MB':>12} "
          f"{'full-model events':>18}")
    for n, size, gen, r in rows:
        assert r["events"] == n
        print(f"{n:>11,} {size / 1e6:>8.1f} {r['cpu']:>7.2f} {n / r['cpu']:>14,.0f} "
              f"{r['maxrss_kb'] / 1024:>12.1f} {r['full_model_events']:>18,}")
    if len(rows) > 1:
        (n0, _, _, r0), (n1, _, _, r1) = rows[0], rows[-1]
        print(f"ratio {n1 // n0}x events: peak RSS x{r1['maxrss_kb'] / r0['maxrss_kb']:.2f}, "
              f"rate x{(n1 / r1['cpu']) / (n0 / r0['cpu']):.2f}; "
              f"cached vs full model x{(n1 / r1['cpu']) / (full.events / full_cpu):.0f}")
    return 0


def event_count(p: Path) -> int:
    with TraceReader(p) as rd:
        return sum(1 for rtype, *_ in rd.body() if rtype == RecordType.EVENT)


if __name__ == "__main__":
    sys.exit(main())
