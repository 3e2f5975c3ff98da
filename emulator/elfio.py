"""Executable code of an s390x ELF, read with pyelftools.

Every failure a user can cause (not an ELF, a cut or corrupt file, another
architecture, nothing executable) becomes a one-line UserError naming the
file, never a pyelftools traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS, SH_FLAGS
from elftools.elf.elffile import ELFFile

from emulator.errors import UserError

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class CodeRegion:
    """Bytes the guest would execute, at the address they are loaded at."""

    name: str        # section name, or "segment N" for an ELF without sections
    addr: int
    data: bytes


def is_elf(path: str | Path) -> bool:
    """True if the file starts with the ELF magic (the auto-detect rule)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=str(path)) from None


def executable_regions(path: str | Path) -> list[CodeRegion]:
    """The executable sections of an s390/s390x ELF, in file order.

    An ELF stripped of its section headers falls back to the executable
    PT_LOAD segments, so a loader-only image still decodes.
    """
    where = str(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=where) from None
    with f:
        if f.read(4) != ELF_MAGIC:
            raise UserError("not an ELF file (no \\x7fELF magic)", where=where)
        f.seek(0, 2)
        file_size = f.tell()
        f.seek(0)
        try:
            return _regions(ELFFile(f), file_size, where)
        except UserError:
            raise
        except Exception as exc:
            # pyelftools reports cut or corrupt headers with assorted exceptions
            # (its own ELFError, construct's StreamError, ValueError, OSError on a
            # bad seek, ...): any of them means the file is not a sound ELF.
            if not isinstance(exc, _PARSE_ERRORS) and type(exc).__module__.split(".")[0] != "elftools":
                raise
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"corrupt ELF: {detail}", where=where) from None


_PARSE_ERRORS = (ELFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                 OverflowError, OSError, MemoryError, struct_error, UnicodeDecodeError)


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
    machine = elf["e_machine"]
    if machine != "EM_S390":
        raise UserError(f"not an s390 ELF (e_machine {machine})", where=where)
    found = list(_exec_sections(elf))
    if not found and elf.num_sections() == 0:
        found = list(_exec_segments(elf))
    if not found:
        raise UserError("ELF has no executable section", where=where)
    out = []
    for name, addr, offset, size, part in found:
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
