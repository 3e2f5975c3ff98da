"""Instruction boundaries of the native decoder against two outside decoders:
capstone (SystemZ) and binutils' s390x objdump, on compiled s390x code."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import CROSS_GCC, OBJDUMP, needs_cross, needs_objdump
from elftools.elf.elffile import ELFFile

from emulator.decode import count_insns, decode_buffer, decode_one
from emulator.elfio import executable_regions

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SRC = ROOT / "tests" / "data" / "decode_sample.c"
GUEST_ELFS = sorted((ROOT / "traces" / "guests" / "build").glob("*.elf"))
LIBC = Path("/usr/s390x-linux-gnu/lib/libc.so.6")


@pytest.fixture(scope="module")
def sample_elf(tmp_path_factory) -> Path:
    if CROSS_GCC is None:
        pytest.skip("s390x-linux-gnu-gcc not installed (apt-get install gcc-s390x-linux-gnu)")
    out = tmp_path_factory.mktemp("decode") / "sample.elf"
    subprocess.run([CROSS_GCC, "-O2", "-ffreestanding", "-nostdlib", "-static",
                    "-Wl,-Ttext=0x10000", "-o", str(out), str(SAMPLE_SRC)],
                   check=True, capture_output=True)
    return out


def our_walk(data: bytes, base: int) -> list[int]:
    """Boundaries from the native decode_one lengths (any instruction)."""
    addrs, off = [], 0
    while off < len(data):
        d = decode_one(data[off:off + 6], base + off, zpci_only=False)
        if d.flags:
            break
        addrs.append(base + off)
        off += d.ilen
    return addrs


# ---------------------------------------------------------------- capstone

def capstone_walk(data: bytes, base: int) -> tuple[list[int], int]:
    """Addresses capstone decodes, and how many it decoded itself (not skipped).

    capstone knows no zPCI instruction (docs: unicorn-notes.md Q5), so a
    skipdata callback steps over what it cannot decode by the ILC rule; that
    keeps it in sync without teaching it anything else.
    """
    import capstone            # a test dependency (pyproject.toml [test])
    md = capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)
    md.skipdata = True

    def skip(buffer, size, offset, _ud):
        first = buffer[offset]
        first = first[0] if isinstance(first, bytes) else first
        return (2, 4, 4, 6)[first >> 6]

    md.skipdata_setup = (".skip", skip, None)
    addrs, own = [], 0
    for addr, size, mnemonic, _ in md.disasm_lite(data, base):
        addrs.append(addr)
        own += mnemonic != ".skip"
    return addrs, own


def capstone_samples(sample_elf_path):
    samples = [(f"{p.name}:{r.name}", r.data, r.addr)
               for p in [sample_elf_path, *GUEST_ELFS] if p is not None
               for r in executable_regions(p)]
    if LIBC.exists():
        text = ELFFile(open(LIBC, "rb")).get_section_by_name(".text")
        samples.append(("libc.so.6:.text[:256K]", text.data()[:256 * 1024], text["sh_addr"]))
    return samples


def test_lengths_agree_with_capstone(request):
    elf = request.getfixturevalue("sample_elf") if CROSS_GCC else None
    samples = capstone_samples(elf)
    if not samples:
        pytest.skip("no s390x code: needs s390x-linux-gnu-gcc or libc6-s390x-cross")
    for name, data, base in samples:
        cs_addrs, own = capstone_walk(data, base)
        # The oracle must really be decoding, not just skipping by our own rule.
        assert own > 0.9 * len(cs_addrs), f"{name}: capstone decoded only {own}/{len(cs_addrs)}"
        ours = our_walk(data, base)
        assert ours == cs_addrs[:len(ours)], name
        res = decode_buffer(data, base)
        assert res.total == len(ours), name
        # A cut last instruction is where capstone's skip ran out of bytes.
        assert len(cs_addrs) in (len(ours), len(ours) + 1), name
        for k in range(0, len(ours), max(1, len(ours) // 50)):
            c = count_insns(data, base, start=base, end=ours[k], per_index=False)
            assert (c.total, c.stop) == (k, ours[k]), f"{name}: boundary {k}"


# ----------------------------------------------------------------- objdump

SYM = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s+([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t?(\S*)")


def objdump_blocks(path: Path) -> dict[int, tuple[str, list[tuple[int, int, str]]]]:
    """Per symbol (objdump restarts its sweep at each): start -> (name, [(addr, len, mnemonic)])."""
    text = subprocess.run([OBJDUMP, "-d", "-w", str(path)], check=True, capture_output=True,
                          text=True).stdout
    blocks, cur = {}, None
    for line in text.splitlines():
        if m := SYM.match(line):
            cur = blocks.setdefault(int(m.group(1), 16), (m.group(2), []))[1]
        elif (m := INSN.match(line)) and cur is not None:
            cur.append((int(m.group(1), 16), len(m.group(2).split()), m.group(3)))
    return blocks


def compare_with_objdump(path: Path) -> tuple[int, list[int]]:
    """Compare boundaries block by block where objdump is in sync; returns
    (instructions compared, addresses where objdump lost sync)."""
    compared, lost = 0, []
    regions = executable_regions(path)
    blocks = objdump_blocks(path)
    starts = sorted(blocks)
    for region in regions:
        end = region.addr + len(region.data)
        inside = [s for s in starts if region.addr <= s < end]
        for k, start in enumerate(inside):
            stop = inside[k + 1] if k + 1 < len(inside) else end
            name, lines = blocks[start]
            chunk = region.data[start - region.addr:stop - region.addr]
            limit = sync_limit(lines, chunk, start, stop)
            if limit < stop:
                lost.append(limit - 1)
            want = [a for a, _, _ in lines if a < limit]
            got = [a for a in our_walk(chunk, start) if a < limit]
            assert got == want, f"{path.name}:{name}"
            compared += len(got)
    return compared, lost


def sync_limit(lines, chunk: bytes, start: int, stop: int) -> int:
    """Address where objdump stops being a valid oracle in a block.

    Bytes it does not know as an instruction (zPCI, zero padding) it prints
    as a .long/.short directive; when that directive covers another length
    than the ILC of its first byte gives (a 6-byte zPCI instruction as a
    4-byte .long, a 2-byte 0000 as a .long), every later line of the block
    is off.  That line's own address is still right, hence the + 1.
    """
    for addr, size, mnemonic in lines:
        if mnemonic.startswith(".") and size != (2, 4, 4, 6)[chunk[addr - start] >> 6]:
            return addr + 1
    return stop


@needs_objdump
@needs_cross
def test_boundaries_agree_with_objdump_on_sample(sample_elf):
    compared, lost = compare_with_objdump(sample_elf)
    assert compared > 100
    # objdump loses sync exactly once, at the first 6-byte zPCI instruction.
    six = [d.addr for r in executable_regions(sample_elf)
           for d in decode_buffer(r.data, r.addr).decoded() if d.ilen == 6]
    assert lost == six[:1]
    counts = decode_buffer(b"".join(r.data for r in executable_regions(sample_elf))).by_mnemonic()
    # The sample holds one wrapper per table entry, each emitted once.
    assert set(counts.values()) == {1}


@needs_objdump
@pytest.mark.skipif(not GUEST_ELFS, reason="traces/guests/build/*.elf not built yet (make guests)")
@pytest.mark.parametrize("elf", GUEST_ELFS, ids=lambda p: p.name)
def test_boundaries_agree_with_objdump_on_guests(elf):
    compared, _lost = compare_with_objdump(elf)
    assert compared > 0
