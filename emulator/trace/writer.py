"""Recording a guest into a trace file (format v1, traces/FORMAT.md).

API (stable; ``zpci-emu boot --trace`` and the importer use it)::

    from emulator.trace.writer import TraceWriter
    from emulator.trace.format import TraceHeader, FunctionInfo, SourceKind, StreamKind

    hdr = TraceHeader(source=SourceKind.BOOT, stream=StreamKind.FULL, memory=64 << 20,
                      functions=(FunctionInfo(fid=1, uid=1, kind="virtio-rng-pci"),),
                      workload="wl_rng_strict", detail="zpci-emu boot ...")
    with TraceWriter(path, hdr, compress=True) as w:
        bid = w.add_block(addr, code)      # once per distinct basic block -> id 0, 1, ...
        w.run_block(bid)                   # every time the block runs (cheap)
        w.zpci_event(addr, insn_bytes, gprs_before, gprs_after,
                     pswm_before=..., pswm_after=...,   # PSW masks (problem state, cc)
                     cc=...,                            # or pswm_before and cc only
                     reads=rg.reads, writes=rg.writes,  # RecordingGuest lists of (addr, bytes)
                     pgm=None)                          # program-interruption code, None = none
        w.mark("module load")              # optional phase marks
    # close() (or leaving the with-block) writes the END record; a file
    # without it is reported as truncated by the reader.

``run_block`` only counts in memory: consecutive repeats of one block become a
(block, count) pair and the pairs go out in chunks, so the cost per call is a
compare and an add.  Pending runs are flushed before every zPCI event, which
keeps the order of blocks and events exact in the file.

Only the registers an instruction's operands name are stored as inputs
(``format.operand_regs``) and only the registers that changed as outputs.
"""
from __future__ import annotations

import array
import json
import sys
from pathlib import Path

from emulator.trace.format import (
    BLOCK_HEAD, END_BODY, MARK_HEAD, PREAMBLE, PREAMBLE_FLAG_ZSTD, MAGIC, RECORD_HEAD, VERSION,
    EventFlag, RecordType, StreamKind, TraceHeader, encode_event, insn_of, operand_regs,
    pack_event, record, unicode_text)

_RUN_CHUNK = 16384          # ints (8192 pairs) per RUNS record: ~64 KiB, bounded memory
_U32_MAX = 0xFFFFFFFF
_EVENT = int(RecordType.EVENT)


