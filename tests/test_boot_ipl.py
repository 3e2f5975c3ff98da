"""-kernel/-initrd/-append as QEMU 7.2's s390x IPL loads them (emulator.cpu.ipl)."""
from __future__ import annotations

import pytest

from emulator import qemu_args
from emulator.cpu import ipl
from emulator.errors import UserError

MIB = 1 << 20


def _linux_image(size: int = 0x20000, cmdline_limit: int = 0) -> bytes:
    img = bytearray(size)
    img[ipl.LINUX_MAGIC_ADDR:ipl.LINUX_MAGIC_ADDR + 6] = b"S390EP"
    img[ipl.KERN_PARM_AREA_SIZE_ADDR:ipl.KERN_PARM_AREA_SIZE_ADDR + 8] = cmdline_limit.to_bytes(8, "big")
    return bytes(img)


def _memory(image, size: int) -> bytearray:
    """Guest memory after loading ``image`` as UcMachine.load does (segments in order)."""
    mem = bytearray(size)
    for seg in image.segments:
        mem[seg.addr:seg.addr + len(seg.data)] = seg.data
    return mem


def test_linux_raw_image_starts_at_0x10000_with_the_command_line(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(_linux_image(cmdline_limit=4096))
    image = ipl.load(k, 64 * MIB, "console=ttysclp0 quiet")
    assert (image.entry, image.linux, image.supervisor) == (0x10000, True, True)
    mem = _memory(image, 64 * MIB)
    assert mem[0x10480:0x10480 + 23] == b"console=ttysclp0 quiet\0"
    assert mem[0x10408:0x10418] == bytes(16)          # no initrd: the words stay as built


def test_raw_image_without_the_magic_starts_at_its_short_ipl_psw(tmp_path):
    k = tmp_path / "raw"
    k.write_bytes(bytes.fromhex("00080000" "80004000") + bytes(0x5000))
    image = ipl.load(k, 16 * MIB, "ignored")
    assert (image.entry, image.linux, image.supervisor) == (0x4000, False, False)
    assert [s.addr for s in image.segments] == [0]     # no parameter area


@pytest.mark.parametrize("limit, length, ok", [
    (0, 895, True), (0, 896, False),               # legacy 896 bytes, the NUL counted
    (4096, 4095, True), (4096, 4096, False),
])
def test_command_line_limit_is_the_kernels_own_or_896(tmp_path, limit, length, ok):
    k = tmp_path / "vmlinuz"
    k.write_bytes(_linux_image(cmdline_limit=limit))
    if ok:
        ipl.load(k, 64 * MIB, "x" * length)
    else:
        with pytest.raises(UserError, match=f"exceeds maximum size: {length + 1} > {limit or 896}"):
            ipl.load(k, 64 * MIB, "x" * length)


@pytest.mark.parametrize("kernel_size, expected", [
    (0x20000, 0x800000),                  # small kernel: 8 MiB
    (0x700000, 0x800000),                 # kernel + 1 MiB == 8 MiB: still 8 MiB
    (0x700001, 0x900000),
    (0x1234567, 0x1400000),
])
def test_initrd_address_rule(kernel_size, expected):
    assert ipl.initrd_address(kernel_size) == expected


def test_initrd_loaded_and_its_address_and_size_stored(tmp_path):
    k, rd = tmp_path / "vmlinuz", tmp_path / "initrd.gz"
    k.write_bytes(_linux_image(size=0x780000))
    rd.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 40)
    image = ipl.load(k, 64 * MIB, "", rd)
    mem = _memory(image, 64 * MIB)
    assert int.from_bytes(mem[0x10408:0x10410], "big") == 0x900000
    assert int.from_bytes(mem[0x10410:0x10418], "big") == rd.stat().st_size
    assert mem[0x900000:0x900000 + rd.stat().st_size] == rd.read_bytes()


def test_initrd_that_does_not_fit_is_one_error(tmp_path):
    k, rd = tmp_path / "vmlinuz", tmp_path / "initrd"
    k.write_bytes(_linux_image())
    rd.write_bytes(bytes(9 * MIB))
    with pytest.raises(UserError, match="could not load the initrd") as e:
        ipl.load(k, 16 * MIB, "", rd)
    assert "-initrd" in str(e.value)


def test_missing_files_and_oversized_images_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="-initrd"):
        k = tmp_path / "vmlinuz"
        k.write_bytes(_linux_image())
        ipl.load(k, 16 * MIB, "", tmp_path / "nope")
    big = tmp_path / "big"
    big.write_bytes(_linux_image(size=2 * MIB))
    with pytest.raises(UserError, match="does not fit"):
        ipl.load(big, 1 * MIB)
    with pytest.raises(UserError, match="IPL PSW"):
        short = tmp_path / "short"
        short.write_bytes(b"\0\0\0")
        ipl.load(short, 1 * MIB)


def test_elf_kernel_takes_an_initrd_after_its_loaded_size(tmp_path):
    from tests.test_boot import _elf64
    k, rd = tmp_path / "k.elf", tmp_path / "rd"
    off = 64 + 56
    k.write_bytes(_elf64(0x10000, [(1, 5, off, 0x10000, 16, 0x900000)], b"\x07\x07" * 8))
    rd.write_bytes(b"RD")
    image = ipl.load(k, 64 * MIB, "root=/dev/ram0", rd)
    mem = _memory(image, 64 * MIB)
    assert image.linux and not image.supervisor
    assert int.from_bytes(mem[0x10408:0x10410], "big") == 0xA00000      # 9 MiB + 1 MiB
    assert mem[0xA00000:0xA00002] == b"RD"
    assert mem[0x10480:0x1048F] == b"root=/dev/ram0\0"


def test_initrd_option_parses():
    a = qemu_args.parse(["-kernel", "k", "-initrd", "rd.gz", "-append", "quiet"])
    assert (a.kernel, a.initrd, a.append) == ("k", "rd.gz", "quiet")
    assert qemu_args.parse(["--initrd", "x", "-kernel", "k"]).initrd == "x"
    with pytest.raises(UserError, match="-initrd needs a value"):
        qemu_args.parse(["-kernel", "k", "-initrd"])
