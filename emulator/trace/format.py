"""Trace format v1: constants, header and record types (see traces/FORMAT.md).

Everything here is shared by the writer, the reader and the importer so the
byte layout is stated once.  Integers are little-endian; instruction bytes and
guest memory are kept in guest (big-endian) order, untouched.
"""
from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field

from emulator.io_safe import load_json
from firmware_model.insns import BY_OPCODE, Format, ZpciInsn

MAGIC = b"\x89ZPT\r\n\x1a\n"      # PNG-style: catches text-mode mangling and stray truncation
VERSION = 1
PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, reserved
PREAMBLE_FLAG_ZSTD = 0x0001         # everything after the preamble is one zstd stream

RECORD_HEAD = struct.Struct("<BI")  # record type, payload length


class RecordType(enum.IntEnum):
    HEADER = 0x01
    BLOCK = 0x02
    RUNS = 0x03
    EVENT = 0x04
    MARK = 0x05
    NOTE = 0x06
    END = 0x7F


class StreamKind(enum.Enum):
    FULL = "full"          # BLOCK/RUNS records give the complete instruction stream
    ZPCI_ONLY = "zpci-only"  # only the zPCI events (e.g. an import of the gdb recorder)


class SourceKind(enum.Enum):
    BOOT = "boot"          # zpci-emu boot --trace
    IMPORT = "import"      # zpci-emu import of a JSONL recording
    CAPTURE = "capture"    # zpci-emu capture (a Linux guest, either engine): operand accesses only
    SYNTHETIC = "synthetic"  # written by the firmware model itself (tests): every store recorded


class EventFlag(enum.IntFlag):
    PSW = 0x01             # pswm_before / pswm_after were recorded
    CC = 0x02              # the cc field holds the condition code after the instruction
    PGM_KNOWN = 0x04       # whether a program interruption happened is known (pgm 0 = none)
    INCOMPLETE = 0x08      # inputs are missing (e.g. an RPCIT without its table entries)
    DMA_TABLES = 0x10      # the reads include the DMA table entries an RPCIT walked


# The same bits as plain ints for the per-event paths: a parsed Event's flags
# is the record's int, and IntFlag arithmetic costs a call per operation.
F_PSW = int(EventFlag.PSW)
F_CC = int(EventFlag.CC)
F_PGM_KNOWN = int(EventFlag.PGM_KNOWN)
F_INCOMPLETE = int(EventFlag.INCOMPLETE)


# seq, addr, pswm_before, pswm_after, insn(6), ilen, flags, cc, reserved,
# pgm, in_mask, out_mask, n_reads, n_writes
EVENT_HEAD = struct.Struct("<QQQQ6sBBBBHHHHH")
MEM_HEAD = struct.Struct("<QI")                     # addr, length (data follows)
BLOCK_HEAD = struct.Struct("<IQI")                  # block id, addr, length (code follows)
MARK_HEAD = struct.Struct("<Q")                     # seq of the next event (label follows)
END_BODY = struct.Struct("<QQII")                   # events, block executions, blocks, marks


def popcount16(mask: int) -> int:
    return bin(mask).count("1")


def insn_of(code: bytes) -> ZpciInsn | None:
    """The table row for instruction bytes, or None when they are no zPCI instruction."""
    if len(code) < 4:
        return None
    ins = BY_OPCODE.get(code[0] << 8 | code[1])
    if ins is not None and ins.ilen == 4:
        return ins
    if len(code) >= 6:
        ins = BY_OPCODE.get(code[0] << 8 | code[5])
        if ins is not None and ins.ilen == 6:
            return ins
    return None


def operand_regs(ins: ZpciInsn, code: bytes) -> int:
    """GPR mask of the registers the instruction's operands name.

    These are the instruction's only register inputs, so a trace stores just
    them: R1, R2 and the register after R2 (the odd half of the pair; also
    kept for an odd R2, which a model may read before it recognises the
    specification exception), R3/B2 or X2/B2 for the 6-byte forms.
    """
    if ins.format in (Format.RRE, Format.RRF_C):
        r1, r2 = code[3] >> 4, code[3] & 0xF
        return (1 << r1) | (1 << r2) | (1 << ((r2 + 1) & 15))
    r1, mid, b2 = code[1] >> 4, code[1] & 0xF, code[2] >> 4
    return (1 << r1) | (1 << mid) | (1 << b2)


def mask_regs(mask: int) -> tuple[int, ...]:
    return tuple(r for r in range(16) if mask >> r & 1)


