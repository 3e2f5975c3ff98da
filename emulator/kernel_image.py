"""Compressed Linux kernel images, as ``zpci-emu decode`` meets them.

Debian's ``linux-image-*-s390x`` ships ``/boot/vmlinuz-*``: a small
decompressor (it starts with the IPL PSW ``00080000 80000200`` and channel
programs) followed by an XZ stream holding ``vmlinux.bin``, the kernel's
memory image from ``_text``.  Walked as one raw blob it is mostly compressed
bytes, and every few kilobytes of noise look like a zPCI opcode.  Here the
stream is unpacked (emulator.capture.kernel, shared with ``capture``) and
only the kernel's text (``_stext.._etext``, ``_sinittext.._einittext``, from
the kallsyms table the image carries) is decoded, at the addresses the
kernel runs at: the sites ``capture`` finds.

Other compressed or foreign kernel images are refused with one line rather
than decoded as noise.
"""
from __future__ import annotations

from pathlib import Path

from emulator.elfio import CodeRegion
from emulator.errors import UserError
from emulator.io_safe import read_input

# The s390 image's first doubleword: the IPL PSW (mask 0x00080000, 31-bit address)
S390_IPL_PSW_MASK = bytes.fromhex("00080000")
# Compressed streams by their magic: what a kernel build can choose (CONFIG_KERNEL_*)
COMPRESSORS = {
    "xz": b"\xfd7zXZ\x00",
    "gzip": b"\x1f\x8b\x08",
    "bzip2": b"BZh",
    "zstd": b"\x28\xb5\x2f\xfd",
    "lz4": b"\x02\x21\x4c\x18",
    "lzo": b"\x89LZO",
}
DECODED_COMPRESSOR = "xz"         # what Debian's s390x kernels use
# Kernel images of other architectures, by the marker at a fixed offset
FOREIGN_KERNELS = {"x86 (bzImage)": (0x202, b"HdrS"), "arm64 (Image)": (0x38, b"ARM\x64"),
                   "riscv (Image)": (0x30, b"RISCV\x00\x00\x00")}
_HEADER_BYTES = 0x240
# Text of the s390 decompressor's facility check (arch/s390/boot/als.c), in every
# s390 vmlinuz: with the IPL PSW it tells a kernel image from a raw blob that
# happens to start with an IPL PSW (a bare-metal guest image)
S390_BOOT_MARK = b"The Linux kernel requires more recent processor hardware"


def _compressor_at_start(head: bytes) -> str | None:
    return next((n for n, magic in COMPRESSORS.items() if head.startswith(magic)), None)


def kind_of(head: bytes) -> str | None:
    """What a file's first bytes say it is: "s390", a compressor name, a foreign
    kernel's name, or None for anything else (raw code)."""
    for name, (offset, magic) in FOREIGN_KERNELS.items():
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[:4] == S390_IPL_PSW_MASK and head[4] & 0x80:
        return "s390"
    return _compressor_at_start(head)


def regions(path: Path) -> list[CodeRegion] | None:
    """The code a compressed kernel image holds, or None if ``path`` is no such image.

    Raises UserError (one line) for an image this cannot unpack: another
    architecture's kernel, an s390 image compressed with something else than
    XZ, or a compressed file that is not a kernel image.
    """
    where = str(path)
    data = read_input(path, where)      # regular files only: a FIFO must not hang decode
    kind = kind_of(data[:_HEADER_BYTES])
    if kind is None:
        return None
    if kind in FOREIGN_KERNELS:
        raise UserError(f"a {kind} kernel image: zPCI instructions are s390x code "
                        f"(decode an s390x vmlinuz, vmlinux or ELF)", where=where)
    if kind in COMPRESSORS:
        raise UserError(f"{kind}-compressed data, not a kernel image: decompress it first "
                        f"(or pass --raw to decode the compressed bytes)", where=where)
    if S390_BOOT_MARK not in data:
        return None              # starts like an IPL record but is no kernel image: raw code
    if COMPRESSORS[DECODED_COMPRESSOR] not in data:
        found = [n for n, magic in COMPRESSORS.items() if magic in data]
        raise UserError(f"an s390 kernel image whose payload is not {DECODED_COMPRESSOR} "
                        f"(magic found: {', '.join(found) or 'none'}): only "
                        f"{DECODED_COMPRESSOR}, Debian's choice, is unpacked here", where=where)
    from emulator.capture import kernel as K
    image = K.extract_image(data, where=where)
    ranges = K.text_ranges(K.kallsyms(image))
    names = (".text", ".init.text")
    return [CodeRegion(f"vmlinux {names[i] if i < len(names) else 'text'}", a,
                       image[a - K.IMAGE_BASE:b - K.IMAGE_BASE])
            for i, (a, b) in enumerate(ranges)]
