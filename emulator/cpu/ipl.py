"""``-kernel``/``-initrd``/``-append`` as QEMU 7.2's s390x IPL device loads them.

The facts (hw/s390x/ipl.c, s390_ipl_realize, read for behaviour only):

* An ELF kernel is loaded by its program headers (emulator.cpu.elf_load).
  Anything else is a raw image copied to absolute 0 (a Linux ``vmlinuz``:
  lowcore, then the decompressor's head at 0x10000).  A raw image with the
  magic "S390EP" at 0x10008 starts at 0x10000; any other raw image starts
  at the address of the short IPL PSW in its bytes 4-7 (bit 0 dropped).
* A kernel that starts at 0x10000 (or the old 0x800) is Linux: the command
  line, NUL-terminated, goes to 0x10480, at most as long as the kernel's
  own limit at 0x10430 (a u64; 0 in kernels before 5.16 means the legacy
  896 bytes); longer is an error, as in QEMU.
* The initrd goes to 8 MiB, moved up in 1 MiB steps until it starts at
  least 1 MiB past the kernel's size; its address and size are stored as
  u64 at 0x10408 and 0x10410.
* Execution starts with PSW EA|BA at the start address (lowcore.IPL_PSW_MASK).
"""
from __future__ import annotations

from pathlib import Path

from emulator.cpu import elf_load
from emulator.cpu.elf_load import Image, Segment
from emulator.errors import UserError
from emulator.io_safe import read_input

KERN_IMAGE_START = 0x10000
LINUX_MAGIC_ADDR = 0x10008
LINUX_MAGIC = b"S390EP"
KERN_PARM_AREA_SIZE_ADDR = 0x10430
KERN_PARM_AREA = 0x10480
LEGACY_KERN_PARM_AREA_SIZE = 0x380
INITRD_START = 0x800000
INITRD_STEP = 0x100000
INITRD_PARM_START = 0x10408
PSW_MASK_SHORT_ADDR = 0x7FFFFFFF
ELF_MAGIC = b"\x7fELF"


def _read(path: str | Path, what: str) -> bytes:
    # regular files only: a FIFO or a device named by -kernel/-initrd must not hang the boot
    return read_input(path, where=f"{what} {path}")


def load(kernel: str | Path, memory_size: int, cmdline: str = "",
         initrd: str | Path | None = None) -> Image:
    """The image QEMU would put in memory for these options, checked against ``memory_size``."""
    raw = _read(kernel, "-kernel")
    if raw[:4] == ELF_MAGIC:
        image = elf_load.parse(raw, memory_size, str(kernel), cmdline)
        kernel_size = sum(s.memsz for s in image.segments if s.addr != KERN_PARM_AREA)
    else:
        image = parse_raw(raw, memory_size, str(kernel), cmdline)
        kernel_size = len(raw)
    if initrd is None:
        return image
    data = _read(initrd, "-initrd")
    extra = initrd_segments(data, kernel_size, memory_size, f"-initrd {initrd}")
    return Image(image.entry, image.segments + extra, image.linux, image.supervisor)


def parse_raw(raw: bytes, memory_size: int, where: str, cmdline: str = "") -> Image:
    """A non-ELF kernel: the bytes at absolute 0 and QEMU's choice of start address."""
    if len(raw) > memory_size:
        raise UserError(f"the image ({len(raw)} bytes) does not fit in {memory_size >> 20} MiB "
                        "of guest memory", where=where)
    # not PF_X: UcMachine.load scans executable segments for a problem-state
    # guest; a kernel image runs in supervisor state and is scanned as it runs
    segments = [Segment(0, raw, len(raw))]
    if raw[LINUX_MAGIC_ADDR:LINUX_MAGIC_ADDR + len(LINUX_MAGIC)] == LINUX_MAGIC:
        entry = KERN_IMAGE_START
    elif len(raw) >= 8:
        entry = int.from_bytes(raw[4:8], "big") & PSW_MASK_SHORT_ADDR
    else:
        raise UserError("could not get the IPL PSW (image shorter than 8 bytes, "
                        "no S390EP magic at 0x10008)", where=where)
    linux = entry in (KERN_IMAGE_START, 0x800)
    if linux:
        entry = KERN_IMAGE_START
        segments.append(_parm_area(raw, cmdline, where))
    if entry >= memory_size or entry & 1:
        raise UserError(f"start address {entry:#x} is not an instruction address in guest "
                        "memory", where=where)
    return Image(entry, tuple(segments), linux, supervisor=linux)


def _parm_area(raw: bytes, cmdline: str, where: str) -> Segment:
    text = cmdline.encode() + b"\0"
    limit_field = raw[KERN_PARM_AREA_SIZE_ADDR:KERN_PARM_AREA_SIZE_ADDR + 8]
    limit = int.from_bytes(limit_field, "big") if len(limit_field) == 8 else 0
    limit = limit or LEGACY_KERN_PARM_AREA_SIZE
    if len(text) > limit:
        raise UserError(f"kernel command line exceeds maximum size: {len(text)} > {limit}",
                        where="-append")
    return Segment(KERN_PARM_AREA, text, 0)


def initrd_address(kernel_size: int) -> int:
    """Where QEMU puts the initrd: 8 MiB, or the first 1 MiB step 1 MiB past the kernel."""
    offset = INITRD_START
    while kernel_size + INITRD_STEP > offset:
        offset += INITRD_STEP
    return offset


def initrd_segments(data: bytes, kernel_size: int, memory_size: int,
                    where: str) -> tuple[Segment, ...]:
    """The initrd and the two words of the parameter area that point at it."""
    offset = initrd_address(kernel_size)
    if offset + len(data) > memory_size:
        raise UserError(f"could not load the initrd: {len(data)} bytes at {offset:#x} do not fit "
                        f"in {memory_size >> 20} MiB of guest memory", where=where)
    parm = offset.to_bytes(8, "big") + len(data).to_bytes(8, "big")
    return (Segment(offset, data, len(data)), Segment(INITRD_PARM_START, parm, 0))