def unicode_text(obj):
    """``obj`` (JSON data) with every string made valid Unicode: a lone surrogate
    (a file name's undecodable byte, say) becomes the text of its escape, ``\\udcff``.
    Readers refuse lone surrogates (emulator.io_safe.load_json), so writers use this."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(obj, dict):
        return {unicode_text(k): unicode_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [unicode_text(v) for v in obj]
    return obj


def unsigned(d: dict, key: str, bits: int, optional: bool = False) -> int | None:
    """``d[key]``, which must be an integer that fits ``bits`` bits unsigned
    (or null, if ``optional``); ValueError otherwise."""
    v = d.get(key) if optional else d[key]
    if v is None and optional:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << bits:
        raise ValueError(f"{key!r} is not a {bits}-bit unsigned integer: {v!r:.40}")
    return v


@dataclass(frozen=True)
class FunctionInfo:
    """One guest function as the recording saw it."""
    fid: int
    uid: int | None
    kind: str                               # device model name, e.g. "virtio-rng-pci"
    fhs: tuple[int, ...] = ()               # function handles as recorded (disabled, enabled)
    props: tuple[tuple[str, str], ...] = ()
    vendor_id: int | None = None
    device_id: int | None = None

    def to_json(self) -> dict:
        return {"fid": self.fid, "uid": self.uid, "kind": self.kind,
                "fhs": [f"{h:#x}" for h in self.fhs], "props": [list(p) for p in self.props],
                "vendor_id": self.vendor_id, "device_id": self.device_id}

    @classmethod
    def from_json(cls, d: dict) -> "FunctionInfo":
        fhs = d.get("fhs", ())
        if not isinstance(fhs, list) or not all(isinstance(h, str) for h in fhs):
            raise ValueError("function 'fhs' is not a list of hex strings")
        return cls(fid=unsigned(d, "fid", 32), uid=unsigned(d, "uid", 32, optional=True),
                   kind=str(d["kind"]),
                   fhs=tuple(unsigned({"fh": int(h, 16)}, "fh", 32) for h in fhs),
                   props=tuple((str(k), str(v)) for k, v in d.get("props", ())),
                   vendor_id=unsigned(d, "vendor_id", 16, optional=True),
                   device_id=unsigned(d, "device_id", 16, optional=True))


@dataclass(frozen=True)
class TraceHeader:
    source: SourceKind
    stream: StreamKind
    memory: int                                     # guest memory size in bytes
    functions: tuple[FunctionInfo, ...] = ()
    workload: str = ""                              # short name for reports, e.g. "wl_rng_strict"
    detail: str = ""                                # free text: command line, source file
    extra: tuple[tuple[str, str], ...] = field(default=())  # other facts kept as strings

    def to_bytes(self) -> bytes:
        return json.dumps(unicode_text({
            "source": self.source.value, "stream": self.stream.value, "memory": self.memory,
            "functions": [f.to_json() for f in self.functions], "workload": self.workload,
            "detail": self.detail, "extra": dict(self.extra)}), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TraceHeader":
        """The header of a trace file; anything malformed raises ValueError,
        KeyError, TypeError or AttributeError."""
        d = load_json(data)
        return cls(source=SourceKind(d["source"]), stream=StreamKind(d["stream"]),
                   memory=unsigned(d, "memory", 64),
                   functions=tuple(FunctionInfo.from_json(f) for f in d.get("functions", ())),
                   workload=str(d.get("workload", "")), detail=str(d.get("detail", "")),
                   extra=tuple(sorted((str(k), str(v)) for k, v in d.get("extra", {}).items())))


@dataclass(frozen=True)
class Block:
    block_id: int
    addr: int
    code: bytes


@dataclass(frozen=True)
class Runs:
    """Consecutive executions: (block id, times in a row) in order."""
    pairs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Mark:
    next_seq: int
    label: str


@dataclass(frozen=True)
class Note:
    kind: str
    data: dict


@dataclass(frozen=True)
class Event:
    """One executed zPCI instruction with its inputs and its recorded result."""
    seq: int
    addr: int
    insn: bytes                                  # ilen bytes
    flags: int                                   # EventFlag bits
    pswm_before: int
    pswm_after: int
    cc: int
    pgm: int                                     # 0 = none (when PGM_KNOWN)
    regs_in: tuple[tuple[int, int], ...]         # (gpr, value) before, operand registers
    regs_out: tuple[tuple[int, int], ...]        # (gpr, value) after, the changed ones
    reads: tuple[tuple[int, bytes], ...]         # guest memory the instruction read
    writes: tuple[tuple[int, bytes], ...]        # guest memory it wrote

    @property
    def info(self) -> ZpciInsn:
        ins = insn_of(self.insn)
        assert ins is not None
        return ins

    @property
    def mnemonic(self) -> str:
        return self.info.mnemonic


@dataclass(frozen=True)
class End:
    events: int
    block_execs: int
    blocks: int
    marks: int


def encode_event(seq: int, addr: int, insn: bytes, flags: int, pswm_before: int,
                 pswm_after: int, cc: int, pgm: int, regs_in, regs_out, reads, writes) -> bytes:
    """Payload of an EVENT record; regs_* are (gpr, value) pairs."""
    in_mask = out_mask = 0
    vals = []
    for r, v in sorted(regs_in):
        in_mask |= 1 << r
        vals.append(v)
    for r, v in sorted(regs_out):
        out_mask |= 1 << r
        vals.append(v)
    return pack_event(seq, addr, insn, flags, pswm_before, pswm_after, cc, pgm, in_mask,
                      out_mask, vals, reads, writes)


def pack_event(seq: int, addr: int, insn: bytes, flags: int, pswm_before: int, pswm_after: int,
               cc: int, pgm: int, in_mask: int, out_mask: int, vals, reads, writes) -> bytes:
    """Payload of an EVENT record from the register masks and the values they
    name (inputs, then outputs, each in register order)."""
    parts = [EVENT_HEAD.pack(seq, addr, pswm_before, pswm_after, insn.ljust(6, b"\0"), len(insn),
                             int(flags), cc, 0, pgm, in_mask, out_mask, len(reads), len(writes))]
    if vals:
        parts.append(_REGS[len(vals)].pack(*vals))
    for a, d in reads:
        parts.append(MEM_HEAD.pack(a, len(d)))
        parts.append(bytes(d))
    for a, d in writes:
        parts.append(MEM_HEAD.pack(a, len(d)))
        parts.append(bytes(d))
    return b"".join(parts)


_REGS = [struct.Struct(f"<{n}Q") for n in range(33)]    # in and out: 16 registers each


def record(rtype: int, payload: bytes) -> bytes:
    return RECORD_HEAD.pack(rtype, len(payload)) + payload
