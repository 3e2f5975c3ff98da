"""Reading trace files (format v1) as a stream of records, with every check.

A reader never skips: any structural problem, a record that contradicts the
header, or a file that ends before its END record raises a ``UserError``
naming the file, the byte offset of the record in the record stream (the
file offset for an uncompressed trace; for a zstd one, 16 plus the offset in
the decompressed body, called "stream offset") and the last sequence number
seen.
"""
from __future__ import annotations

import struct
from pathlib import Path

from emulator.errors import UserError
from emulator.io_safe import load_json, open_input
from emulator.trace.format import (
    BLOCK_HEAD, END_BODY, EVENT_HEAD, MAGIC, MARK_HEAD, MEM_HEAD, PREAMBLE, PREAMBLE_FLAG_ZSTD,
    RECORD_HEAD, VERSION, Block, End, Event, EventFlag, Mark, Note, RecordType, Runs,
    StreamKind, TraceHeader, insn_of, mask_regs, popcount16)

_CHUNK = 1 << 20
MAX_RECORD = 64 << 20       # no writer makes larger records; bigger means a corrupt length
_RH = RECORD_HEAD.size
_EH = EVENT_HEAD.size
_MH = MEM_HEAD.size
_KNOWN_FLAGS = sum(f.value for f in EventFlag)


class TraceError(UserError):
    def __init__(self, path, offset: int | None, seq: int | None, message: str,
                 compressed: bool = False):
        where = str(path)
        if offset is not None:
            # a compressed trace has no file offset for a record: name the stream's
            where += f": {'stream offset' if compressed else 'offset'} {offset}"
        where += f", seq {seq if seq is not None and seq >= 0 else '-'}"
        super().__init__(message, where=where)
        self.offset = offset
        self.seq = seq


