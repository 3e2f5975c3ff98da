"""Opening and checking an s390x ELF with pyelftools, shared by the decoder and the loader.

``open_elf`` checks the magic and parses the ELF header with pyelftools;
``pyelftools_errors`` turns whatever pyelftools raises on a cut or corrupt
file into a one-line UserError naming the file.  On top of them:
``executable_regions`` (the decoder's executable sections) here, and the
``-kernel`` loader in emulator/cpu/elf_load.py.  Every failure a user can cause
(not an ELF, a cut or corrupt file, another architecture, nothing
executable) becomes a one-line UserError naming the file, never a
pyelftools traceback.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS, SH_FLAGS
from elftools.elf.elffile import ELFFile

from emulator.errors import UserError
from emulator.io_safe import open_input, read_input

ELF_MAGIC = b"\x7fELF"
EI_NIDENT = 16
# offsets of the e_ident bytes and ELF64 header fields named in messages
OFF_EI_CLASS, OFF_EI_DATA = 0x4, 0x5
ELF_HEADER_SIZE = {1: 52, 2: 64}      # by EI_CLASS

# pyelftools reports cut or corrupt headers with assorted exceptions (its own
# ELFError, construct's StreamError, ValueError, OSError on a bad seek, ...):
# any of them means the file is not a sound ELF.
PARSE_ERRORS = (ELFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                OverflowError, OSError, MemoryError, struct_error, UnicodeDecodeError)


def _is_parse_error(exc: BaseException) -> bool:
    return isinstance(exc, PARSE_ERRORS) or type(exc).__module__.split(".")[0] == "elftools"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def pyelftools_errors(where: str, what: str = "corrupt ELF"):
    """Within the block, a pyelftools failure becomes ``UserError("<what>: <detail>")``."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        if not _is_parse_error(exc):
            raise
        raise UserError(f"{what}: {first_line(exc)}", where=where) from None


def open_elf(stream: BinaryIO, where: str, file_size: int) -> ELFFile:
    """pyelftools' ELFFile over ``stream`` (``file_size`` bytes), header parsed and checked.

    Only what pyelftools itself needs is checked here (magic, EI_CLASS,
    EI_DATA, a header that fits the file); callers check the machine, class
    and whatever parts they read.
    """
    stream.seek(0)
    ident = stream.read(EI_NIDENT)
    if ident[:4] != ELF_MAGIC:
        raise UserError("not an ELF file (no \\x7fELF magic at offset 0)", where=where)
    # pyelftools' own messages for these say neither the field's offset nor
    # what was expected, so the two bytes it identifies the file by come first
    if len(ident) > OFF_EI_CLASS and ident[OFF_EI_CLASS] not in ELF_HEADER_SIZE:
        raise UserError(f"corrupt ELF: EI_CLASS at offset {OFF_EI_CLASS:#x} is "
                        f"{ident[OFF_EI_CLASS]}, neither 1 (ELF32) nor 2 (ELF64)", where=where)
    if len(ident) > OFF_EI_DATA and ident[OFF_EI_DATA] not in (1, 2):
        raise UserError(f"corrupt ELF: EI_DATA at offset {OFF_EI_DATA:#x} is "
                        f"{ident[OFF_EI_DATA]}, neither 1 (little-endian) nor 2 (big-endian)",
                        where=where)
    need = ELF_HEADER_SIZE[ident[OFF_EI_CLASS]] if len(ident) > OFF_EI_CLASS else EI_NIDENT
    if file_size < need:
        raise UserError(f"corrupt ELF: header cut short: file has {file_size} bytes, "
                        f"the ELF header needs {need}", where=where)
    stream.seek(0)
    with pyelftools_errors(where):
        return ELFFile(stream)


def check_machine(elf: ELFFile, where: str) -> None:
    """The file must be for s390 (EM_S390 covers both s390 and s390x)."""
    machine = elf["e_machine"]
    if machine != "EM_S390":
        raise UserError(f"not an s390 ELF (e_machine at offset 0x12 is {machine}, "
                        "not EM_S390)", where=where)


@dataclass(frozen=True)
class CodeRegion:
    """Bytes the guest would execute, at the address they are loaded at."""

    name: str        # section name, or "segment N" for an ELF without sections
    addr: int
    data: bytes


def is_elf(path: str | Path) -> bool:
    """True if the file starts with the ELF magic (the auto-detect rule)."""
    with open_input(path, buffer_size=EI_NIDENT) as f:
        return f.read(4) == ELF_MAGIC


def executable_regions(path: str | Path) -> list[CodeRegion]:
    """The executable sections of an s390/s390x ELF, in file order.

    An ELF stripped of its section headers falls back to the executable
    PT_LOAD segments, so a loader-only image still decodes.
    """
    where = str(path)
    raw = read_input(path, where)
    elf = open_elf(io.BytesIO(raw), where, len(raw))
    with pyelftools_errors(where):
        return _regions(elf, len(raw), where)


def _exec_sections(elf: ELFFile):
    for i, s in enumerate(elf.iter_sections()):
        if (s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s["sh_type"] != "SHT_NOBITS"
                and s["sh_size"] > 0):
            yield s.name or f"section {i}", s["sh_addr"], s["sh_offset"], s["sh_size"], s


def _exec_segments(elf: ELFFile):
    for i, p in enumerate(elf.iter_segments()):
        if p["p_type"] == "PT_LOAD" and p["p_flags"] & P_FLAGS.PF_X and p["p_filesz"] > 0:
            yield f"segment {i}", p["p_vaddr"], p["p_offset"], p["p_filesz"], p


def _regions(elf: ELFFile, file_size: int, where: str) -> list[CodeRegion]:
    check_machine(elf, where)
    found = list(_exec_sections(elf))
    if not found and elf.num_sections() == 0:
        found = list(_exec_segments(elf))
    if not found:
        raise UserError("ELF has no executable section", where=where)
    out = []
    for name, addr, offset, size, part in found:
        # pyelftools would inflate a compressed section (SHF_COMPRESSED)
        # whatever size its header claims; code is never stored compressed.
        if part.header.get("sh_flags", 0) & SH_FLAGS.SHF_COMPRESSED:
            raise UserError(f"{name} is compressed (SHF_COMPRESSED); executable code must be "
                            "stored as it is", where=where)
        # Checked before reading: pyelftools would try to allocate a bogus size,
        # or silently return fewer bytes for a part cut by the end of the file.
        if offset + size > file_size:
            raise UserError(f"{name} is cut short: {size} bytes at offset {offset:#x}, "
                            f"file has {file_size}", where=where)
        if addr + size > 1 << 64:
            raise UserError(f"{name} at {addr:#x} runs past the 64-bit address space", where=where)
        data = part.data()
        if len(data) != size:
            raise UserError(f"{name} is cut short: {len(data)} of {size} bytes read", where=where)
        out.append(CodeRegion(name, addr, data))
    return out
