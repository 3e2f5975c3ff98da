"""Trace format v1: round trips, run-length encoding, and one-line errors for bad files."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from _helpers import run_cli
from emulator.errors import UserError
from emulator.trace.format import (
    PREAMBLE, End, Event, EventFlag, FunctionInfo, Mark, Note, RecordType, Runs,
    SourceKind, StreamKind, TraceHeader, encode_event, operand_regs, insn_of, record)
from emulator.trace.reader import TraceReader, read_all
from emulator.trace.writer import TraceWriter
from firmware_model.insns import TABLE, encode

MEM = 1 << 24
HDR = TraceHeader(SourceKind.BOOT, StreamKind.FULL, MEM,
                  (FunctionInfo(1, 1, "virtio-rng-pci", (0x20000, 0x80020000), (("disable-legacy", "on"),),
                                0x1AF4, 0x1044),), workload="unit", detail="test")

regs = st.integers(0, (1 << 64) - 1)
mems = st.lists(st.tuples(st.integers(0, MEM - 64), st.binary(max_size=64)), max_size=3)


@st.composite
def events(draw):
    ins = draw(st.sampled_from(TABLE))
    f = dict(r1=draw(st.integers(0, 15)), r2=draw(st.integers(0, 15)), r3=draw(st.integers(0, 15)),
             b2=draw(st.integers(0, 15)), x2=draw(st.integers(0, 15)),
             d2=draw(st.integers(-(1 << 19), (1 << 19) - 1)))
    code = encode(ins.mnemonic, **f)
    before = draw(st.lists(regs, min_size=16, max_size=16))
    after = list(before)
    for r in draw(st.sets(st.integers(0, 15), max_size=4)):
        after[r] = draw(regs)
    return dict(addr=draw(st.integers(0, MEM - 6)) & ~1, insn=code, gprs_before=before,
                gprs_after=after, pswm_before=draw(regs), pswm_after=draw(regs),
                reads=draw(mems), writes=draw(mems), pgm=draw(st.sampled_from([None, 0x4, 0x6, 0x15])),
                pgm_known=draw(st.booleans()), incomplete=draw(st.booleans()))


def _write(path, evs, compress, blocks=()):
    with TraceWriter(path, HDR, compress=compress) as w:
        ids = [w.add_block(a, c) for a, c in blocks]
        for i, ev in enumerate(evs):
            if ids:
                w.run_block(ids[i % len(ids)])
            w.zpci_event(**ev)
        w.mark("phase")
        w.note("fmb_stats", {"loads": 3})


@given(st.lists(events(), max_size=8), st.booleans())
def test_events_round_trip(tmp_path_factory, evs, compress):
    path = tmp_path_factory.mktemp("rt") / "t.zpt"
    _write(path, evs, compress, blocks=[(0x1000, b"\x07\x07"), (0x2000, encode("SIC"))])
    hdr, recs = read_all(path)
    assert hdr == HDR
    got = [r for r in recs if isinstance(r, Event)]
    assert len(got) == len(evs)
    for i, (e, g) in enumerate(zip(evs, got)):
        ins = insn_of(e["insn"])
        mask = operand_regs(ins, e["insn"])
        assert g.seq == i and g.addr == e["addr"] and g.insn == e["insn"]
        assert g.regs_in == tuple((r, e["gprs_before"][r]) for r in range(16) if mask >> r & 1)
        assert g.regs_out == tuple((r, e["gprs_after"][r]) for r in range(16)
                                   if e["gprs_after"][r] != e["gprs_before"][r])
        assert g.reads == tuple((a, bytes(d)) for a, d in e["reads"])
        assert g.writes == tuple((a, bytes(d)) for a, d in e["writes"])
        assert g.cc == (e["pswm_after"] >> 44) & 3
        assert g.pswm_before == e["pswm_before"] and g.pswm_after == e["pswm_after"]
        assert bool(g.flags & EventFlag.INCOMPLETE) == e["incomplete"]
        assert bool(g.flags & EventFlag.PGM_KNOWN) == e["pgm_known"]
        assert g.pgm == (e["pgm"] or 0)
    assert isinstance(recs[-1], End) and recs[-1].events == len(evs)
    assert any(isinstance(r, Mark) and r.next_seq == len(evs) for r in recs)
    assert Note("fmb_stats", {"loads": 3}) in recs


@given(st.lists(st.integers(0, 3), max_size=300), st.booleans())
def test_runs_reproduce_the_block_sequence(tmp_path_factory, seq, compress):
    path = tmp_path_factory.mktemp("runs") / "r.zpt"
    with TraceWriter(path, HDR, compress=compress) as w:
        ids = [w.add_block(0x1000 * (i + 1), bytes([0x07, i])) for i in range(4)]
        for b in seq:
            w.run_block(ids[b])
    _, recs = read_all(path)
    flat = [bid for r in recs if isinstance(r, Runs) for bid, n in r.pairs for _ in range(n)]
    assert flat == seq
    pairs = [p for r in recs if isinstance(r, Runs) for p in r.pairs]
    assert all(a[0] != b[0] for a, b in zip(pairs, pairs[1:]))   # maximal runs
    assert recs[-1].block_execs == len(seq) and recs[-1].blocks == 4


def test_long_runs_are_chunked_and_counted(tmp_path):
    path = tmp_path / "long.zpt"
    with TraceWriter(path, HDR) as w:
        a, b = w.add_block(0x1000, b"\x07\x07"), w.add_block(0x2000, b"\x07\x08")
        for i in range(50000):
            w.run_block(a if i % 3 else b)
    _, recs = read_all(path)
    runs = [r for r in recs if isinstance(r, Runs)]
    assert len(runs) > 1                                  # flushed in chunks, not held
    assert sum(n for r in runs for _, n in r.pairs) == 50000


def _valid(tmp_path, compress=False):
    path = tmp_path / ("v.zpt" if not compress else "vz.zpt")
    g = [0] * 16
    g[2] = 0x80020000000F0004
    ga = list(g)
    ga[1] = 0xF41A4110
    with TraceWriter(path, HDR, compress=compress) as w:
        b = w.add_block(0x2000, encode("PCILG", r1=1, r2=2))
        for i in range(5):
            w.run_block(b)
            w.zpci_event(0x2000, encode("PCILG", r1=1, r2=2), g, ga, cc=0,
                         reads=[(0x100, b"abcd")])
    return path


def _err(path) -> str:
    with pytest.raises(UserError) as ei:
        with TraceReader(path) as rd:
            for _ in rd:
                pass
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "seq" in msg
    assert "offset" in msg          # compressed traces too ("stream offset")
    return msg


def test_every_truncation_is_an_error_with_offset(tmp_path):
    data = _valid(tmp_path).read_bytes()
    cut = tmp_path / "cut.zpt"
    for n in range(0, len(data)):
        cut.write_bytes(data[:n])
        msg = _err(cut)
        assert "offset" in msg


def test_truncated_compressed_trace(tmp_path):
    data = _valid(tmp_path, compress=True).read_bytes()
    cut = tmp_path / "cutz.zpt"
    for n in range(PREAMBLE.size, len(data), 7):
        cut.write_bytes(data[:n])
        _err(cut)


def test_corrupt_zstd_body(tmp_path):
    data = bytearray(_valid(tmp_path, compress=True).read_bytes())
    for i in range(PREAMBLE.size + 4, len(data), 5):
        data[i] ^= 0x5A
    bad = tmp_path / "bad.zpt"
    bad.write_bytes(bytes(data))
    _err(bad)


def test_magic_version_flags(tmp_path):
    data = bytearray(_valid(tmp_path).read_bytes())
    p = tmp_path / "x.zpt"
    for off, val, words in ((0, 0x88, "not a zpci-emu trace"), (8, 2, "version"), (10, 0x80, "flags")):
        d = bytearray(data)
        d[off] = val
        p.write_bytes(bytes(d))
        assert words in _err(p)


def _hand(tmp_path, recs, header=HDR):
    p = tmp_path / "hand.zpt"
    body = record(RecordType.HEADER, header.to_bytes()) + b"".join(recs)
    p.write_bytes(PREAMBLE.pack(b"\x89ZPT\r\n\x1a\n", 1, 0, 0) + body)
    return p


def _ev(seq, insn=None, reads=()):
    insn = insn or encode("PCILG", r1=1, r2=2)
    return record(RecordType.EVENT, encode_event(seq, 0x2000, insn, EventFlag.CC, 0, 0, 0, 0,
                                                 [(1, 0), (2, 5), (3, 0)], [], list(reads), []))


def _end(events, execs=0, blocks=0, marks=0):
    return record(RecordType.END, struct.pack("<QQII", events, execs, blocks, marks))


def test_contradictions_are_errors(tmp_path):
    zonly = TraceHeader(SourceKind.IMPORT, StreamKind.ZPCI_ONLY, MEM)
    blk = record(RecordType.BLOCK, struct.pack("<IQI", 0, 0x1000, 2) + b"\x07\x07")
    cases = [
        ([_ev(5), _ev(5), _end(2)], HDR, "does not follow"),
        ([_ev(1), _ev(0), _end(2)], HDR, "does not follow"),
        ([blk, _end(0, 0, 1)], zonly, "zpci-only"),
        ([_ev(0, reads=[(MEM - 2, b"abcd")]), _end(1)], HDR, "outside the header"),
        ([_ev(0, insn=b"\x07\x07\x07\x07"), _end(1)], HDR, "not a zPCI instruction"),
        ([_ev(0), _end(2)], HDR, "END record says"),
        ([record(0x42, b""), _end(0)], HDR, "unknown record type"),
        ([record(RecordType.RUNS, struct.pack("<II", 3, 1)), _end(0, 1)], HDR, "names block 3"),
        ([_ev(0), _end(1), _ev(1)], HDR, "after the END"),
        ([_ev(0)], HDR, "truncated"),
    ]
    for recs, hdr, words in cases:
        msg = _err(_hand(tmp_path, recs, hdr))
        assert words in msg, (words, msg)
    msg = _err(_hand(tmp_path, [_ev(7), _ev(3), _end(2)]))
    assert "seq 7" in msg and "offset" in msg


def test_cli_bad_trace_is_one_line(tmp_path):
    data = _valid(tmp_path).read_bytes()
    p = tmp_path / "t.zpt"
    p.write_bytes(data[:-3])
    r = run_cli("trace", "stats", p)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert str(p) in r.stderr and "offset" in r.stderr


def test_cli_show_and_stats(tmp_path):
    p = _valid(tmp_path, compress=True)
    r = run_cli("trace", "show", p)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" PCILG @2000 [b9d20012]") == 5 and "out: r1=f41a4110" in r.stdout
    r = run_cli("trace", "stats", "--json", p)
    assert r.returncode == 0, r.stderr
    import json
    st_ = json.loads(r.stdout)[0]
    assert st_["events"] == 5 and st_["by_mnemonic"] == {"PCILG": 5}
    assert st_["block_executions"] == 5 and st_["instructions"] == 5 and st_["compressed"]


@settings(max_examples=150)
@given(st.data())
def test_any_corruption_is_a_user_error_or_reads(tmp_path_factory, data):
    """Flipped, dropped or inserted bytes never escape as anything but a UserError."""
    from emulator.replay import replay
    d = tmp_path_factory.mktemp("fz")
    compress = data.draw(st.booleans())
    raw = bytearray(_valid(d, compress=compress).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "drop":
            del raw[i]
        else:
            raw.insert(i, data.draw(st.integers(0, 255)))
    p = d / "fz.zpt"
    p.write_bytes(bytes(raw))
    try:
        with TraceReader(p) as rd:
            list(rd)
    except UserError as exc:
        assert "\n" not in str(exc) and str(p) in str(exc)
        assert "offset" in str(exc) and "seq" in str(exc)
    try:
        replay([p], progress=False)
    except UserError as exc:
        assert "\n" not in str(exc) and str(p) in str(exc)


def test_mask_before_and_cc_only(tmp_path):
    p = tmp_path / "m.zpt"
    g = [0] * 16
    with TraceWriter(p, HDR, compress=False) as w:
        w.add_block(0, b"\x07\x07")
        w.zpci_event(0x100, encode("PCILG", r1=1, r2=2), g, g, pswm_before=0x0705D00180000000, cc=3)
        w.zpci_event(0x104, encode("PCILG", r1=1, r2=2), g, g, pswm_before=0x0705D00180000000,
                     cc=None, pgm=0x02)
    a, b = [r for r in read_all(p)[1] if isinstance(r, Event)]
    assert a.flags & EventFlag.PSW and a.cc == 3 and a.pswm_after == 0x0705F00180000000
    assert b.pswm_after == b.pswm_before and b.pgm == 2 and (b.pswm_before >> 48) & 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.text(max_size=6),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=12)


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["source", "stream", "memory", "functions", "extra", "workload"]),
                       _json | st.lists(st.fixed_dictionaries(
                           {"fid": st.integers(-1, 3), "uid": st.none() | st.integers(-1, 3),
                            "kind": st.sampled_from(["virtio-rng-pci", "virtio-net-pci", "memdev", "x"]),
                            "props": st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)),
                                              max_size=2)}), max_size=3), max_size=4))
def test_malformed_header_is_a_user_error(tmp_path_factory, changes):
    import json as _j
    good = _j.loads(HDR.to_bytes())
    p = tmp_path_factory.mktemp("hdr") / "h.zpt"
    body = record(RecordType.HEADER, _j.dumps({**good, **changes}).encode()) + _end(0)
    p.write_bytes(PREAMBLE.pack(b"\x89ZPT\r\n\x1a\n", 1, 0, 0) + body)
    from emulator.replay import replay
    for action in (read_all, lambda q: replay([q], progress=False)):
        try:
            action(p)
        except UserError as exc:
            assert "\n" not in str(exc) and str(p) in str(exc)


@settings(max_examples=60)
@given(st.lists(events(), max_size=6), st.booleans())
def test_operand_event_writes_what_zpci_event_writes(tmp_path_factory, evs, dma):
    """The native capture's lean path (site worked out once, everything
    recorded) gives the same records as the general one."""
    d = tmp_path_factory.mktemp("oe")
    hdr = TraceHeader(SourceKind.CAPTURE, StreamKind.ZPCI_ONLY, 0)
    with TraceWriter(d / "a.zpt", hdr) as a, TraceWriter(d / "b.zpt", hdr) as b:
        for e in evs:
            pgm = e["pgm"]
            cc = (e["pswm_after"] >> 44) & 3
            a.zpci_event(e["addr"], e["insn"], e["gprs_before"], e["gprs_after"],
                         pswm_before=e["pswm_before"], pswm_after=e["pswm_after"], cc=cc,
                         reads=e["reads"], writes=e["writes"], pgm=pgm, dma_tables=dma)
            b.operand_event(b.site(e["insn"], dma), e["addr"], e["pswm_before"], e["pswm_after"],
                            cc, pgm, e["gprs_before"], e["gprs_after"], e["reads"], e["writes"])
    assert read_all(d / "a.zpt") == read_all(d / "b.zpt")


def test_copy_body_restates_the_header_and_adds_notes(tmp_path):
    g = [0] * 16
    raw = tmp_path / "raw.zpt"
    hdr = TraceHeader(SourceKind.CAPTURE, StreamKind.ZPCI_ONLY, 0, workload="first")
    with TraceWriter(raw, hdr) as w:
        w.zpci_event(0x100, encode("PCILG", r1=1, r2=2), g, [0, 5] + g[2:], cc=0, reads=[(8, b"ab")])
        w.mark("workload")
        w.note("early", {"n": 1})
        w.zpci_event(0x104, encode("SIC", r1=1, r3=2), g, g, cc=3)
    later = TraceHeader(SourceKind.CAPTURE, StreamKind.ZPCI_ONLY, 0, workload="later",
                        extra=(("fmb_crosscheck", "match"),))
    out = tmp_path / "out.zpt"
    with TraceReader(raw) as rd, TraceWriter(out, later) as w:
        w.copy_body(rd, [("fmb_stats", {"function": "f"})])
        assert w.events == 2
    h0, r0 = read_all(raw)
    h1, r1 = read_all(out)
    assert h1 == later
    assert r1[:-2] == r0[:-1]                      # every record as it was, in order
    assert r1[-2] == Note("fmb_stats", {"function": "f"}) and r1[-1] == r0[-1]
    full = tmp_path / "full.zpt"
    with TraceWriter(full, HDR) as w:
        w.add_block(0, b"\x07\x07")
        w.run_block(0)
    with TraceReader(full) as rd, TraceWriter(tmp_path / "x.zpt", hdr) as w, \
            pytest.raises(ValueError):
        w.copy_body(rd)