class TraceReader:
    """Opens a trace and reads its preamble and header; iterate for the records."""

    def __init__(self, path):
        self.path = Path(path)
        self._raw = open_input(self.path)
        try:
            self._start(path)
        except BaseException:
            self._raw.close()
            raise

    def _start(self, path) -> None:
        """Checks the preamble, sets up decompression and reads the header."""
        pre = self._raw.read(PREAMBLE.size)
        if len(pre) < PREAMBLE.size:
            raise TraceError(path, 0, None, f"truncated preamble ({len(pre)} of {PREAMBLE.size} bytes)")
        magic, version, flags, _ = PREAMBLE.unpack(pre)
        if magic != MAGIC:
            raise TraceError(path, 0, None, f"not a zpci-emu trace (magic {magic.hex()})")
        if version != VERSION:
            raise TraceError(path, 8, None, f"unsupported trace version {version} (this reader: {VERSION})")
        if flags & ~PREAMBLE_FLAG_ZSTD:
            raise TraceError(path, 10, None, f"unknown preamble flags {flags:#x}")
        self.compressed = bool(flags & PREAMBLE_FLAG_ZSTD)
        if self.compressed:
            import zstandard
            self._zerr = zstandard.ZstdError
            self._body = zstandard.ZstdDecompressor().stream_reader(self._raw, read_across_frames=True)
        else:
            self._zerr = ()
            self._body = self._raw
        self.last_seq = -1
        self.n_events = self.n_execs = self.n_blocks = self.n_marks = 0
        self.ended = False
        self._stop = None
        self.eof_offset = self.fill_offset = PREAMBLE.size
        self._gen = self.raw_records()
        first = next(self._gen, None)
        if first is None:
            raise TraceError(path, PREAMBLE.size, None, "no header record", self.compressed)
        rtype, buf, start, n, off = first
        if rtype != RecordType.HEADER:
            raise TraceError(path, off, None, f"first record is type {rtype:#x}, not a header", self.compressed)
        try:
            self.header = TraceHeader.from_bytes(bytes(buf[start:start + n]))
        except KeyError as exc:
            raise TraceError(path, off, None, f"malformed header: no {exc} key",
                             self.compressed) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise TraceError(path, off, None, f"malformed header: {exc}", self.compressed) from None
        self.full = self.header.stream is StreamKind.FULL

    def close(self) -> None:
        self._raw.close()

    def raw_position(self) -> int:
        """Bytes of the file consumed so far (progress display)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def error(self, offset, message) -> TraceError:
        return TraceError(self.path, offset, self.last_seq, message,
                          getattr(self, "compressed", False))

    def _read(self, size: int) -> bytes:
        try:
            return self._body.read(size)
        except self._zerr as exc:          # type: ignore[misc]
            raise TraceError(self.path, self.fill_offset, self.last_seq,
                             f"corrupt zstd stream: {exc}", True) from None

    def raw_records(self, base: int = PREAMBLE.size):
        """Yield (type, buffer, payload start, payload length, stream offset); framing checks only.

        ``base``: the stream offset of the first byte read (after ``resume_at``).
        """
        buf = b""
        pos = 0
        eof = False
        read = self._read
        unpack = RECORD_HEAD.unpack_from
        while True:
            blen = len(buf)
            while pos + _RH <= blen:
                rtype, n = unpack(buf, pos)
                nxt = pos + _RH + n
                if nxt > blen:
                    break
                yield rtype, buf, pos + _RH, n, base + pos
                pos = nxt
            avail = blen - pos
            if avail >= _RH:
                n = unpack(buf, pos)[1]
                if n > MAX_RECORD:
                    raise self.error(base + pos, f"record length {n} is implausible (corrupt trace)")
                need = _RH + n - avail
            else:
                need = _RH - avail
            if eof:
                self.eof_offset = base + pos
                if avail == 0:
                    return
                raise self.error(base + pos, f"truncated record ({avail} bytes left, record needs more)")
            self.fill_offset = base + blen
            more = read(max(_CHUNK, need))
            if not more:
                eof = True
            base += pos
            buf = buf[pos:] + more
            pos = 0

    def __iter__(self):
        """Parsed records (Block, Runs, Event, Mark, Note, End), validated against the header."""
        for rtype, buf, start, n, off in self._gen:
            if rtype == RecordType.EVENT:
                if self.ended:
                    raise self.error(off, "data after the END record")
                self.n_events += 1
                yield parse_event(self, buf, start, n, off)
            else:
                yield self.other_record(rtype, buf, start, n, off)
        self.finish()

    def body(self):
        """The raw record generator after the header (for replay's own event loop)."""
        return self._gen

    def finish(self) -> None:
        if self.ended or self.eof_offset == self._stop:
            return
        if self._stop is not None:
            raise self.error(self.eof_offset, f"the seek index's point at stream offset "
                                              f"{self._stop} is not a record boundary")
        raise self.error(self.eof_offset, "trace ends without its END record (truncated)")

    def resume_at(self, file_offset: int, stream_offset: int, events: int, last_seq: int,
                  marks: int, stop: int | None = None) -> None:
        """Continue reading at a zstd frame that starts a record (a seek point,
        emulator/trace/seekindex.py), with the counts of everything before it;
        with ``stop``, the records end at that stream offset (the next point).

        Only zpci-only traces: a full stream's RUNS name blocks defined before.
        """
        import zstandard
        self._raw.seek(file_offset)
        body = zstandard.ZstdDecompressor().stream_reader(self._raw, read_across_frames=True)
        self._body = body if stop is None else _Bounded(body, stop - stream_offset)
        self.n_events, self.last_seq, self.n_marks = events, last_seq, marks
        self._stop = stop
        self.eof_offset = self.fill_offset = stream_offset
        self._gen = self.raw_records(stream_offset)

    def other_record(self, rtype, buf, start, n, off):
        """Check and parse one non-EVENT record."""
        if self.ended:
            raise self.error(off, "data after the END record")
        if rtype == RecordType.RUNS:
            if not self.full:
                raise self.error(off, "RUNS record in a trace whose header says zpci-only")
            if n % 8 or not n:
                raise self.error(off, f"RUNS payload of {n} bytes is not whole pairs")
            vals = struct.unpack_from(f"<{n // 4}I", buf, start)
            bids, cnts = vals[0::2], vals[1::2]
            if max(bids) >= self.n_blocks:
                raise self.error(off, f"RUNS names block {max(bids)}, only {self.n_blocks} defined")
            if min(cnts) == 0:
                raise self.error(off, "RUNS pair with count 0")
            self.n_execs += sum(cnts)
            return Runs(tuple(zip(bids, cnts)))
        if rtype == RecordType.BLOCK:
            if not self.full:
                raise self.error(off, "BLOCK record in a trace whose header says zpci-only")
            if n < BLOCK_HEAD.size:
                raise self.error(off, "short BLOCK record")
            bid, addr, ln = BLOCK_HEAD.unpack_from(buf, start)
            if bid != self.n_blocks:
                raise self.error(off, f"BLOCK id {bid}, expected {self.n_blocks}")
            if BLOCK_HEAD.size + ln != n:
                raise self.error(off, f"BLOCK length {ln} does not match its record")
            self.n_blocks += 1
            s = start + BLOCK_HEAD.size
            return Block(bid, addr, bytes(buf[s:s + ln]))
        if rtype == RecordType.MARK:
            if n < MARK_HEAD.size:
                raise self.error(off, "short MARK record")
            (nxt,) = MARK_HEAD.unpack_from(buf, start)
            s = start + MARK_HEAD.size
            self.n_marks += 1
            try:
                label = bytes(buf[s:start + n]).decode()
            except UnicodeDecodeError:
                raise self.error(off, "MARK label is not UTF-8") from None
            return Mark(nxt, label)
        if rtype == RecordType.NOTE:
            try:
                d = load_json(bytes(buf[start:start + n]))
                return Note(str(d["kind"]), dict(d.get("data") or {}))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise self.error(off, f"malformed NOTE record: {exc}") from None
        if rtype == RecordType.END:
            if n != END_BODY.size:
                raise self.error(off, "END record of wrong size")
            end = End(*END_BODY.unpack_from(buf, start))
            got = End(self.n_events, self.n_execs, self.n_blocks, self.n_marks)
            if end != got:
                raise self.error(off, f"END record says {end}, the file holds {got}")
            self.ended = True
            return end
        if rtype == RecordType.HEADER:
            raise self.error(off, "second header record")
        if rtype == RecordType.EVENT:
            raise self.error(off, "internal: EVENT passed to other_record")
        raise self.error(off, f"unknown record type {rtype:#x}")


class _Bounded:
    """A stream that ends after ``left`` bytes: one chunk of a trace reads to its end only."""

    __slots__ = ("inner", "left")

    def __init__(self, inner, left: int):
        self.inner, self.left = inner, left

    def read(self, size: int) -> bytes:
        data = self.inner.read(min(size, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data


def check_event_head(rd: TraceReader, off: int, insn6, ilen: int, flags: int, cc: int):
    """The instruction of an EVENT head (its table entry), after checking it, its
    flags and its condition code."""
    ins = insn_of(insn6)
    if ins is None or ins.ilen != ilen:
        raise rd.error(off, f"event instruction {insn6[:ilen].hex()} is not a zPCI instruction")
    if flags & ~_KNOWN_FLAGS:
        raise rd.error(off, f"unknown event flags {flags:#x}")
    if cc > 3:
        raise rd.error(off, f"condition code {cc} out of range")
    return ins


def parse_event(rd: TraceReader, buf, start: int, n: int, off: int) -> Event:
    """Decode and check one EVENT payload."""
    if n < _EH:
        raise rd.error(off, f"short EVENT record ({n} bytes)")
    (seq, addr, pb, pa, insn6, ilen, flags, cc, _res, pgm, in_mask, out_mask,
     nr, nw) = EVENT_HEAD.unpack_from(buf, start)
    if seq <= rd.last_seq:
        raise rd.error(off, f"event seq {seq} does not follow {rd.last_seq}")
    rd.last_seq = seq
    check_event_head(rd, off, insn6, ilen, flags, cc)
    nin, nout = popcount16(in_mask), popcount16(out_mask)
    p = start + _EH
    lim = start + n
    if p + 8 * (nin + nout) > lim:          # checked first: the masks may claim any number
        raise rd.error(off, f"EVENT record shorter than the {nin + nout} registers its masks name")
    regs = struct.unpack_from(f"<{nin + nout}Q", buf, p) if nin + nout else ()
    p += 8 * (nin + nout)
    mem = []
    memsize = rd.header.memory
    for _ in range(nr + nw):
        if p + _MH > lim:
            raise rd.error(off, "EVENT record shorter than its memory list")
        a, ln = MEM_HEAD.unpack_from(buf, p)
        p += _MH
        if p + ln > lim:
            raise rd.error(off, "EVENT memory data runs past the record")
        if memsize and a + ln > memsize:
            raise rd.error(off, f"memory at {a:#x}+{ln} is outside the header's {memsize:#x} bytes")
        mem.append((a, bytes(buf[p:p + ln])))
        p += ln
    if p != lim:
        raise rd.error(off, f"EVENT record has {lim - p} unexplained bytes")
    rin, rout = mask_regs(in_mask), mask_regs(out_mask)
    return Event(seq=seq, addr=addr, insn=bytes(insn6[:ilen]), flags=flags,
                 pswm_before=pb, pswm_after=pa, cc=cc, pgm=pgm,
                 regs_in=tuple(zip(rin, regs[:nin])), regs_out=tuple(zip(rout, regs[nin:])),
                 reads=tuple(mem[:nr]), writes=tuple(mem[nr:]))


def read_all(path) -> tuple[TraceHeader, list]:
    """Small traces and tests: the header and every record."""
    with TraceReader(path) as rd:
        return rd.header, list(rd)

