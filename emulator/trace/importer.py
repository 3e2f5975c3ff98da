"""Import a JSONL recording of the gdb recorder (docs: linux-guest-traces.md) into a trace.

One JSON object per line.  Event records carry ``insn``, ``addr``, ``bytes``,
``gr_before``, ``gr_after``, ``pswm_before``, ``pswm_after``, ``cc``,
``operands``, ``mem_before``, ``mem_after`` (required, checked) and may carry
``seq``, ``pswa_after``, ``dma_tables`` (``[{"addr", "value"}]`` hex strings:
the table entries an RPCIT walked), ``phase`` and ``pgm``.  Records with a
``kind`` other than an event become NOTE records, ``"kind": "phase"`` (or
``mark``) a MARK.  Unknown extra keys are ignored; a malformed required key
is a one-line error naming the file, line, byte offset and sequence number.

The guest's functions are not in the JSONL; they are taken from the CLP LIST
PCI and QUERY PCI FN responses the recording holds (fid, fh, vendor/device
id, uid).
"""
from __future__ import annotations

import struct
from pathlib import Path

from emulator.decode import decode_one
from emulator.errors import UserError
from emulator.io_safe import check_input, load_json, open_input, output_file
from emulator.trace.format import FunctionInfo, SourceKind, StreamKind, TraceHeader, insn_of
from emulator.trace.writer import TraceWriter
from firmware_model.arch import CLP_FH_LIST_ENTRY_SIZE, LIST_PCI_HDR_LEN, ClpCmd, ClpRsp
from firmware_model.insns import BY_MNEMONIC
from firmware_model.policy import handle_register

# No bound: the recorder reads operands at the kernel's logical addresses
# (DAT on: FIBs on vmalloc'd stacks such as 0x37fffd1bbd0), which lie beyond
# the guest's -m size; ``capture`` writes memory 0 for the same reason.
DEFAULT_MEMORY = 0
_EVENT_KINDS = (None, "event", "zpci")
_MARK_KINDS = ("phase", "mark")
MAX_LINE = 64 << 20              # as a trace record: one line becomes one record
MAX_FUNCTIONS = 4096             # distinct fids the CLP responses may list
MAX_HANDLES = 64                 # handles of one function (QEMU gives each two: disabled, enabled)


class _Line:
    __slots__ = ("path", "lineno", "offset", "seq")

    def __init__(self, path):
        self.path, self.lineno, self.offset, self.seq = path, 0, 0, None

    def error(self, msg: str) -> UserError:
        seq = "-" if self.seq is None else self.seq
        return UserError(msg, where=f"{self.path}: line {self.lineno} (offset {self.offset}), seq {seq}")


def _records(path: Path, at: _Line):
    f = open_input(path)
    with f:
        off = 0
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                return
            lineno += 1
            at.lineno, at.offset, at.seq = lineno, off, None
            off += len(raw)
            if len(raw) > MAX_LINE:
                raise at.error(f"line longer than {MAX_LINE >> 20} MiB")
            if not raw.strip():
                continue
            if not raw.endswith(b"\n") and f.peek(1) == b"" and raw.strip()[-1:] != b"}":
                raise at.error("truncated last line")
            try:
                rec = load_json(raw)
            except ValueError as exc:
                raise at.error(f"not JSON: {exc}") from None
            if not isinstance(rec, dict):
                raise at.error("record is not a JSON object")
            yield rec


def jsonl_records(path):
    """The JSON objects of a JSONL file, one per non-blank line; a malformed
    line is a one-line UserError naming the file, line and byte offset."""
    path = Path(path)
    return _records(path, _Line(path))


