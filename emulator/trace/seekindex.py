"""The seek index of a compressed trace (traces/FORMAT.md, "Seek index").

A long trace replays in chunks on several workers (emulator/replay/parallel.py).
A chunk must start decompressing somewhere other than the file's start, and
its machines need the configuration state at that point.  ``index_trace``
therefore writes a copy of a trace whose zstd body is cut into independent
frames, each starting at a record (a *seek point*), and appends a zstd
skippable frame (ignored by every zstd decoder, so a reader without index
support reads the trace unchanged) holding:

* the seek points: file offset of the frame, stream offset of its first
  record, and the events, last sequence number and marks before it;
* a copy of every configuration event (CLP, MPCIFC: the instructions that
  end an epoch of the decision cache), with its stream offset, so the state
  at any point is rebuilt from the index alone without reading the trace.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import UserError
from emulator.trace.format import (
    EVENT_HEAD, MAGIC, PREAMBLE, PREAMBLE_FLAG_ZSTD, RecordType, VERSION, insn_of, record)
from emulator.trace.reader import TraceReader

SKIPPABLE = struct.Struct("<II")          # zstd skippable frame: magic, size of what follows
SKIPPABLE_MAGIC = 0x184D2A5A              # one of the 16 skippable magics (0x184D2A50..5F)
INDEX_MAGIC = b"ZPTSEEK1"
INDEX_HEAD = struct.Struct("<8sII")       # magic, points, configuration events
POINT = struct.Struct("<QQQqI4x")         # file offset, stream offset, events, last seq, marks
CONFIG = struct.Struct("<QI")             # stream offset of the record, payload length
TRAILER = struct.Struct("<Q8s")           # bytes of the whole skippable frame, INDEX_MAGIC
DEFAULT_EVERY = 4 << 20                   # record-stream bytes per frame

_EV = int(RecordType.EVENT)
_SEQ = struct.Struct("<Q")
_INSN = slice(32, 38)


@dataclass(frozen=True)
class SeekPoint:
    file_offset: int        # where the zstd frame starting at this point begins
    stream_offset: int      # the record stream offset of its first record
    events: int             # EVENT records before it
    last_seq: int           # seq of the last event before it (-1: none)
    marks: int              # MARK records before it


@dataclass(frozen=True)
class SeekIndex:
    points: tuple[SeekPoint, ...]
    configs: tuple[tuple[int, bytes], ...]     # (stream offset, EVENT payload) of CLP/MPCIFC
    events: int                                # EVENT records in the whole trace

    def configs_before(self, stream_offset: int) -> list[tuple[int, bytes]]:
        return [c for c in self.configs if c[0] < stream_offset]


def _is_config(payload) -> bool:
    from emulator.replay.heads import EPOCH_ENDERS
    ins = insn_of(bytes(payload[_INSN]))
    return ins is not None and ins.index in EPOCH_ENDERS


def index_trace(src, dst, every: int = DEFAULT_EVERY, level: int = 3) -> SeekIndex:
    """Write ``src`` to ``dst`` compressed in frames of about ``every`` stream bytes, with
    its seek index.  The records are copied unchanged (the header re-encoded)."""
    import zstandard
    src, dst = Path(src), Path(dst)
    if every < 1:
        raise UserError(f"frame size must be positive, not {every}")
    tmp = dst.with_name(dst.name + ".part")
    cctx = zstandard.ZstdCompressor(level=level)
    points: list[SeekPoint] = []
    configs: list[tuple[int, bytes]] = []
    try:
        with TraceReader(src) as rd, open(tmp, "wb") as out:
            out.write(PREAMBLE.pack(MAGIC, VERSION, PREAMBLE_FLAG_ZSTD, 0))
            pending = bytearray(record(RecordType.HEADER, rd.header.to_bytes()))
            stream = PREAMBLE.size + len(pending)
            events, last = 0, -1
            for rtype, buf, start, n, off in rd.body():
                if len(pending) >= every:
                    out.write(cctx.compress(bytes(pending)))
                    pending.clear()
                    points.append(SeekPoint(out.tell(), stream, events, last, rd.n_marks))
                if rtype == _EV:
                    if n < EVENT_HEAD.size:
                        raise rd.error(off, f"short EVENT record ({n} bytes)")
                    events += 1
                    (last,) = _SEQ.unpack_from(buf, start)
                    if _is_config(buf[start:start + n]):
                        configs.append((stream, bytes(buf[start:start + n])))
                else:
                    rd.n_events, rd.last_seq = events, last
                    rd.other_record(rtype, buf, start, n, off)
                pending += buf[start - 5:start + n]
                stream += 5 + n
            rd.finish()
            out.write(cctx.compress(bytes(pending)))
            index = SeekIndex(tuple(points), tuple(configs), events)
            out.write(encode_index(index))
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return index


def encode_index(index: SeekIndex) -> bytes:
    import zstandard
    body = bytearray()
    for off, payload in index.configs:
        body += CONFIG.pack(off, len(payload)) + payload
    parts = [INDEX_HEAD.pack(INDEX_MAGIC, len(index.points), len(index.configs)),
             *(POINT.pack(p.file_offset, p.stream_offset, p.events, p.last_seq, p.marks)
               for p in index.points),
             struct.pack("<QQ", index.events, 0), zstandard.ZstdCompressor().compress(bytes(body))]
    data = b"".join(parts)
    size = SKIPPABLE.size + len(data) + TRAILER.size
    return SKIPPABLE.pack(SKIPPABLE_MAGIC, len(data) + TRAILER.size) + data + \
        TRAILER.pack(size, INDEX_MAGIC)


def read_index(path) -> SeekIndex | None:
    """The seek index at the end of a compressed trace; None when it has none.

    An index that is there but inconsistent is a one-line error (a chunk
    started from it would read garbage).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            pre = f.read(PREAMBLE.size)
            if len(pre) < PREAMBLE.size or not PREAMBLE.unpack(pre)[2] & PREAMBLE_FLAG_ZSTD:
                return None
            fsize = f.seek(0, os.SEEK_END)
            if fsize < PREAMBLE.size + TRAILER.size:
                return None
            f.seek(fsize - TRAILER.size)
            size, magic = TRAILER.unpack(f.read(TRAILER.size))
            if magic != INDEX_MAGIC:
                return None
            start = fsize - size
            if not PREAMBLE.size <= start <= fsize - SKIPPABLE.size - TRAILER.size:
                raise _bad(path, f"its size {size} does not fit the file")
            f.seek(start)
            frame = f.read(size)
    except OSError as exc:
        raise UserError(f"cannot read trace: {exc.strerror}", where=str(path)) from None
    return _decode(path, frame, start)


