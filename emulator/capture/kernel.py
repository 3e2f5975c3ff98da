"""The Debian s390x kernel as capture needs it, without the -dbg package.

* ``extract_image``: the s390 ``vmlinuz`` is a small decompressor followed by
  an XZ stream holding ``vmlinux.bin`` (the kernel's memory image from
  ``_text``, objcopy -O binary).  We find the stream that decompresses, so
  the 433 MB debug package is not needed.
* ``kallsyms``: the symbol table the kernel carries for itself
  (``CONFIG_KALLSYMS_BASE_RELATIVE`` layout of 6.1's scripts/kallsyms.c:
  offsets, relative_base, num_syms, names, markers, token_table,
  token_index, each 8-byte aligned, big-endian), decoded from the image.
  Symbol starts let the site sweep restart at every function, as with a
  System.map.
"""
from __future__ import annotations

import lzma
import re
import struct
from dataclasses import dataclass

from emulator.errors import UserError

XZ_MAGIC = b"\xfd7zXZ\x00"
# With nokaslr the decompressor puts vmlinux.bin at its link address.
IMAGE_BASE = 0x100000


def extract_image(vmlinuz: bytes, where: str = "vmlinuz") -> bytes:
    """The decompressed kernel image (first byte = _text at IMAGE_BASE)."""
    errors = []
    for m in re.finditer(re.escape(XZ_MAGIC), vmlinuz):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = dec.decompress(vmlinuz[m.start():])
        except lzma.LZMAError as exc:
            errors.append(f"{m.start():#x}: {exc}")
            continue
        if dec.eof and len(out) > 1 << 20:
            return out
    raise UserError("no XZ-compressed kernel payload found (not a Debian s390x vmlinuz?"
                    + (f" tried {', '.join(errors)})" if errors else ")"), where=where)


@dataclass(frozen=True)
class Symbol:
    addr: int
    type: str
    name: str


def _align8(x: int) -> int:
    return (x + 7) & ~7


def _u16(d, o):
    return struct.unpack_from(">H", d, o)[0]


def _u32(d, o):
    return struct.unpack_from(">I", d, o)[0]


def _find_token_table(img: bytes) -> tuple[int, list[bytes], int]:
    """(start of kallsyms_token_table, the 256 tokens, start of token_index)."""
    digits = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"
    for m in re.finditer(re.escape(digits), img):
        p = m.start()
        # token_index follows the table 8-aligned: 256 BE u16, [0] == 0, rising.
        for q in range(_align8(p), min(len(img) - 512, p + 16384), 8):
            if _u16(img, q) != 0:
                continue
            idx = struct.unpack_from(">256H", img, q)
            if any(idx[i] >= idx[i + 1] for i in range(255)):
                continue
            # table start T such that string k starts at T + idx[k]; find k for p
            for k in range(256):
                t = p - idx[k]
                if t < 0 or _align8(t + idx[255] + img.index(b"\0", t + idx[255]) - (t + idx[255]) + 1) != q:
                    continue
                toks = []
                ok = True
                for i in range(256):
                    s = t + idx[i]
                    e = img.index(b"\0", s)
                    if i < 255 and e + 1 != t + idx[i + 1]:
                        ok = False
                        break
                    toks.append(img[s:e])
                if ok:
                    return t, toks, q
    raise UserError("kallsyms token table not found in the kernel image")


def kallsyms(img: bytes, base: int = IMAGE_BASE) -> list[Symbol]:
    """All symbols of the kernel image, in kallsyms order (address order).

    Layout measured on Debian's 6.1.176 image: offsets (u32 each), relative
    base (u64), num_syms (8 bytes), names, then markers, the 3-byte
    seqs_of_names and the token table.  We find the token table, then walk
    back to the nearest 8-aligned ``s`` whose preceding 8 bytes hold a count
    ``n`` such that ``n`` names decode from ``s`` before the token table.
    """
    t, toks, _ = _find_token_table(img)
    for s in range(t & ~7, max(16, t - 64 * 1024 * 1024), -8):
        n = _u32(img, s - 8)
        if not 1000 <= n <= 2_000_000 or not _plausible_names(img, s, toks):
            continue
        names = _decode_names(img, s, n, toks, t)
        if names is None:
            continue
        # A relocatable kernel leaves relative_base for the relocation pass
        # (0 in the image); the offsets are then from _text = base.
        rel_base = struct.unpack_from(">Q", img, s - 16)[0] or base
        for start in (s - 16 - _align8(4 * n), s - 16 - 4 * n):
            offs = struct.unpack_from(f">{n}I", img, start)
            syms = [Symbol(rel_base + o, nm[0], nm[1:]) for o, nm in zip(offs, names)]
            if any(sy.name == "_stext" and sy.addr == base for sy in syms):
                return syms
    raise UserError("kallsyms tables not recognised in the kernel image")


_TYPES = set(b"TtDdBbRrVvWwAaUuNn?")


def _name_at(img, o, toks):
    """The kallsyms name at ``o`` (1- or 2-byte length, then token indices):
    (its expanded bytes, the offset after it), or None for a zero length."""
    ln = img[o]
    o += 1
    if ln & 0x80:
        ln = (ln & 0x7F) | (img[o] << 7)
        o += 1
    if ln == 0:
        return None
    return b"".join(toks[b] for b in img[o:o + ln]), o + ln


def _plausible_names(img, s, toks, count=32) -> bool:
    o = s
    for _ in range(count):
        got = _name_at(img, o, toks)
        if got is None:
            return False
        nm, o = got
        if len(nm) < 2 or nm[0] not in _TYPES or not all(
                c == 0x5F or c == 0x2E or c == 0x24 or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A
                or 0x61 <= c <= 0x7A for c in nm[1:]):
            return False
    return True


def _decode_names(img, s, n, toks, end):
    names = []
    o = s
    for _ in range(n):
        if o >= end:
            return None
        got = _name_at(img, o, toks)
        if got is None:
            return None
        nm, o = got
        names.append(nm.decode("latin-1"))
    return names


def text_ranges(syms: list[Symbol]) -> list[tuple[int, int]]:
    by = {s.name: s.addr for s in syms}
    out = []
    for a, b in (("_stext", "_etext"), ("_sinittext", "_einittext")):
        if a in by and b in by and by[a] < by[b]:
            out.append((by[a], by[b]))
    if not out:
        raise UserError("kernel image has no _stext/_etext symbols")
    return out


def read_modules_deps(ko: bytes) -> list[str]:
    """``depends=`` of a kernel module's .modinfo (comma separated names)."""
    m = re.search(rb"\0depends=([^\0]*)\0", ko)
    return [x for x in m.group(1).decode().split(",") if x] if m else []