def _hex(at: _Line, rec: dict, key: str, *, optional=False):
    v = rec.get(key)
    if v is None:
        if optional:
            return None
        raise at.error(f"missing {key!r}")
    if isinstance(v, bool):
        raise at.error(f"{key!r} is not a number: {v!r}")
    if isinstance(v, str):
        try:
            v = int(v, 16)
        except ValueError:
            pass
    if not isinstance(v, int):
        raise at.error(f"{key!r} is not a hex number: {v!r}")
    if not 0 <= v < 1 << 64:
        raise at.error(f"{key!r} {v:#x} is not a 64-bit value")
    return v


def _hexbytes(at: _Line, v, key: str) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return bytes.fromhex(v)
        except ValueError:
            pass
    raise at.error(f"{key!r} is not a hex byte string")


def _regs(at: _Line, rec: dict, key: str) -> list[int]:
    v = rec.get(key)
    if not isinstance(v, list) or len(v) != 16:
        raise at.error(f"{key!r} must be a list of 16 registers")
    out = []
    for x in v:
        try:
            val = x if isinstance(x, int) and not isinstance(x, bool) else int(x, 16)
        except (TypeError, ValueError):
            raise at.error(f"{key!r} holds a non-hex value {x!r}") from None
        if not 0 <= val < 1 << 64:
            raise at.error(f"{key!r} value {x!r} is not a 64-bit register")
        out.append(val)
    return out


def _parse_event(at: _Line, rec: dict, last_seq: int):
    seq = rec.get("seq", last_seq + 1)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 1 << 64:
        raise at.error(f"'seq' is not a sequence number: {seq!r}")
    at.seq = seq
    if seq <= last_seq:
        raise at.error(f"seq {seq} does not follow {last_seq}")
    code = _hexbytes(at, rec.get("bytes"), "bytes")
    if code is None:
        raise at.error("missing 'bytes'")
    ins = insn_of(code)
    if ins is None or len(code) != ins.ilen:
        raise at.error(f"'bytes' {code.hex()} is not a zPCI instruction")
    name = rec.get("insn")
    if not isinstance(name, str):
        raise at.error("missing 'insn'")
    if name in BY_MNEMONIC and name != ins.mnemonic:
        raise at.error(f"'insn' says {name}, the bytes are {ins.mnemonic}")
    addr = _hex(at, rec, "addr")
    gb, ga = _regs(at, rec, "gr_before"), _regs(at, rec, "gr_after")
    pb, pa = _hex(at, rec, "pswm_before"), _hex(at, rec, "pswm_after")
    cc = rec.get("cc")
    if not isinstance(cc, int) or isinstance(cc, bool) or not 0 <= cc <= 3:
        raise at.error(f"'cc' is not a condition code: {cc!r}")
    if cc != (pa >> 44) & 3:
        raise at.error(f"'cc' {cc} contradicts pswm_after {pa:016x}")
    ops = rec.get("operands")
    if not isinstance(ops, dict):
        raise at.error("'operands' is not an object")
    if "mem_before" not in rec or "mem_after" not in rec:
        raise at.error("missing 'mem_before'/'mem_after'")
    mb = _hexbytes(at, rec["mem_before"], "mem_before")
    ma = _hexbytes(at, rec["mem_after"], "mem_after")
    reads, writes = [], []
    if mb is not None or ma is not None:
        blk = _hex(at, ops, "blk")
        for img, key in ((mb, "mem_before"), (ma, "mem_after")):
            if img is not None and "blk_len" in ops and len(img) != _hex(at, ops, "blk_len"):
                raise at.error(f"{key!r} is {len(img)} bytes, operands say {ops['blk_len']}")
        if mb is not None:
            reads.append((blk, mb))
        if ma is not None:
            writes.append((blk, ma))
    incomplete = dma = False
    tables = rec.get("dma_tables")
    if tables is not None:
        if not isinstance(tables, list):
            raise at.error("'dma_tables' is not a list")
        for ent in tables:
            if not isinstance(ent, dict):
                raise at.error("'dma_tables' entry is not an object")
            reads.append((_hex(at, ent, "addr"), struct.pack(">Q", _hex(at, ent, "value"))))
        dma = True
    elif ins.mnemonic == "RPCIT":
        incomplete = True     # the walk's table entries were not recorded
    pgm = rec.get("pgm")
    if pgm is not None and (not isinstance(pgm, int) or isinstance(pgm, bool)
                            or not 0 <= pgm <= 0xFFFF):
        raise at.error(f"'pgm' is not an interruption code: {pgm!r}")
    pswa_after = _hex(at, rec, "pswa_after", optional=True)
    if pgm is not None:
        pgm_known = True
    else:
        # The recorder stepped one instruction: landing right after it means no interruption.
        pgm_known = pswa_after is not None and pswa_after == addr + ins.ilen
    return dict(seq=seq, addr=addr, insn=code, gprs_before=gb, gprs_after=ga, pswm_before=pb,
                pswm_after=pa, reads=reads, writes=writes, pgm=pgm or None, pgm_known=pgm_known,
                incomplete=incomplete, dma_tables=dma, ins=ins)


