"""The native decoder against instruction streams with known contents and
against a pure-Python reference decoder written here from the field layouts
of docs/design.md and the PoP formats (independent of cbits/decode.c)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from emulator._native import ffi, lib
from emulator.decode import (INDEX_NONE, TRUNCATED, count_insns, decode_buffer, decode_one,
                             insn_length, iter_zpci, record_dtype)
from firmware_model.insns import BY_OPCODE, TABLE, Decoded, Format, encode

FIELDS = ("addr", "index", "opcode", "ilen", "r1", "r2", "r3", "m3", "m4", "x2", "b2", "d2",
          "ipa", "ipb", "flags")
FIRST_BYTES = sorted({i.opcode >> 8 for i in TABLE})
SELECTORS = sorted({i.opcode & 0xFF for i in TABLE})


# ---------------------------------------------------------------- reference

def ref_ilen(first: int) -> int:
    return (2, 4, 4, 6)[first >> 6]


def ref_bits(q: bytes, start: int, width: int) -> int:
    """PoP bit numbering: bit 0 is the most significant bit of the instruction."""
    v = int.from_bytes(q, "big")
    return (v >> (len(q) * 8 - start - width)) & ((1 << width) - 1)


def ref_key(q: bytes) -> int | None:
    if len(q) == 4:
        return q[0] << 8 | q[1]
    if len(q) == 6:
        return q[0] << 8 | q[5]
    return None


def ref_decode_one(buf: bytes, addr: int) -> dict | None:
    if not buf:
        return None
    n = ref_ilen(buf[0])
    rec = dict.fromkeys(FIELDS, 0)
    rec.update(addr=addr, ilen=n, index=0xFF)
    if len(buf) < n:
        rec["flags"] = 1
        return rec
    q = bytes(buf[:n])
    rec["ipa"] = ref_bits(q, 0, 16)
    rec["ipb"] = ref_bits(q, 16, 32) if n == 6 else (ref_bits(q, 16, 16) << 16 if n == 4 else 0)
    ins = BY_OPCODE.get(ref_key(q))
    if ins is None or ins.ilen != n:
        return rec
    rec.update(index=ins.index, opcode=ins.opcode)
    if ins.format in (Format.RRE, Format.RRF_C):
        rec.update(r1=ref_bits(q, 24, 4), r2=ref_bits(q, 28, 4))
        if ins.format is Format.RRF_C:
            rec.update(m3=ref_bits(q, 16, 4), m4=ref_bits(q, 20, 4))
    else:
        disp = ref_bits(q, 32, 8) << 12 | ref_bits(q, 20, 12)
        if disp & 0x80000:
            disp -= 1 << 20
        rec.update(r1=ref_bits(q, 8, 4), b2=ref_bits(q, 16, 4), d2=disp)
        rec["r3" if ins.format is Format.RSY_A else "x2"] = ref_bits(q, 12, 4)
    return rec


def ref_walk(buf: bytes, base: int = 0):
    """(total, zPCI records, counts per index, (trunc offset, bytes) or None)."""
    pc, total, recs, counts = 0, 0, [], [0] * len(TABLE)
    while pc < len(buf):
        n = ref_ilen(buf[pc])
        if len(buf) - pc < n:
            return total, recs, counts, (pc, len(buf) - pc)
        rec = ref_decode_one(buf[pc:pc + n], base + pc)
        if rec["index"] != 0xFF:
            recs.append(rec)
            counts[rec["index"]] += 1
        total += 1
        pc += n
    return total, recs, counts, None


def ref_count(buf: bytes, start: int, end: int):
    pc, n, end = start, 0, min(end, len(buf))
    while pc < end:
        ilen = ref_ilen(buf[pc])
        if len(buf) - pc < ilen:
            break
        pc, n = pc + ilen, n + 1
    return n, pc


def as_dict(d) -> dict:
    return {k: getattr(d, k) for k in FIELDS}


# --------------------------------------------------------------- strategies

@st.composite
def zpci_insn(draw):
    """(bytes, expected field dict without addr) for one table entry."""
    ins = draw(st.sampled_from(TABLE))
    reg = st.integers(0, 15)
    f = dict(r1=draw(reg), r2=0, r3=0, m3=0, m4=0, x2=0, b2=0, d2=0)
    junk = (0, 0)
    if ins.format in (Format.RRE, Format.RRF_C):
        f["r2"] = draw(reg)
        # RRE leaves bits 16-23 unused: junk there must not leak into m3/m4.
        m = (draw(reg), draw(reg))
        if ins.format is Format.RRF_C:
            f["m3"], f["m4"] = m
        else:
            junk = m
    else:
        f["b2"] = draw(reg)
        f["d2"] = draw(st.integers(-(1 << 19), (1 << 19) - 1))
        f["r3" if ins.format is Format.RSY_A else "x2"] = draw(reg)
    raw = encode(ins.mnemonic, **{**f, "m3": f["m3"] or junk[0], "m4": f["m4"] or junk[1]})
    ipb = int.from_bytes(raw[2:6], "big") if ins.ilen == 6 else int.from_bytes(raw[2:4], "big") << 16
    f.update(index=ins.index, opcode=ins.opcode, ilen=ins.ilen, flags=0,
             ipa=int.from_bytes(raw[:2], "big"), ipb=ipb)
    return raw, f


def _is_table_hit(raw: bytes) -> bool:
    ins = BY_OPCODE.get(ref_key(raw))
    return ins is not None and ins.ilen == len(raw)


@st.composite
def ordinary_insn(draw):
    """Bytes of a non-zPCI instruction of any length (first byte sets the length)."""
    ilc = draw(st.integers(0, 3))
    first = draw(st.integers(ilc << 6, (ilc << 6) | 0x3F))
    n = (2, 4, 4, 6)[ilc]
    rest = draw(st.binary(min_size=n - 1, max_size=n - 1))
    raw = bytes([first]) + rest
    if _is_table_hit(raw):  # rare; a fixed second/sixth byte keeps the draw cheap
        raw = raw[:1] + b"\x00" + raw[2:] if n == 4 else raw[:5] + b"\x00"
    return raw


stream_item = st.one_of(zpci_insn(), ordinary_insn().map(lambda b: (b, None)))

# Arbitrary bytes, but rich in the table's opcode bytes so hits and near-hits
# (E3 xx xx xx xx 04, B9 D1 ...) happen often enough to matter.
hot_byte = st.one_of(st.integers(0, 255), st.sampled_from(FIRST_BYTES + SELECTORS))
arbitrary = st.one_of(st.binary(max_size=300), st.lists(hot_byte, max_size=300).map(bytes))


# ----------------------------------------------------------------- streams

@given(items=st.lists(stream_item, max_size=60), base=st.integers(0, (1 << 64) - 4096),
       tail=st.integers(0, 5))
def test_stream_boundaries_and_fields(items, base, tail):
    buf = b"".join(raw for raw, _ in items)
    # Optionally cut a last 6-byte instruction short: it must be reported, not decoded.
    cut = bytes([0xE3, 0x12, 0x34, 0x56, 0x78][:tail])
    result = decode_buffer(buf + cut, base)

    assert result.total == len(items)
    if tail:
        assert result.truncated and result.trunc_addr == base + len(buf)
        assert result.trunc_bytes == tail
    else:
        assert not result.truncated and result.trunc_addr is None

    expected, addr = [], base
    for raw, fields in items:
        if fields is not None:
            expected.append({**fields, "addr": addr})
        addr += len(raw)
    assert [as_dict(d) for d in result.decoded()] == expected
    assert sum(result.counts) == len(expected)

    # Every boundary comes back from the count-only walk, with the right ordinal.
    off = 0
    for k, (raw, _) in enumerate(items):
        c = count_insns(buf, base, start=base, end=base + off, per_index=False)
        assert (c.total, c.stop) == (k, base + off)
        off += len(raw)


@given(items=st.lists(stream_item, min_size=1, max_size=40))
def test_decode_one_at_each_boundary(items):
    buf = b"".join(raw for raw, _ in items)
    off = 0
    for raw, fields in items:
        d = decode_one(buf[off:], addr=0x1000 + off, zpci_only=False)
        assert d.ilen == len(raw) == insn_length(raw[0])
        z = decode_one(buf[off:], addr=0x1000 + off)
        if fields is None:
            assert z is None and d.index == INDEX_NONE
        else:
            assert as_dict(z) == {**fields, "addr": 0x1000 + off}
        off += len(raw)


def test_records_array_grows_past_initial_capacity():
    """More zPCI instructions than the first output array holds: none lost."""
    parts, want = [], []
    for k in range(3000):
        ins = TABLE[k % len(TABLE)]
        parts.append(b"\x07\x07" * (k % 3))           # nopr padding shifts alignment
        want.append((sum(map(len, parts)), ins.index, k % 16))
        parts.append(encode(ins.mnemonic, r1=k % 16))
    buf = b"".join(parts)
    res = decode_buffer(buf, 0x4000)
    assert res.nzpci == len(want)
    assert [(d.addr - 0x4000, d.index, d.r1) for d in res.decoded()] == want
    per = [0] * len(TABLE)
    for _, idx, _ in want:
        per[idx] += 1
    assert list(res.counts) == per
    assert res.by_mnemonic() == {i.mnemonic: per[i.index] for i in TABLE}


@pytest.mark.parametrize("ins", TABLE, ids=lambda i: i.mnemonic)
def test_every_entry_found_in_hot_loop_and_tail(ins):
    """Each entry at the very end of buffers of growing size: found by the
    bounded tail walk (last < 6 bytes) and by the 6-bytes-ahead hot loop."""
    raw = encode(ins.mnemonic, r1=7)
    for pad in range(8):
        for lead in (b"", b"\xe3\x00\x00\x00\x00\x04"):   # lg first: hot loop, then tail
            buf = lead + b"\x07\x07" * pad + raw
            res = decode_buffer(buf, 0x2000)
            want = [0] * len(TABLE)
            want[ins.index] = 1
            assert list(res.counts) == want and res.nzpci == 1
            d = res[0]
            assert (d.addr, d.index, d.r1, d.ilen) == (0x2000 + len(buf) - len(raw), ins.index, 7,
                                                       ins.ilen)
            c = count_insns(buf, 0x2000)
            assert list(c.counts) == want and c.total == pad + 1 + bool(lead)
            assert c.stop == 0x2000 + len(buf)


ORDINARY = {2: bytes.fromhex("1812"), 4: bytes.fromhex("b9040012"), 6: bytes.fromhex("e31020000004")}


@pytest.mark.parametrize("pattern", [(a, b, c) for a in (2, 4, 6) for b in (2, 4, 6) for c in (2, 4, 6)])
def test_count_stops_at_every_boundary_of_periodic_streams(pattern):
    """Every boundary as `end`, for each period of three lengths: the walks that
    take several instructions per step must stop exactly there too."""
    lengths = list(pattern) * 12
    buf = b"".join(ORDINARY[n] for n in lengths)
    bounds = [sum(lengths[:k]) for k in range(len(lengths) + 1)]
    for k, b in enumerate(bounds):
        for per_index in (False, True):
            c = count_insns(buf, 0, start=0, end=b, per_index=per_index)
            assert (c.total, c.stop) == (k, b)
        # an end inside an instruction stops after it
        if 0 < k < len(lengths):
            c = count_insns(buf, 0, start=0, end=b + 1, per_index=False)
            assert (c.total, c.stop) == (k + 1, bounds[k + 1])
    assert decode_buffer(buf).total == len(lengths)


def test_numpy_view_matches_records():
    buf = b"".join(encode(i.mnemonic, r1=i.index % 16, d2=-i.index) for i in TABLE)
    res = decode_buffer(buf, 0x10)
    arr = res.array()
    assert arr.dtype.itemsize == ffi.sizeof("zpci_decoded") == 32
    assert len(arr) == len(TABLE)
    for row, d in zip(arr, res.decoded()):
        assert {k: int(row[k]) for k in FIELDS} == as_dict(d)
    assert record_dtype().names == tuple(n for n, _ in ffi.typeof("zpci_decoded").fields)


def test_iter_zpci_yields_decoded_objects():
    buf = b"\x07\x07" + encode("PCISTB", r1=2, r3=3, b2=4, d2=-1)
    (d,) = list(iter_zpci(buf, base=0x100))
    assert isinstance(d, Decoded)
    assert (d.addr, d.insn.mnemonic, d.r1, d.r3, d.b2, d.d2) == (0x102, "PCISTB", 2, 3, 4, -1)


# ---------------------------------------------------- reference, any bytes

@settings(max_examples=5000)
@given(buf=arbitrary, base=st.integers(0, (1 << 63)))
def test_matches_reference_on_arbitrary_bytes(buf, base):
    total, recs, counts, trunc = ref_walk(buf, base)
    res = decode_buffer(buf, base)
    assert res.total == total
    assert [as_dict(d) for d in res.decoded()] == recs
    assert list(res.counts) == counts
    if trunc is None:
        assert not res.truncated
    else:
        assert (res.trunc_addr, res.trunc_bytes) == (base + trunc[0], trunc[1])
    c = count_insns(buf, base)
    assert (c.total, list(c.counts)) == (total, counts)


@settings(max_examples=1000)
@given(buf=arbitrary, data=st.data())
def test_decode_one_and_count_match_reference(buf, data):
    for off in range(0, len(buf), 7):
        got = decode_one(buf[off:], addr=off, zpci_only=False)
        assert as_dict(got) == ref_decode_one(buf[off:], off)
    assert decode_one(b"", zpci_only=False) is None
    start = data.draw(st.integers(0, len(buf) + 3))
    end = data.draw(st.integers(start, len(buf) + 8))
    c = count_insns(buf, 0, start=start, end=end, per_index=False)
    n, stop = ref_count(buf, start, end)
    assert (c.total, c.stop) == (n, max(stop, start))


def test_truncated_decode_one_sets_flag_only():
    for raw in (b"\xe3", b"\xe3\x20\x40\x00\x00", b"\xb9\xd0\x00", b"\x58"):
        d = decode_one(raw, addr=0x20, zpci_only=False)
        assert d.flags == TRUNCATED and d.index == INDEX_NONE
        assert d.ilen == ref_ilen(raw[0]) and d.addr == 0x20
        assert decode_one(raw, addr=0x20) is None


# ------------------------------------------------------------- C interface

def test_c_table_is_the_def_file():
    assert lib.zpci_table_size() == len(TABLE)
    formats = {Format.RRE: lib.ZPCI_FMT_RRE, Format.RRF_C: lib.ZPCI_FMT_RRF_C,
               Format.RSY_A: lib.ZPCI_FMT_RSY_A, Format.RXY_A: lib.ZPCI_FMT_RXY_A}
    for ins in TABLE:
        e = lib.zpci_table_get(ins.index)
        assert (e.opcode, e.ilen, e.format, bool(e.privileged)) == (
            ins.opcode, ins.ilen, formats[ins.format], ins.privileged)
        assert ffi.string(e.mnemonic).decode() == ins.mnemonic
        assert ffi.string(e.handler).decode() == ins.handler
        assert e.status_reg == getattr(lib, f"ZPCI_ST_{ins.status_reg.value}")
        assert lib.zpci_table_lookup(ins.opcode) == ins.index
    assert lib.zpci_table_get(-1) == ffi.NULL and lib.zpci_table_get(len(TABLE)) == ffi.NULL
    taken = {i.opcode for i in TABLE}
    assert all(lib.zpci_table_lookup(op) == -1 for op in range(0x10000) if op not in taken)
    assert lib.zpci_table_lookup(0x10000 | TABLE[0].opcode) == -1


def test_c_entry_points_accept_null_and_empty():
    scan = ffi.new("zpci_scan *")
    assert lib.zpci_decode_buffer(ffi.NULL, 100, 0, ffi.NULL, 0, scan) == 1
    assert scan.total == 0 and scan.trunc_bytes == 0
    out = ffi.new("zpci_decoded *")
    assert lib.zpci_decode_one(ffi.NULL, 6, 0, out) == 0
    stop = ffi.new("uint64_t *")
    assert lib.zpci_count_insns(ffi.NULL, 100, 0, 100, ffi.NULL, stop) == 0


def test_c_decode_buffer_stops_when_full_and_resumes():
    buf = b"\x07\x07" + encode("SIC", r1=1) + b"\x18\x12" + encode("CLP", r2=3)
    cbuf = ffi.from_buffer("uint8_t[]", buf)
    scan = ffi.new("zpci_scan *")
    lib.zpci_scan_init(scan)
    assert lib.zpci_decode_buffer(cbuf, len(buf), 0, ffi.NULL, 0, scan) == 0
    assert (scan.full, scan.next, scan.total) == (1, 2, 1)
    out = ffi.new("zpci_decoded[]", 1)
    assert lib.zpci_decode_buffer(cbuf, len(buf), 0, out, 1, scan) == 0
    assert (scan.next, scan.total, scan.nzpci, out[0].index) == (10, 3, 1, TABLE.index(
        next(i for i in TABLE if i.mnemonic == "SIC")))
    big = ffi.new("zpci_decoded[]", 2)
    big[0] = out[0]
    assert lib.zpci_decode_buffer(cbuf, len(buf), 0, big, 2, scan) == 1
    assert (scan.full, scan.next, scan.total, scan.nzpci) == (0, len(buf), 4, 2)
    assert big[1].addr == 10 and big[1].r2 == 3


def test_bad_base_and_range_are_value_errors():
    with pytest.raises(ValueError):
        decode_buffer(b"\x07\x07", base=(1 << 64) - 1)
    with pytest.raises(ValueError):
        count_insns(b"\x07\x07", base=0x100, start=0x10)


# ---------------------------------------------------------------- over-read

GUARD = textwrap.dedent("""
    import ctypes, mmap, random, sys
    from emulator._native import ffi, lib
    from emulator.decode import count_insns, decode_buffer, decode_one
    PAGE = mmap.PAGESIZE
    mm = mmap.mmap(-1, 2 * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    assert libc.mprotect(addr + PAGE, PAGE, 0) == 0, ctypes.get_errno()
    if sys.argv[1] == "control":
        ctypes.string_at(addr + PAGE, 1)   # must die: proves the guard page is armed
        sys.exit(0)
    rng = random.Random(7)
    fills = [b"\\xeb", b"\\xe3", b"\\xb9", b"\\xb9\\xd0", b"\\xe3\\x00\\x00\\x00\\x00\\xd0",
             b"\\xeb\\x00\\x00\\x00\\x00\\xd1", b"\\xc0", b"\\x07"]
    view = memoryview(mm)
    runs = 0
    for k in range(0, 97):
        for fill in fills + [bytes(rng.randrange(256) for _ in range(k))]:
            data = (fill * (k // max(len(fill), 1) + 1))[:k]
            view[PAGE - k:PAGE] = data
            for skew in range(min(k, 6) + 1):
                chunk = view[PAGE - k + skew:PAGE]
                decode_buffer(chunk, 0x1000)
                count_insns(chunk, 0x1000)
                count_insns(chunk, 0x1000, start=0x1000, end=0x1000 + k + 8)
                decode_one(chunk, zpci_only=False)
                cb = ffi.from_buffer("uint8_t[]", chunk)
                out = ffi.new("zpci_decoded *")
                lib.zpci_decode_one(cb, len(cb), 0, out)
                runs += 1
    print(runs)
""")


def _run_guard(mode):
    return subprocess.run([sys.executable, "-c", GUARD, mode], capture_output=True, text=True,
                          timeout=120)


def test_no_read_past_buffer_end_guard_page():
    ok = _run_guard("decode")
    assert ok.returncode == 0, ok.stderr
    assert int(ok.stdout) > 5000
    control = _run_guard("control")
    assert control.returncode != 0, "the PROT_NONE page did not fault; the guard proves nothing"
