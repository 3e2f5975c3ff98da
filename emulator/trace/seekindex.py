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
POINT = struct.Struct("<QQQqII")          # file/stream offset, events, last seq, marks, configs before
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
    configs: int            # configuration events before it


@dataclass(frozen=True)
class SeekIndex:
    path: str
    points: tuple[SeekPoint, ...]
    events: int               # EVENT records in the whole trace
    nconfigs: int             # configuration events copied into the index
    blob: tuple[int, int]     # file offset and length of their zstd frame

    def configs(self, before: int | None = None):
        """(stream offset, EVENT payload) of each configuration event before stream
        offset ``before`` (all when None), streamed from the file: memory stays flat."""
        import zstandard
        path, (off, length) = self.path, self.blob
        try:
            with open(path, "rb") as f:
                f.seek(off)
                body = zstandard.ZstdDecompressor().stream_reader(_Limited(f, length))
                prev, n = -1, 0
                while True:
                    head = body.read(CONFIG.size)
                    if not head:
                        break
                    if len(head) < CONFIG.size:
                        raise _bad(path, "configuration events truncated")
                    soff, ln = CONFIG.unpack(head)
                    payload = body.read(ln)
                    if len(payload) != ln or ln < EVENT_HEAD.size or soff <= prev:
                        raise _bad(path, "configuration event truncated or out of order")
                    if before is not None and soff >= before:
                        return
                    prev, n = soff, n + 1
                    yield soff, payload
                if before is None and n != self.nconfigs:
                    raise _bad(path, f"{n} configuration events, its head says {self.nconfigs}")
        except zstandard.ZstdError as exc:
            raise _bad(path, f"configuration events corrupt ({exc})") from None
        except OSError as exc:
            raise UserError(f"cannot read trace: {exc.strerror}", where=str(path)) from None


class _Limited:
    """The next ``left`` bytes of a file."""

    def __init__(self, f, left: int):
        self.f, self.left = f, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size) if size > 0 else b""
        self.left -= len(data)
        return data


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
    configs: list[tuple[int, bytes]] = []      # written to a zstd frame as they come
    blob = zstandard.ZstdCompressor().compressobj()
    try:
        with TraceReader(src) as rd, open(tmp, "wb") as out:
            out.write(PREAMBLE.pack(MAGIC, VERSION, PREAMBLE_FLAG_ZSTD, 0))
            pending = bytearray(record(RecordType.HEADER, rd.header.to_bytes()))
            stream = PREAMBLE.size + len(pending)
            events, last, nconf = 0, -1, 0
            for rtype, buf, start, n, off in rd.body():
                if len(pending) >= every:
                    out.write(cctx.compress(bytes(pending)))
                    pending.clear()
                    points.append(SeekPoint(out.tell(), stream, events, last, rd.n_marks, nconf))
                if rtype == _EV:
                    if n < EVENT_HEAD.size:
                        raise rd.error(off, f"short EVENT record ({n} bytes)")
                    events += 1
                    (last,) = _SEQ.unpack_from(buf, start)
                    if _is_config(buf[start:start + n]):
                        configs.append(blob.compress(CONFIG.pack(stream, n) + bytes(buf[start:start + n])))
                        nconf += 1
                else:
                    rd.n_events, rd.last_seq = events, last
                    rd.other_record(rtype, buf, start, n, off)
                pending += buf[start - 5:start + n]
                stream += 5 + n
            rd.finish()
            out.write(cctx.compress(bytes(pending)))
            configs.append(blob.flush())
            out.write(encode_index(points, events, nconf, b"".join(configs)))
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return read_index(dst)


def encode_index(points, events: int, nconfigs: int, blob: bytes) -> bytes:
    """The skippable frame: head, points, counts, the configuration events' zstd frame, trailer."""
    parts = [INDEX_HEAD.pack(INDEX_MAGIC, len(points), nconfigs),
             *(POINT.pack(p.file_offset, p.stream_offset, p.events, p.last_seq, p.marks, p.configs)
               for p in points),
             struct.pack("<QQ", events, 0), blob]
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
            head = f.read(SKIPPABLE.size + INDEX_HEAD.size)
            magic, fsz = SKIPPABLE.unpack_from(head)
            if magic != SKIPPABLE_MAGIC or fsz != size - SKIPPABLE.size:
                raise _bad(path, "not in a skippable frame of its size")
            imagic, npoints, nconfigs = INDEX_HEAD.unpack_from(head, SKIPPABLE.size)
            if imagic != INDEX_MAGIC:
                raise _bad(path, "wrong magic")
            fixed = npoints * POINT.size + 16
            if len(head) + fixed + TRAILER.size > size:
                raise _bad(path, f"{npoints} seek points do not fit its size")
            table = f.read(fixed)
    except OSError as exc:
        raise UserError(f"cannot read trace: {exc.strerror}", where=str(path)) from None
    points = tuple(SeekPoint(*POINT.unpack_from(table, i * POINT.size)) for i in range(npoints))
    events, _ = struct.unpack_from("<QQ", table, npoints * POINT.size)
    blob_off = start + len(head) + fixed
    prev = SeekPoint(PREAMBLE.size, PREAMBLE.size, 0, -1, 0, 0)
    for pt in points:
        if not (prev.file_offset < pt.file_offset < start and prev.stream_offset < pt.stream_offset
                and prev.events <= pt.events <= events and prev.last_seq <= pt.last_seq
                and prev.marks <= pt.marks and prev.configs <= pt.configs <= nconfigs):
            raise _bad(path, f"seek point {pt} does not follow {prev}")
        prev = pt
    return SeekIndex(str(path), points, events, nconfigs, (blob_off, fsize - TRAILER.size - blob_off))


def _bad(path, what: str) -> UserError:
    return UserError(f"bad seek index: {what}", where=str(path))