def _virtio_kinds() -> dict[tuple[int, int], tuple[str, bool]]:
    """PCI ids -> (device model name, modern only), from the models' own ids."""
    from firmware_model.devices.virtio import MODERN_DEVICE_BASE, VIRTIO_VENDOR
    from firmware_model.devices.virtio_blk import VirtioBlkPci
    from firmware_model.devices.virtio_net import VirtioNetPci
    from firmware_model.devices.virtio_rng import VirtioRngPci
    out = {}
    for cls in (VirtioNetPci, VirtioBlkPci, VirtioRngPci):
        out[(VIRTIO_VENDOR, cls.legacy_device_id)] = (cls.kind, False)
        out[(VIRTIO_VENDOR, MODERN_DEVICE_BASE + cls.virtio_id)] = (cls.kind, True)
    return out


class _FunctionScan:
    """The guest's functions from the recorded CLP responses, in list order,
    gathered event by event (a recording may hold any number of CLPs)."""

    ACCESSES = 4096        # first accesses searched for enabled handles

    def __init__(self, at: _Line):
        self.at = at
        self.listed: dict[int, tuple[int, int]] = {}     # fid -> (vendor, device)
        self.uids: dict[int, int] = {}
        self.fhs: dict[int, list[int]] = {}
        self.accesses: list[tuple] = []

    def add(self, ev: dict) -> None:
        ins = ev["ins"]
        if ins.mnemonic == "CLP":
            if ev["writes"]:
                self._clp(ev["writes"][0][1])
        elif (ins.mnemonic in ("PCILG", "PCISTG", "RPCIT", "MPCIFC", "PCISTB")
              and len(self.accesses) < self.ACCESSES):
            reg = handle_register(ins.index, decode_one(ev["insn"]))
            self.accesses.append(ev["gprs_before"][reg] >> 32)

    def _clp(self, blk: bytes) -> None:
        if len(blk) < 32:
            return
        req_len, cmd = struct.unpack_from(">HH", blk, 0)
        if req_len < 16 or req_len + 16 > len(blk):
            return
        rsp = blk[req_len:]
        rsp_len, code = struct.unpack_from(">HH", rsp, 0)
        if code != ClpRsp.OK:
            return
        if cmd == ClpCmd.LIST_PCI and len(rsp) >= LIST_PCI_HDR_LEN:
            # entries are 16 bytes; a smaller size is corrupt
            esz = max(rsp[LIST_PCI_HDR_LEN - 1], CLP_FH_LIST_ENTRY_SIZE)
            for off in range(LIST_PCI_HDR_LEN, min(rsp_len, len(rsp)) - esz + 1, esz):
                dev, ven, _cfg, fid, fh = struct.unpack_from(">HHIII", rsp, off)
                if fid not in self.listed and len(self.listed) >= MAX_FUNCTIONS:
                    raise self.at.error(f"CLP responses list more than {MAX_FUNCTIONS} functions")
                self.listed.setdefault(fid, (ven, dev))
                self._handle(fid, fh)
        elif cmd == ClpCmd.QUERY_PCI_FN and len(rsp) >= 128:
            fid = struct.unpack_from(">I", rsp, 20)[0]
            if fid in self.uids or len(self.uids) < MAX_FUNCTIONS:
                self.uids[fid] = struct.unpack_from(">I", rsp, 124)[0]

    def _handle(self, fid: int, fh: int) -> None:
        lst = self.fhs.setdefault(fid, [])
        if fh in lst:
            return
        if len(lst) >= MAX_HANDLES:
            raise self.at.error(f"more than {MAX_HANDLES} handles recorded for fid {fid:#x}")
        lst.append(fh)

    def functions(self) -> tuple[FunctionInfo, ...]:
        # An access may use a listed handle with the enable bit changed.
        by_handle: dict[int, list[int]] = {}
        for fid, lst in self.fhs.items():
            for h in lst:
                by_handle.setdefault(h & 0x7FFFFFFF, []).append(fid)
        for fh in self.accesses:
            for fid in dict.fromkeys(by_handle.get(fh & 0x7FFFFFFF, ())):
                self._handle(fid, fh)
        kinds = _virtio_kinds()
        out = []
        for fid, (ven, dev) in self.listed.items():
            kind, modern_only = kinds.get((ven, dev), (f"pci-{ven:04x}-{dev:04x}", False))
            props = (("disable-legacy", "on"),) if modern_only else ()
            out.append(FunctionInfo(fid=fid, uid=self.uids.get(fid), kind=kind,
                                    fhs=tuple(self.fhs[fid]), props=props, vendor_id=ven,
                                    device_id=dev))
        return tuple(out)


