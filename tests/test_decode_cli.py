"""``zpci-emu decode``: listings, JSON, stats, ELF handling and one-line errors."""
from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from _helpers import run_cli
from conftest import CROSS_GCC
from hypothesis import given, settings, strategies as st

from emulator.cli import main
from emulator.decode import decode_elf
from emulator.elfio import executable_regions
from emulator.errors import UserError
from firmware_model.insns import TABLE, encode

SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
EM_S390, EM_X86_64 = 22, 62

# A blob with one of each format among ordinary code: lgr, pcilg, nopr, clp,
# lg (E3 but not zPCI), pcistb, mpcifc, sic.
BLOB = b"".join([
    bytes.fromhex("b9040012"),
    encode("PCILG", r1=6, r2=8),
    bytes.fromhex("0707"),
    encode("CLP", r1=1, r2=2, m3=3, m4=4),
    bytes.fromhex("e31020000004"),
    encode("PCISTB", r1=2, r3=3, b2=4, d2=-16),
    encode("MPCIFC", r1=5, x2=6, b2=7, d2=0x7FFFF),
    encode("SIC", r1=9, r3=10, b2=11, d2=0),
])
EXPECT = [  # (offset, mnemonic, fields that differ from 0)
    (4, "PCILG", dict(r1=6, r2=8)),
    (10, "CLP", dict(r1=1, r2=2, m3=3, m4=4)),
    (20, "PCISTB", dict(r1=2, r3=3, b2=4, d2=-16)),
    (26, "MPCIFC", dict(r1=5, x2=6, b2=7, d2=0x7FFFF)),
    (32, "SIC", dict(r1=9, r3=10, b2=11)),
]
OPERANDS = ("r1", "r2", "r3", "m3", "m4", "x2", "b2", "d2")


def make_elf(sections=(), segments=(), machine=EM_S390) -> bytes:
    """A minimal big-endian ELF64: sections (name, addr, flags, data, type) and/or
    executable PT_LOAD segments (vaddr, data), laid out after the headers."""
    names = b"\0" + b"".join(s[0].encode() + b"\0" for s in sections) + b".shstrtab\0"
    phoff = 64
    body_off = phoff + 56 * len(segments)
    body, offsets = b"", []
    for item in [s[3] for s in sections] + [seg[1] for seg in segments] + [names]:
        offsets.append(body_off + len(body))
        body += item
    shoff = body_off + len(body)
    shnum = len(sections) + 2 if sections else 0
    hdr = b"\x7fELF" + bytes([2, 2, 1]) + bytes(9)
    hdr += struct.pack(">HHIQQQIHHHHHH", 2, machine, 1, 0, phoff if segments else 0, shoff if shnum else 0,
                       0, 64, 56, len(segments), 64, shnum, shnum - 1 if shnum else 0)
    phdrs = b"".join(struct.pack(">IIQQQQQQ", 1, 0x5, offsets[len(sections) + i], vaddr, vaddr,
                                 len(data), len(data), 8)
                     for i, (vaddr, data) in enumerate(segments))
    shdrs = b""
    if shnum:
        shdrs = bytes(64)
        name_off = 1
        for i, (name, addr, flags, data, *rest) in enumerate(sections):
            kind = rest[0] if rest else 1
            shdrs += struct.pack(">IIQQQQIIQQ", name_off, kind, flags, addr, offsets[i], len(data),
                                 0, 0, 2, 0)
            name_off += len(name) + 1
        shdrs += struct.pack(">IIQQQQIIQQ", name_off, 3, 0, 0, offsets[-1], len(names), 0, 0, 1, 0)
    return hdr + phdrs + body + shdrs


def run(capsys, *argv):
    rc = main(["decode", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, out, err, *needles):
    assert rc != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("zpci-emu: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def blob(tmp_path):
    p = tmp_path / "code.bin"
    p.write_bytes(BLOB)
    return p


def test_json_lists_every_zpci_instruction(capsys, blob):
    rc, out, err = run(capsys, blob, "--base", "0x1000", "--json")
    assert rc == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["addr"], r["mnemonic"]) for r in rows] == [(0x1000 + o, m) for o, m, _ in EXPECT]
    for row, (off, mnemonic, fields) in zip(rows, EXPECT):
        ilen = next(i.ilen for i in TABLE if i.mnemonic == mnemonic)
        assert set(row) == {"addr", "len", "mnemonic", "bytes", *OPERANDS}
        assert row["len"] == ilen
        assert row["bytes"] == BLOB[off:off + ilen].hex()
        assert {k: row[k] for k in OPERANDS} == {k: fields.get(k, 0) for k in OPERANDS}


