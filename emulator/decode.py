"""Python face of the native zPCI decoder (cbits/decode.c).

The batch paths (:func:`decode_buffer`, :func:`count_insns`) make no Python
object per instruction: the walk and the records stay in C, and the result
holds a cffi array of ``zpci_decoded`` that numpy can view in place.
:func:`decode_one` and :func:`iter_zpci` build
:class:`firmware_model.insns.Decoded` values for the slow paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from emulator._native import ffi, lib
from firmware_model.insns import TABLE, Decoded

TRUNCATED = lib.ZPCI_DEC_TRUNCATED
INDEX_NONE = lib.ZPCI_INDEX_NONE
ADDR_LIMIT = 1 << 64

if lib.zpci_table_size() != len(TABLE) or any(  # pragma: no cover - a stale build
        lib.zpci_table_get(i.index).opcode != i.opcode for i in TABLE):
    raise ImportError("emulator._native was built from a different zpci_insns.def; run `make native`")


def _cbuf(buf):
    """A uint8_t[] over buf's memory, without a copy (bytes, bytearray, mmap, memoryview)."""
    return ffi.from_buffer("uint8_t[]", buf)


def _check_base(base: int, size: int) -> None:
    if not 0 <= base < ADDR_LIMIT or base + size > ADDR_LIMIT:
        raise ValueError(f"base {base:#x} + {size} bytes leaves the 64-bit address space")


def insn_length(first_byte: int) -> int:
    """2, 4 or 6: the length the instruction-length code of first_byte gives."""
    return lib.zpci_insn_length(first_byte & 0xFF)


# insn_length of every first byte, for Python loops that walk code by length
INSN_LENGTHS = bytes(insn_length(b) for b in range(256))


def to_decoded(r) -> Decoded:
    """A Python copy of a cffi ``zpci_decoded`` (the trap path's, or a record here)."""
    # Positional, in Decoded's slot order (a test compares every field by name).
    return Decoded(r.addr, r.index, r.opcode, r.ilen, r.r1, r.r2, r.r3, r.m3, r.m4, r.x2, r.b2,
                   r.d2, r.ipa, r.ipb, r.flags)


@dataclass(frozen=True)
class DecodeResult:
    """Outcome of one walk over a buffer.

    ``records`` is a cffi ``zpci_decoded[]`` of which the first ``nzpci`` are
    valid, in address order; ``counts[i]`` is the number of zPCI instructions
    of table index i.  A buffer that ends inside an instruction has
    ``truncated`` set and the cut instruction at ``trunc_addr`` with
    ``trunc_bytes`` of it present; that instruction is in no count.
    """

    base: int
    size: int
    total: int
    nzpci: int
    counts: tuple[int, ...]
    records: object
    trunc_addr: int | None
    trunc_bytes: int

    @property
    def truncated(self) -> bool:
        return self.trunc_addr is not None

    def by_mnemonic(self) -> dict[str, int]:
        return {ins.mnemonic: self.counts[ins.index] for ins in TABLE}

    def __len__(self) -> int:
        return self.nzpci

    def __getitem__(self, i: int):
        """The i-th record as the cffi struct (same attribute names as Decoded)."""
        if not -self.nzpci <= i < self.nzpci:
            raise IndexError(i)
        return self.records[i % self.nzpci]

    def decoded(self) -> Iterator[Decoded]:
        """The records as Decoded values (slow path: one object each)."""
        for i in range(self.nzpci):
            yield to_decoded(self.records[i])

    def array(self):
        """A numpy structured view of the records (no copy)."""
        import numpy as np

        return np.frombuffer(ffi.buffer(self.records, self.nzpci * ffi.sizeof("zpci_decoded")),
                             dtype=record_dtype())