def import_jsonl(src, dst, *, compress: bool = True, memory: int = DEFAULT_MEMORY,
                 workload: str | None = None) -> int:
    """Convert a JSONL recording to a zPCI-only trace; returns the number of events.

    The output is reserved before the first pass and renamed into place only
    when the trace is complete: a failed import leaves no file."""
    src = Path(src)
    at = _Line(src)
    check_input(src)
    with output_file(dst) as out:
        # Pass 1: check every record and find the functions.
        scan = _FunctionScan(at)
        last = -1
        n = 0
        for rec in _records(src, at):
            if rec.get("kind") in _EVENT_KINDS:
                ev = _parse_event(at, rec, last)
                last = ev["seq"]
                n += 1
                scan.add(ev)
            elif not isinstance(rec.get("kind"), str):
                raise at.error("'kind' is not a string")
        header = TraceHeader(source=SourceKind.IMPORT, stream=StreamKind.ZPCI_ONLY,
                             memory=memory, functions=scan.functions(),
                             workload=workload or src.stem.split(".")[0],
                             detail=f"zpci-emu import {src.name}")
        # Pass 2: write.
        _write(src, at, out.path, header, compress, memory)
    return n


def _write(src, at, tmp, header, compress, memory) -> None:
    last = -1
    phase = None
    with TraceWriter(tmp, header, compress=compress) as w:
        for rec in _records(src, at):
            kind = rec.get("kind")
            if kind in _EVENT_KINDS:
                ev = _parse_event(at, rec, last)
                last = ev["seq"]
                ph = rec.get("phase")
                if isinstance(ph, str) and ph != phase:
                    w.mark(ph)
                    phase = ph
                ev.pop("ins")
                for a, d in ev["reads"] + ev["writes"]:
                    if memory and a + len(d) > memory:
                        raise at.error(f"memory at {a:#x}+{len(d)} is beyond the guest's {memory:#x} bytes")
                w.zpci_event(**ev)
            elif kind in _MARK_KINDS:
                label = rec.get("name", rec.get("label", rec.get("phase")))
                if not isinstance(label, str):
                    raise at.error("phase record without a name")
                w.mark(label)
                phase = label
            else:
                w.note(kind, {k: v for k, v in rec.items() if k != "kind"})
