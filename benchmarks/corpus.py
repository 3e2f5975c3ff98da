"""A corpus of traces for benchmarks and tests: many traces and one large one.

    .venv/bin/python benchmarks/corpus.py OUT_DIR [--seed 1] [--traces 24]
        [--events 20000,80000] [--large 2000000] [--frame-mib 4] [--large-phase workload]

Every trace repeats the event mix of one bundled workload (traces/*.zpt and
traces/linux/*.zpt: the guest workloads and the Linux captures) with fresh
sequence numbers, as a zpci-only trace of that workload's header.  The seed
picks each trace's workload and length (uniform in the --events range), so
one seed always gives the same corpus.  The large trace repeats the mix of
the bundled trace with the most events (``--large-phase workload``: the
recording once, then only its workload phase repeated, as a long I/O run
would be recorded: configuration at the start only).  Every trace carries a seek index
(emulator/trace/seekindex.py): a replay on several workers splits the long
one at its seek points, and takes the counts of events and configuration
events in the others' indexes to start the costliest first.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.report import bundled_traces  # noqa: E402
from emulator.trace.format import RECORD_HEAD, RecordType, StreamKind  # noqa: E402
from emulator.trace.reader import TraceReader  # noqa: E402
from emulator.trace.seekindex import DEFAULT_EVERY, index_trace  # noqa: E402
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


def phase_events(path: Path, label: str) -> tuple[int, int]:
    """Event numbers [first, end) of the phase that the mark ``label`` opens."""
    from emulator.trace.format import Mark
    n, first, end = 0, None, None
    with TraceReader(path) as rd:
        for rec in rd:
            if isinstance(rec, Mark):
                if first is not None and end is None:
                    end = n
                if rec.label == label and first is None:
                    first = n
            elif hasattr(rec, "regs_in"):
                n += 1
    if first is None or (end if end is not None else n) <= first:
        raise SystemExit(f"{path}: no events in a phase {label!r}")
    return first, end if end is not None else n


def build(src: Path, dst: Path, events: int, compress: bool = True, phase: str | None = None) -> None:
    """``dst``: the events of ``src`` repeated to ``events`` events, renumbered.

    ``phase``: the whole recording once, then only the events of that phase
    repeated: a long workload as it would be recorded, with the
    configuration (CLP, MPCIFC: the epochs) at its start only."""
    hdr, mix, offs = event_mix(src)
    how = f"then its {phase} phase repeated" if phase else "repeated"
    # The source kind stays the recording's: it says which stores the events hold.
    hdr = dataclasses.replace(hdr, stream=StreamKind.ZPCI_ONLY, workload=f"{hdr.workload}-x{events}",
                              detail=f"{src.name} event mix {how} to {events} events")
    pack = struct.Struct("<Q").pack_into
    lo, hi = 0, len(offs)
    seq = 0
    with TraceWriter(dst, hdr, compress=compress) as w:
        while seq < events:
            k = min(hi - lo, events - seq)
            first = seq
            for o in offs[lo:lo + k]:
                pack(mix, o, seq)
                seq += 1
            start = offs[lo] - RECORD_HEAD.size
            end = offs[lo + k] - RECORD_HEAD.size if lo + k < len(offs) else len(mix)
            w.append_event_records(bytes(mix[start:end]), k, first, seq - 1)
            if phase and (lo, hi) == (0, len(offs)):
                lo, hi = phase_events(src, phase)


def build_indexed(src: Path, dst: Path, events: int, every: int = DEFAULT_EVERY,
                  phase: str | None = None) -> None:
    """As ``build``, compressed in frames of ``every`` stream bytes with a seek index."""
    with tempfile.TemporaryDirectory(prefix="zpci-corpus-") as tmp:
        plain = Path(tmp) / "plain.zpt"
        build(src, plain, events, compress=False, phase=phase)
        index_trace(plain, dst, every=every)


def event_count(p: Path) -> int:
    with TraceReader(p) as rd:
        return sum(1 for rtype, *_ in rd.body() if rtype == RecordType.EVENT)


def sources() -> list[Path]:
    return [p for p in bundled_traces() if p.suffix == ".zpt"]


def make_corpus(out: Path, seed: int = 1, traces: int = 24, events: tuple[int, int] = (20000, 80000),
                large: int = 2_000_000, every: int = DEFAULT_EVERY,
                large_source: Path | None = None,
                large_phase: str | None = None) -> tuple[list[Path], Path | None]:
    """Write the corpus into ``out``: (the many traces in order, the large one or None).

    ``every``: stream bytes per frame of the large trace (the others have the default);
    ``large_phase``: the large trace repeats only that phase after one whole recording."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    srcs = sources()
    if not srcs:
        raise SystemExit("no bundled traces (traces/*.zpt, traces/linux/*.zpt)")
    many = []
    for i in range(traces):
        src = rng.choice(srcs)
        n = rng.randint(*events)
        p = out / f"t{i:03d}-{src.stem}.zpt"
        build_indexed(src, p, n)
        many.append(p)
    big = None
    if large:
        src = large_source or max(srcs, key=event_count)
        big = out / f"large-{src.stem}{'-' + large_phase if large_phase else ''}.zpt"
        build_indexed(src, big, large, every, large_phase)
    return many, big


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--traces", type=int, default=24)
    ap.add_argument("--events", default="20000,80000", help="range of a small trace's events")
    ap.add_argument("--large", type=int, default=2_000_000, help="events of the large trace (0: none)")
    ap.add_argument("--frame-mib", type=float, default=DEFAULT_EVERY / (1 << 20),
                    help="record-stream MiB per zstd frame of the large trace (its seek points)")
    ap.add_argument("--large-phase", default=None,
                    help="the large trace: the recording once, then only this phase repeated")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.events.split(","))
    many, big = make_corpus(a.out, a.seed, a.traces, (lo, hi), a.large, int(a.frame_mib * (1 << 20)),
                            large_phase=a.large_phase)
    for p in many + ([big] if big else []):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