class TraceWriter:
    def __init__(self, path, header: TraceHeader, compress: bool = True, level: int = 3):
        self.path = Path(path)
        self.header = header
        self._raw = open(self.path, "wb")
        self._raw.write(PREAMBLE.pack(MAGIC, VERSION, PREAMBLE_FLAG_ZSTD if compress else 0, 0))
        if compress:
            import zstandard
            self._cctx = zstandard.ZstdCompressor(level=level)
            self._out = self._cctx.stream_writer(self._raw, closefd=False)
        else:
            self._out = self._raw
        self._full = header.stream is StreamKind.FULL
        self._nblocks = 0
        self._cur = -1
        self._n = 0
        self._pend: list[int] = []
        self._execs = 0
        self._events = 0
        self._marks = 0
        self._last_seq = -1
        self._closed = False
        self._out.write(record(RecordType.HEADER, header.to_bytes()))

    # -- instruction stream -------------------------------------------------
    def add_block(self, addr: int, code: bytes) -> int:
        if not self._full:
            raise ValueError("add_block on a zpci-only trace")
        bid = self._nblocks
        self._nblocks += 1
        self._out.write(record(RecordType.BLOCK, BLOCK_HEAD.pack(bid, addr, len(code)) + bytes(code)))
        return bid

    def run_block(self, block_id: int) -> None:
        if block_id == self._cur:
            self._n += 1
            return
        if self._n:
            self._pend.append(self._cur)
            self._pend.append(self._n)
            if len(self._pend) >= _RUN_CHUNK:
                self._write_runs()
        self._cur = block_id
        self._n = 1

    def _flush_runs(self) -> None:
        if self._n:
            self._pend.append(self._cur)
            self._pend.append(self._n)
            self._cur, self._n = -1, 0
        if self._pend:
            self._write_runs()

    def _write_runs(self) -> None:
        pend = self._pend
        if not self._full:
            raise ValueError("run_block on a zpci-only trace")
        out = array.array("I")
        for i in range(0, len(pend), 2):
            bid, n = pend[i], pend[i + 1]
            if not 0 <= bid < self._nblocks:
                raise ValueError(f"run_block: unknown block id {bid}")
            self._execs += n
            while n > _U32_MAX:
                out.append(bid)
                out.append(_U32_MAX)
                n -= _U32_MAX
            out.append(bid)
            out.append(n)
        if sys.byteorder != "little":
            out.byteswap()
        self._out.write(record(RecordType.RUNS, out.tobytes()))
        pend.clear()

    # -- zPCI events --------------------------------------------------------
    def zpci_event(self, addr: int, insn: bytes, gprs_before, gprs_after, *,
                   cc: int | None = None, pswm_before: int | None = None,
                   pswm_after: int | None = None, reads=(), writes=(),
                   pgm: int | None = None, pgm_known: bool = True,
                   incomplete: bool = False, dma_tables: bool = False,
                   seq: int | None = None) -> int:
        """Record one zPCI instruction; returns its sequence number."""
        ins = insn_of(bytes(insn))
        if ins is None:
            raise ValueError(f"not a zPCI instruction: {bytes(insn).hex()}")
        insn = bytes(insn[:ins.ilen])
        if seq is None:
            seq = self._last_seq + 1
        if seq <= self._last_seq:
            raise ValueError(f"sequence number {seq} not after {self._last_seq}")
        flags = EventFlag(0)
        if pswm_before is not None and pswm_after is None:
            # Only the mask before is at hand: completing changes nothing in the
            # mask but the cc; an interruption leaves the old PSW's mask as it was.
            pswm_after = pswm_before
            if cc is not None and pgm is None:
                pswm_after = (pswm_before & ~(3 << 44)) | (cc & 3) << 44
        if pswm_before is not None and pswm_after is not None:
            flags |= EventFlag.PSW
            if cc is None:
                cc = (pswm_after >> 44) & 3
        else:
            pswm_before = pswm_after = 0
        if cc is not None:
            flags |= EventFlag.CC
        if pgm_known:
            flags |= EventFlag.PGM_KNOWN
        if incomplete:
            flags |= EventFlag.INCOMPLETE
        if dma_tables:
            flags |= EventFlag.DMA_TABLES
        mask = operand_regs(ins, insn)
        regs_in = [(r, gprs_before[r]) for r in range(16) if mask >> r & 1]
        regs_out = [(r, gprs_after[r]) for r in range(16) if gprs_after[r] != gprs_before[r]]
        self._flush_runs()
        self._out.write(record(RecordType.EVENT, encode_event(
            seq, addr, insn, flags, pswm_before, pswm_after, cc or 0, pgm or 0,
            regs_in, regs_out, list(reads), list(writes))))
        self._last_seq = seq
        self._events += 1
        return seq

    def site(self, insn: bytes, dma_tables: bool = False) -> tuple:
        """What ``operand_event`` needs of an instruction, worked out once per
        instruction site: its bytes, its operand registers and mask, and the
        flags of an event whose PSW masks, cc and program exception were
        recorded."""
        ins = insn_of(bytes(insn))
        if ins is None:
            raise ValueError(f"not a zPCI instruction: {bytes(insn).hex()}")
        insn = bytes(insn[:ins.ilen])
        flags = EventFlag.PSW | EventFlag.CC | EventFlag.PGM_KNOWN
        if dma_tables:
            flags |= EventFlag.DMA_TABLES
        mask = operand_regs(ins, insn)
        return insn, tuple(r for r in range(16) if mask >> r & 1), mask, int(flags)

    def operand_event(self, site: tuple, addr: int, pswm_before: int, pswm_after: int, cc: int,
                      pgm: int | None, gprs_before, gprs_after, reads, writes) -> None:
        """``zpci_event`` for a recorder that has everything (``site`` from
        ``site()``): the per-instruction path of a long native capture."""
        insn, in_regs, in_mask, flags = site
        seq = self._last_seq + 1
        vals = [gprs_before[r] for r in in_regs]
        out_mask = 0
        if gprs_after != gprs_before:        # most instructions change no register
            for r in range(16):
                v = gprs_after[r]
                if v != gprs_before[r]:
                    out_mask |= 1 << r
                    vals.append(v)
        payload = pack_event(seq, addr, insn, flags, pswm_before, pswm_after, cc, pgm or 0,
                             in_mask, out_mask, vals, reads, writes)
        if self._n:
            self._flush_runs()
        self._out.write(RECORD_HEAD.pack(_EVENT, len(payload)) + payload)
        self._last_seq = seq
        self._events += 1

    def append_event_records(self, data: bytes, count: int, first_seq: int, last_seq: int) -> None:
        """Append ``count`` framed EVENT records at once (benchmarks build big traces this way).

        The caller vouches that ``data`` holds exactly that many EVENT records
        with sequence numbers from first_seq to last_seq, increasing; the
        reader checks all of it again.
        """
        if first_seq <= self._last_seq or last_seq < first_seq:
            raise ValueError(f"sequence numbers {first_seq}..{last_seq} not after {self._last_seq}")
        self._flush_runs()
        self._out.write(data)
        self._last_seq = last_seq
        self._events += count

    def zpci_event_raw(self, payload: bytes, seq: int) -> None:
        """Append an already encoded EVENT payload (benchmarks replicate real events)."""
        if seq <= self._last_seq:
            raise ValueError(f"sequence number {seq} not after {self._last_seq}")
        self._flush_runs()
        self._out.write(record(RecordType.EVENT, payload))
        self._last_seq = seq
        self._events += 1

    def copy_body(self, reader, notes=()) -> None:
        """Append every record of ``reader`` after its header as it is, with
        ``notes`` (kind, data) before its END: a recording whose header can
        only be stated once the run has ended (the capture's check result and
        time) is written first and restated this way, without decoding events."""
        rtypes = RecordType
        for rtype, buf, start, n, off in reader.body():
            if rtype == rtypes.END:
                for kind, data in notes:
                    self.note(kind, data)
                return
            if rtype in (rtypes.BLOCK, rtypes.RUNS):
                raise ValueError("copy_body of a full-stream trace")
            self._out.write(record(rtype, buf[start:start + n]))
            if rtype == rtypes.EVENT:
                self._events += 1
                self._last_seq = int.from_bytes(buf[start:start + 8], "little")
            elif rtype == rtypes.MARK:
                self._marks += 1
        raise ValueError(f"{reader.path}: no END record")

    # -- annotations ----------------------------------------------------------
    def mark(self, label: str) -> None:
        """A phase boundary: it applies from the next event on."""
        self._flush_runs()
        self._out.write(record(RecordType.MARK, MARK_HEAD.pack(self._last_seq + 1)
                               + unicode_text(label).encode()))
        self._marks += 1

    def note(self, kind: str, data: dict) -> None:
        """Any other fact a recorder has (e.g. FMB counters), kept as JSON."""
        self._flush_runs()
        self._out.write(record(RecordType.NOTE, json.dumps(
            unicode_text({"kind": kind, "data": data}), sort_keys=True).encode()))

    @property
    def events(self) -> int:
        return self._events

    def close(self) -> None:
        if self._closed:
            return
        self._flush_runs()
        self._out.write(record(RecordType.END, END_BODY.pack(
            self._events, self._execs, self._nblocks, self._marks)))
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        self._closed = True

    def abort(self) -> None:
        """Close without an END record: the file then reads as truncated, on purpose."""
        if self._closed:
            return
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