def test_text_listing_shows_format_fields(capsys, blob):
    rc, out, _ = run(capsys, blob, "--base", "4096")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == len(EXPECT)
    assert lines[0].split() == ["0x0000000000001004", BLOB[4:8].hex(), "PCILG", "r1=6", "r2=8"]
    assert lines[2].split()[2:] == ["PCISTB", "r1=2", "r3=3", "b2=4", "d2=-16"]
    assert lines[3].split()[2:] == ["MPCIFC", "r1=5", "x2=6", "b2=7", "d2=524287"]


def test_stats_text_and_json(capsys, blob):
    rc, out, _ = run(capsys, blob, "--stats", "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["total"] == 8 and stats["zpci"] == 5 and stats["truncated"] == []
    want = {i.mnemonic: 0 for i in TABLE} | {m: 1 for _, m, _ in EXPECT}
    assert stats["counts"] == want
    rc, out, _ = run(capsys, blob, "--stats")
    assert rc == 0 and "instructions 8" in out
    assert any(line.split() == ["SIC", "1"] for line in out.splitlines())


def test_truncated_tail_is_noted_not_listed(capsys, tmp_path):
    p = tmp_path / "cut.bin"
    p.write_bytes(encode("PCILG", r1=1, r2=2) + encode("SIC")[:4])
    rc, out, err = run(capsys, p, "--json", "--stats")
    assert rc == 0 and json.loads(out)["truncated"] == [4]
    assert "0x4" in err and "4 bytes present" in err


def test_elf_sections_at_their_addresses(capsys, tmp_path):
    code = encode("RPCIT", r1=4, r2=6)
    elf = make_elf([(".text", 0x20000, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07" + code),
                    (".rodata", 0x30000, SHF_ALLOC, code),
                    (".init", 0x40000, SHF_ALLOC | SHF_EXECINSTR, code)])
    p = tmp_path / "g.elf"
    p.write_bytes(elf)
    rc, out, _ = run(capsys, p, "--json")
    assert rc == 0
    # .rodata holds the same bytes but is not executable: not listed.
    assert [json.loads(line)["addr"] for line in out.splitlines()] == [0x20002, 0x40000]
    rc2, out2, _ = run(capsys, p, "--json", "--elf")
    assert (rc2, out2) == (rc, out)


def test_decode_elf_wrapper(tmp_path):
    p = tmp_path / "g.elf"
    p.write_bytes(make_elf([(".text", 0x20000, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07" + encode("SIC"))]))
    ((region, res),) = decode_elf(p)
    assert region.name == ".text" and res.total == 2
    assert [(d.addr, d.insn.mnemonic) for d in res.decoded()] == [(0x20002, "SIC")]


def test_elf_without_sections_uses_executable_segments(tmp_path):
    p = tmp_path / "seg.elf"
    p.write_bytes(make_elf(segments=[(0x8000, encode("PCIWB"))]))
    (region,) = executable_regions(p)
    assert (region.addr, region.data) == (0x8000, encode("PCIWB"))


def test_raw_forces_blob_mode_on_an_elf(capsys, tmp_path):
    p = tmp_path / "g.elf"
    p.write_bytes(make_elf([(".text", 0x20000, SHF_ALLOC | SHF_EXECINSTR, encode("CLP"))]))
    rc, out, _ = run(capsys, p, "--raw", "--stats", "--json")
    assert rc == 0 and json.loads(out)["total"] > 0


@pytest.mark.skipif(CROSS_GCC is None, reason="s390x-linux-gnu-gcc not installed")
def test_compiled_elf(capsys, tmp_path):
    out_elf = tmp_path / "sample.elf"
    sample = Path(__file__).parent / "data" / "decode_sample.c"
    subprocess.run([CROSS_GCC, "-O2", "-ffreestanding", "-nostdlib", "-static",
                    "-Wl,-Ttext=0x10000", "-o", str(out_elf), str(sample)], check=True)
    rc, out, _ = run(capsys, out_elf, "--stats", "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["counts"] == {i.mnemonic: 1 for i in TABLE}


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("make, args, needles", [
    (None, [], ["No such file"]),
    ("dir", [], ["is a directory"]),
    (b"plain text", ["--elf"], ["not an ELF"]),
    (make_elf([(".rodata", 0x100, SHF_ALLOC, b"\x07\x07")]), [], ["no executable section"]),
    (make_elf([(".text", 0x100, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07")], machine=EM_X86_64), [],
     ["not an s390 ELF"]),
    (make_elf([(".text", 0x100, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07" * 64)])[:90], [],
     ["corrupt ELF"]),
    (b"\x7fELF" + bytes(10), [], ["corrupt ELF"]),
    (BLOB, ["--base", "zz"], ["--base", "not an address"]),
    (BLOB, ["--base", "-1"], ["--base", "outside"]),
    (BLOB, ["--base", hex(1 << 64)], ["--base", "outside"]),
    (BLOB, ["--base", hex((1 << 64) - 8)], ["--base", "past the 64-bit"]),
    (make_elf([(".text", 0x100, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07")]), ["--base", "0x10"],
     ["--base"]),
], ids=["missing", "directory", "not-elf", "no-exec", "x86", "cut-header", "short-ident",
        "base-junk", "base-negative", "base-too-big", "base-overflow", "base-with-elf"])
def test_bad_input_is_one_line_error(capsys, tmp_path, make, args, needles):
    p = tmp_path / "input"
    if make == "dir":
        p.mkdir()
    elif make is not None:
        p.write_bytes(make)
    rc, out, err = run(capsys, p, *args)
    assert_one_line_error(rc, out, err, *needles)
    if make not in (None, "dir") and "--base" not in needles:
        assert str(p) in err


def test_section_cut_by_file_end(capsys, tmp_path):
    elf = make_elf([(".text", 0x100, SHF_ALLOC | SHF_EXECINSTR, b"\x07\x07" * 64)])
    # Headers intact, but .text claims more bytes than the file holds.
    shoff = struct.unpack_from(">Q", elf, 0x28)[0]
    text_hdr = shoff + 64
    patched = bytearray(elf)
    struct.pack_into(">Q", patched, text_hdr + 32, 1 << 20)   # sh_size
    p = tmp_path / "big.elf"
    p.write_bytes(bytes(patched))
    rc, out, err = run(capsys, p)
    assert_one_line_error(rc, out, err, "cut short")


GOOD_ELF = make_elf([(".text", 0x100, SHF_ALLOC | SHF_EXECINSTR, encode("SIC") * 20),
                     (".data", 0x1000, SHF_ALLOC, b"x" * 40)])


@settings(max_examples=600)
@given(cut=st.integers(0, len(GOOD_ELF)),
       edits=st.lists(st.tuples(st.integers(0, len(GOOD_ELF) - 1), st.integers(0, 255)),
                      max_size=6))
def test_damaged_elf_never_escapes_as_a_traceback(tmp_path_factory, cut, edits):
    """Cut and corrupted ELFs: regions, or a one-line UserError naming the file."""
    data = bytearray(GOOD_ELF)
    for off, value in edits:
        data[off] = value
    p = tmp_path_factory.mktemp("elf") / "damaged.elf"
    p.write_bytes(bytes(data[:cut]))
    try:
        regions = executable_regions(p)
    except UserError as exc:
        assert str(exc).startswith(str(p)) and "\n" not in str(exc)
    else:
        assert all(isinstance(r.data, bytes) and r.data for r in regions)


def test_cli_process_exit_status():
    """End to end through a real process: exit status and no traceback."""
    r = run_cli("decode", "/nonexistent/zpci.bin")
    assert r.returncode == 1
    assert r.stderr.strip() == "zpci-emu: /nonexistent/zpci.bin: No such file or directory"
