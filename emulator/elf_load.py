"""Loading a ``-kernel`` ELF the way QEMU's s390 IPL code does.

QEMU (hw/s390x/ipl.c) loads every PT_LOAD segment at its physical address,
zero-fills the rest of its memory size and starts at the ELF entry; an entry
of 0x10000 (or the old 0x800) marks a Linux image, which starts at 0x10000
and gets the kernel command line at 0x10480.  Anything a user can get wrong
becomes a one-line UserError naming the file and the problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emulator.errors import UserError

ELF_MAGIC = b"\x7fELF"
EM_S390 = 22
PT_LOAD = 1
PF_X = 1
KERN_IMAGE_START = 0x10000
KERN_PARM_AREA = 0x10480
KERN_PARM_AREA_SIZE = 0x1000 - 0x480   # up to the next page, as QEMU's legacy size


@dataclass(frozen=True)
class Segment:
    addr: int          # physical load address
    data: bytes        # file bytes
    memsz: int         # bytes in memory (data then zeros)
    flags: int = 0     # p_flags (PF_X = 1)


@dataclass(frozen=True)
class Image:
    entry: int         # PSW address to start at
    segments: tuple[Segment, ...]
    linux: bool = False


def load(path: str | Path, memory_size: int, cmdline: str = "") -> Image:
    """Reads and checks ``path``; every segment must fit in ``memory_size`` bytes."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=where) from None
    return parse(raw, memory_size, where, cmdline)


def _u(raw: bytes, off: int, size: int, where: str, what: str) -> int:
    if off < 0 or off + size > len(raw):
        raise UserError(f"{what} at offset {off:#x} is beyond the end of the file "
                        f"({len(raw)} bytes)", where=where)
    return int.from_bytes(raw[off:off + size], "big")


def parse(raw: bytes, memory_size: int, where: str = "<elf>", cmdline: str = "") -> Image:
    """The loadable image of an ELF64 big-endian s390 executable held in ``raw``.

    Parsed by hand rather than with pyelftools: the fields QEMU uses are few,
    and every offset is checked against the file so no input can raise
    anything but a UserError.
    """
    if len(raw) < 4 or raw[:4] != ELF_MAGIC:
        raise UserError("not an ELF file (no \\x7fELF magic at offset 0)", where=where)
    if len(raw) < 64:
        raise UserError(f"ELF header cut short: file has {len(raw)} bytes, needs 64", where=where)
    if raw[4] != 2:
        raise UserError(f"EI_CLASS at offset 0x4 is {raw[4]}, not 2 (ELF64): "
                        "s390x kernels are 64-bit", where=where)
    if raw[5] != 2:
        raise UserError(f"EI_DATA at offset 0x5 is {raw[5]}, not 2 (big-endian)", where=where)
    machine = _u(raw, 18, 2, where, "e_machine")
    if machine != EM_S390:
        raise UserError(f"e_machine at offset 0x12 is {machine}, not {EM_S390} (EM_S390)",
                        where=where)
    entry = _u(raw, 24, 8, where, "e_entry")
    phoff = _u(raw, 32, 8, where, "e_phoff")
    phentsize = _u(raw, 54, 2, where, "e_phentsize")
    phnum = _u(raw, 56, 2, where, "e_phnum")
    if phnum == 0:
        raise UserError("no program headers (e_phnum at offset 0x38 is 0)", where=where)
    if phentsize < 56:
        raise UserError(f"e_phentsize at offset 0x36 is {phentsize}, less than 56", where=where)
    segments = []
    for n in range(phnum):
        base = phoff + n * phentsize
        what = f"program header {n}"
        p_type = _u(raw, base, 4, where, what)
        if p_type != PT_LOAD:
            continue
        p_flags = _u(raw, base + 4, 4, where, what)
        p_offset = _u(raw, base + 8, 8, where, what)
        p_paddr = _u(raw, base + 24, 8, where, what)
        p_filesz = _u(raw, base + 32, 8, where, what)
        p_memsz = _u(raw, base + 40, 8, where, what)
        if p_filesz > p_memsz:
            raise UserError(f"{what} (offset {base:#x}): p_filesz {p_filesz:#x} exceeds "
                            f"p_memsz {p_memsz:#x}", where=where)
        if p_offset + p_filesz > len(raw):
            raise UserError(f"{what} (offset {base:#x}): segment data {p_offset:#x}+"
                            f"{p_filesz:#x} runs past the end of the file ({len(raw):#x} bytes)",
                            where=where)
        if p_paddr + p_memsz > memory_size:
            raise UserError(f"{what} (offset {base:#x}): segment {p_paddr:#x}-"
                            f"{p_paddr + p_memsz:#x} does not fit in {memory_size >> 20} MiB "
                            "of guest memory", where=where)
        if p_memsz:
            segments.append(Segment(p_paddr, bytes(raw[p_offset:p_offset + p_filesz]), p_memsz,
                                    p_flags))
    if not segments:
        raise UserError("no PT_LOAD segment with contents", where=where)
    linux = entry in (KERN_IMAGE_START, 0x800)
    if linux:
        entry = KERN_IMAGE_START
        segments.append(Segment(KERN_PARM_AREA, cmdline.encode()[:KERN_PARM_AREA_SIZE - 1] + b"\0",
                                0))
    if entry >= memory_size or entry & 1:
        raise UserError(f"entry point {entry:#x} (e_entry, offset 0x18) is not an instruction "
                        "address in guest memory", where=where)
    return Image(entry, tuple(segments), linux)
