"""Loading a ``-kernel`` ELF the way QEMU's s390 IPL code does.

QEMU (hw/s390x/ipl.c) loads every PT_LOAD segment at its physical address,
zero-fills the rest of its memory size and starts at the ELF entry; an entry
of 0x10000 (or the old 0x800) marks a Linux image, which starts at 0x10000
and gets the kernel command line at 0x10480.

The file is parsed with pyelftools (emulator.elfio.open_elf: header, class,
byte order, machine; its Elf_Phdr struct for each program header; its
Segment for the data).  What pyelftools does not check is checked here
before it reads: the program header table and every segment's data lie
inside the file, and every segment inside guest memory.  Anything a user can
get wrong becomes a one-line UserError naming the file and the field or
offset; a pyelftools exception never escapes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from elftools.common.utils import struct_parse
from elftools.elf.constants import P_FLAGS
from elftools.elf.segments import Segment as ElfSegment

from emulator.elfio import (
    OFF_EI_CLASS, OFF_EI_DATA, check_machine, open_elf, pyelftools_errors,
)
from emulator.errors import UserError
from emulator.io_safe import read_input

PF_X = P_FLAGS.PF_X
KERN_IMAGE_START = 0x10000
KERN_PARM_AREA = 0x10480
KERN_PARM_AREA_SIZE = 0x1000 - 0x480   # up to the next page, as QEMU's legacy size
# ELF64 header fields named in messages: offset of each
OFF_ENTRY, OFF_PHOFF, OFF_PHENTSIZE, OFF_PHNUM = 0x18, 0x20, 0x36, 0x38
PN_XNUM = 0xFFFF


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
    # a raw Linux image (emulator.cpu.ipl): it runs in supervisor state with
    # the sensitive instructions hooked, not in problem state
    supervisor: bool = False


def _size_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"


def load(path: str | Path, memory_size: int, cmdline: str = "") -> Image:
    """Reads and checks ``path``; every segment must fit in ``memory_size`` bytes."""
    where = str(path)
    return parse(read_input(path, where), memory_size, where, cmdline)


def parse(raw: bytes, memory_size: int, where: str = "<elf>", cmdline: str = "") -> Image:
    """The loadable image of an ELF64 big-endian s390 executable held in ``raw``."""
    size = len(raw)
    elf = open_elf(io.BytesIO(raw), where, size)
    if elf.elfclass != 64:
        raise UserError(f"EI_CLASS at offset {OFF_EI_CLASS:#x} is {raw[OFF_EI_CLASS]} "
                        f"(ELF{elf.elfclass}), not 2 (ELF64): s390x kernels are 64-bit",
                        where=where)
    if elf.little_endian:
        raise UserError(f"EI_DATA at offset {OFF_EI_DATA:#x} is {raw[OFF_EI_DATA]} "
                        "(little-endian), not 2 (big-endian)", where=where)
    check_machine(elf, where)
    hdr = elf.header
    entry, phoff, phentsize = hdr["e_entry"], hdr["e_phoff"], hdr["e_phentsize"]
    phnum = hdr["e_phnum"]
    if phnum == PN_XNUM:
        # the real count is in section header 0's sh_info, which pyelftools reads
        with pyelftools_errors(where, f"e_phnum at offset {OFF_PHNUM:#x} is PN_XNUM and "
                                      "section header 0 (holding the count) is unreadable"):
            phnum = elf.num_segments()
        if phnum == 0:
            raise UserError(f"no program headers (e_phnum at offset {OFF_PHNUM:#x} is PN_XNUM "
                            "and section header 0's sh_info is 0)", where=where)
    if phnum == 0:
        raise UserError(f"no program headers (e_phnum at offset {OFF_PHNUM:#x} is 0)",
                        where=where)
    phdr = elf.structs.Elf_Phdr
    need = phdr.sizeof()
    if phentsize < need:
        raise UserError(f"e_phentsize at offset {OFF_PHENTSIZE:#x} is {phentsize}, "
                        f"less than {need}", where=where)
    segments = []
    for n in range(phnum):
        base = phoff + n * phentsize
        what = f"program header {n}"
        if base + need > size:
            raise UserError(f"{what} at offset {base:#x} (e_phoff {phoff:#x} + {n} * "
                            f"e_phentsize {phentsize}) is beyond the end of the file "
                            f"({size} bytes)", where=where)
        with pyelftools_errors(where, f"{what} at offset {base:#x} unreadable"):
            ph = struct_parse(phdr, elf.stream, stream_pos=base)
        if ph["p_type"] != "PT_LOAD":
            continue
        p_offset, p_paddr = ph["p_offset"], ph["p_paddr"]
        p_filesz, p_memsz = ph["p_filesz"], ph["p_memsz"]
        if p_filesz > p_memsz:
            raise UserError(f"{what} (offset {base:#x}): p_filesz {p_filesz:#x} exceeds "
                            f"p_memsz {p_memsz:#x}", where=where)
        if p_offset + p_filesz > size:
            raise UserError(f"{what} (offset {base:#x}): segment data {p_offset:#x}+"
                            f"{p_filesz:#x} runs past the end of the file ({size:#x} bytes)",
                            where=where)
        if p_paddr + p_memsz > memory_size:
            raise UserError(f"{what} (offset {base:#x}): segment {p_paddr:#x}-"
                            f"{p_paddr + p_memsz:#x} does not fit in {_size_text(memory_size)} "
                            "of guest memory", where=where)
        if not p_memsz:
            continue
        with pyelftools_errors(where, f"{what} (offset {base:#x}): segment data unreadable"):
            data = ElfSegment(ph, elf.stream).data()
        if len(data) != p_filesz:      # cannot happen after the size check; never load less
            raise UserError(f"{what} (offset {base:#x}): read {len(data)} of {p_filesz} "
                            "segment bytes", where=where)
        segments.append(Segment(p_paddr, bytes(data), p_memsz, ph["p_flags"]))
    if not segments:
        raise UserError("no PT_LOAD segment with contents", where=where)
    linux = entry in (KERN_IMAGE_START, 0x800)
    if linux:
        entry = KERN_IMAGE_START
        segments.append(Segment(KERN_PARM_AREA, cmdline.encode()[:KERN_PARM_AREA_SIZE - 1] + b"\0",
                                0))
    if entry >= memory_size or entry & 1:
        raise UserError(f"entry point {entry:#x} (e_entry, offset {OFF_ENTRY:#x}) is not an "
                        "instruction address in guest memory", where=where)
    return Image(entry, tuple(segments), linux)