def record_dtype():
    """numpy dtype laid out exactly as the C struct, offsets taken from cffi."""
    import numpy as np

    ctype = ffi.typeof("zpci_decoded")
    names, formats, offsets = [], [], []
    for name, field in ctype.fields:
        names.append(name)
        formats.append(np.dtype(f"{'i' if field.type.cname.startswith('int') else 'u'}"
                                f"{ffi.sizeof(field.type)}"))
        offsets.append(field.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": ffi.sizeof(ctype)})


def decode_buffer(buf, base: int = 0) -> DecodeResult:
    """Walk buf (guest address base) and decode every zPCI instruction in it."""
    cbuf = _cbuf(buf)
    size = len(cbuf)
    _check_base(base, size)
    scan = ffi.new("zpci_scan *")
    cap = 64
    records = ffi.new("zpci_decoded[]", cap)
    while not lib.zpci_decode_buffer(cbuf, size, base, records, cap, scan):
        # Full: the walk stopped before the record that did not fit; grow and resume.
        bigger = ffi.new("zpci_decoded[]", cap * 4)
        ffi.memmove(bigger, records, cap * ffi.sizeof("zpci_decoded"))
        records, cap = bigger, cap * 4
    tb = scan.trunc_bytes
    return DecodeResult(base=base, size=size, total=scan.total, nzpci=scan.nzpci,
                        counts=tuple(scan.counts[0:len(TABLE)]), records=records,
                        trunc_addr=base + scan.trunc_offset if tb else None, trunc_bytes=tb)


def decode_one(buf, addr: int = 0, zpci_only: bool = True) -> Decoded | None:
    """Decode the instruction at buf[0].

    With zpci_only (the default) the answer is a Decoded for a complete zPCI
    instruction and None for anything else; otherwise any instruction comes
    back (index 0xff when not in the table, flags TRUNCATED when cut short)
    and only an empty buffer gives None.
    """
    out = ffi.new("zpci_decoded *")
    cbuf = _cbuf(buf)
    if not lib.zpci_decode_one(cbuf, len(cbuf), addr, out):
        return None
    if zpci_only and (out.index == INDEX_NONE or out.flags & TRUNCATED):
        return None
    return to_decoded(out)


def iter_zpci(buf, base: int = 0) -> Iterator[Decoded]:
    """Every zPCI instruction of buf as a Decoded, in address order."""
    return decode_buffer(buf, base).decoded()


@dataclass(frozen=True)
class CountResult:
    """Instructions walked in [start, end): ``total``, ``counts`` per table
    index, and ``stop``, the address where the walk ended (the first
    boundary at or after end, or a truncated instruction)."""

    total: int
    counts: tuple[int, ...]
    stop: int

    def by_mnemonic(self) -> dict[str, int]:
        return {ins.mnemonic: self.counts[ins.index] for ins in TABLE}


def count_insns(buf, base: int = 0, start: int | None = None, end: int | None = None,
                per_index: bool = True) -> CountResult:
    """Count the instructions starting in [start, end) (guest addresses, default
    the whole buffer), walking from start, which must be an instruction
    boundary for the count to mean anything."""
    cbuf = _cbuf(buf)
    size = len(cbuf)
    lo = 0 if start is None else start - base
    hi = size if end is None else end - base
    if lo < 0 or hi < lo:
        raise ValueError(f"bad range [{start}, {end}) for a buffer at {base:#x}")
    stop = ffi.new("uint64_t *")
    counts = ffi.new("uint64_t[]", lib.ZPCI_TABLE_MAX) if per_index else ffi.NULL
    total = lib.zpci_count_insns(cbuf, size, min(lo, size), hi, counts, stop)
    ctuple = tuple(counts[0:len(TABLE)]) if per_index else ()
    return CountResult(total=total, counts=ctuple, stop=base + max(stop[0], lo))


def decode_elf(path) -> list[tuple[object, DecodeResult]]:
    """(CodeRegion, DecodeResult) for every executable section of an s390x ELF,
    each decoded at its own address; bad files raise a one-line UserError."""
    from emulator.elfio import executable_regions

    return [(r, decode_buffer(r.data, r.addr)) for r in executable_regions(path)]