def _bad(path, what: str) -> UserError:
    return UserError(f"bad seek index: {what}", where=str(path))


def _decode(path, frame: bytes, start: int) -> SeekIndex:
    import zstandard
    magic, size = SKIPPABLE.unpack_from(frame)
    if magic != SKIPPABLE_MAGIC or size != len(frame) - SKIPPABLE.size:
        raise _bad(path, "not in a skippable frame of its size")
    p = SKIPPABLE.size
    try:
        imagic, npoints, nconfigs = INDEX_HEAD.unpack_from(frame, p)
        if imagic != INDEX_MAGIC:
            raise _bad(path, "wrong magic")
        p += INDEX_HEAD.size
        points = tuple(SeekPoint(*POINT.unpack_from(frame, p + i * POINT.size)) for i in range(npoints))
        p += npoints * POINT.size
        events, _ = struct.unpack_from("<QQ", frame, p)
        p += 16
        body = zstandard.ZstdDecompressor().decompressobj().decompress(frame[p:len(frame) - TRAILER.size])
    except (struct.error, zstandard.ZstdError) as exc:
        raise _bad(path, f"truncated or corrupt ({exc})") from None
    configs, q = [], 0
    while q < len(body):
        if q + CONFIG.size > len(body):
            raise _bad(path, "configuration events truncated")
        off, n = CONFIG.unpack_from(body, q)
        q += CONFIG.size
        if q + n > len(body) or n < EVENT_HEAD.size:
            raise _bad(path, "configuration event truncated")
        configs.append((off, body[q:q + n]))
        q += n
    if len(configs) != nconfigs:
        raise _bad(path, f"{len(configs)} configuration events, its head says {nconfigs}")
    prev = SeekPoint(PREAMBLE.size, PREAMBLE.size, 0, -1, 0)
    for pt in points:
        if not (prev.file_offset < pt.file_offset < start and prev.stream_offset < pt.stream_offset
                and prev.events <= pt.events <= events and prev.last_seq <= pt.last_seq
                and prev.marks <= pt.marks):
            raise _bad(path, f"seek point {pt} does not follow {prev}")
        prev = pt
    if any(b[0] <= a[0] for a, b in zip(configs, configs[1:])):
        raise _bad(path, "configuration events out of order")
    return SeekIndex(points, tuple(configs), events)
