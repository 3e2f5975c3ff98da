"""Import of the gdb recorder's JSONL (linux-guest-traces.md) into trace files."""
import json
import struct

import pytest
from hypothesis import given, settings, strategies as st

from _helpers import run_cli
from emulator.errors import UserError
from emulator.trace.format import Event, EventFlag, Mark, Note, SourceKind, StreamKind
from emulator.trace.importer import import_jsonl
from emulator.trace.reader import read_all
from emulator.replay import decoded as _decoded, replay
from firmware_model.guest import RecordingGuest, SimpleGuest
from firmware_model.insns import encode
from firmware_model.machine import Machine
from test_replay_scenario import CONFIG, FIB, MEM, SDMA, _clp, _ioat_fib, _map, _tables

# The PCILG record printed in linux-guest-traces.md (a real recording of Linux 6.1).
DOC_RECORD = json.loads("""{"seq": 9, "t": 3.185, "wall": 1795698565.119, "step_tries": 1, "insn": "PCILG", "addr": "14122a", "bytes": "b9d20012",
 "func": "__zpci_load+0x3a",
 "gr_before": ["ffffffffffffffff","80020000","80020000000f0004","0","0","4","80020000000f0004","0","700000000c093af","37fffd1bbec","2015c00","fffffffa","1a1a400","37fffd1bc3e","37fffd1ba18","37fffd1b998"],
 "gr_after":  ["ffffffffffffffff","f41a4110","80020000000f0004","0","0","4","80020000000f0004","0","700000000c093af","37fffd1bbec","2015c00","fffffffa","1a1a400","37fffd1bc3e","37fffd1ba18","37fffd1b998"],
 "pswm_before": "0404d00180000000", "pswm_after": "0404c00180000000", "pswa_after": "14122e", "cc": 0,
 "operands": {"r1": 1, "r2": 2}, "mem_before": null, "mem_after": null}""")


class JsonlRecorder:
    """Runs instructions on the model and writes what the gdb recorder would write."""

    def __init__(self, tables=True, fib_len=80):
        self.g = SimpleGuest(MEM)
        self.m = Machine(CONFIG, "linux-6.0", "as-given")
        self.pswm = 0x0704C00180000000
        self.lines = []
        self.seq = 0
        self.tables = tables
        self.fib_len = fib_len

    def run(self, insn, addr, **extra):
        g = self.g
        d = _decoded(insn, addr)
        before = list(g.gprs)
        op = {"r1": d.r1, "r2": d.r2}
        blk = None
        name = {0xB9A0: "CLP", 0xE3D0: "MPCIFC"}.get(d.opcode)
        if name == "CLP":
            blk, ln = g.gpr(d.r2), 0x1000
        elif name == "MPCIFC":
            blk, ln = g.gpr(d.b2) + d.d2, self.fib_len
        mb = g.read(blk, ln).hex() if blk is not None else None
        rg = RecordingGuest(g)
        out = self.m.execute(d, rg)
        cc = out.completion.cc
        after_pswm = self.pswm if cc is None else (self.pswm & ~(3 << 44)) | cc << 44
        rec = {"seq": self.seq, "insn": out.mnemonic, "addr": f"{addr:x}", "bytes": insn.hex(),
               "gr_before": [f"{v:x}" for v in before], "gr_after": [f"{v:x}" for v in g.gprs],
               "pswm_before": f"{self.pswm:016x}", "pswm_after": f"{after_pswm:016x}",
               "pswa_after": f"{addr + len(insn):x}", "cc": (after_pswm >> 44) & 3,
               "operands": dict(op, **({"blk": f"{blk:x}", "blk_len": ln} if blk is not None else {})),
               "mem_before": mb, "mem_after": g.read(blk, ln).hex() if blk is not None else None,
               "func": "model", **extra}
        if out.mnemonic == "RPCIT" and self.tables:
            rec["dma_tables"] = [{"addr": f"{a:x}", "value": d_.hex()} for a, d_ in rg.reads]
        self.pswm = after_pswm
        self.lines.append(json.dumps(rec))
        self.seq += 1
        return out

    execute = run               # what test_replay_scenario's _clp drives

    def clp(self, cmd, body, rsp_len, addr=0x4000):
        return _clp(self, self.g, cmd, body, rsp_len, addr)

    def workload(self, rounds=3):
        g = self.g
        rsp = self.clp(2, b"", 32 + 16 * 4)
        fh = struct.unpack_from(">I", rsp, 32 + 12)[0]
        self.clp(3, struct.pack(">I", fh), 256, addr=0x4010)
        rsp = self.clp(5, struct.pack(">IHBB", fh, 0, 0, 1), 32, addr=0x4020)
        fh = struct.unpack_from(">I", rsp, 16)[0]
        _tables(g)
        _ioat_fib(g)
        g.set_gpr(1, fh << 32 | 4)
        g.set_gpr(11, FIB)
        self.run(encode("MPCIFC", r1=1, b2=11), 0x5020, phase="setup")
        for i in range(rounds):
            _map(g, SDMA + i * 0x1000, 0x200000)
            g.set_gpr(1, fh << 32)
            g.set_gpr(8, SDMA + i * 0x1000)
            g.set_gpr(9, 0x1000)
            self.run(encode("RPCIT", r1=1, r2=8), 0x5100, phase="traffic")
            g.set_gpr(2, fh << 32 | 0xF << 16 | 4)
            g.set_gpr(3, 0)
            self.run(encode("PCILG", r1=1, r2=2), 0x5000, phase="traffic", unknown_key={"x": 1})
        return fh

    def write(self, path, extra_lines=()):
        path.write_text("\n".join(self.lines + list(extra_lines)) + "\n")
        return path


def test_doc_record_imports_exactly(tmp_path):
    src = tmp_path / "doc.jsonl"
    src.write_text(json.dumps(DOC_RECORD) + "\n")
    dst = tmp_path / "doc.zpt"
    assert import_jsonl(src, dst) == 1
    hdr, recs = read_all(dst)
    assert hdr.source is SourceKind.IMPORT and hdr.stream is StreamKind.ZPCI_ONLY
    (ev,) = [r for r in recs if isinstance(r, Event)]
    assert ev.seq == 9 and ev.addr == 0x14122A and ev.insn == bytes.fromhex("b9d20012")
    assert ev.regs_in == ((1, 0x80020000), (2, 0x80020000000F0004), (3, 0))
    assert ev.regs_out == ((1, 0xF41A4110),)
    assert ev.cc == 0 and ev.pswm_before == 0x0404D00180000000
    assert ev.flags & EventFlag.PGM_KNOWN and not ev.flags & EventFlag.INCOMPLETE


def test_import_then_check_passes(tmp_path):
    rec = JsonlRecorder()
    rec.workload(rounds=4)
    src = rec.write(tmp_path / "w.jsonl", [json.dumps({"kind": "fmb_stats", "loads": 4}),
                                          json.dumps({"kind": "phase", "name": "teardown"})])
    dst = tmp_path / "w.zpt"
    n = import_jsonl(src, dst)
    hdr, recs = read_all(dst)
    (fn,) = hdr.functions
    assert (fn.fid, fn.uid, fn.kind, fn.vendor_id) == (1, 1, "virtio-rng-pci", 0x1AF4)
    assert len(fn.fhs) == 2                          # as listed, and enabled
    assert [r.label for r in recs if isinstance(r, Mark)] == ["setup", "traffic", "teardown"]
    assert Note("fmb_stats", {"loads": 4}) in recs
    evs = [r for r in recs if isinstance(r, Event)]
    assert len(evs) == n == 3 + 1 + 8
    assert all(e.flags & EventFlag.DMA_TABLES for e in evs if e.mnemonic == "RPCIT")
    (r,) = replay([dst], assume="as-recorded", check=True, on_mismatch=lambda m: pytest.fail(str(m)))
    assert r.passed == n and r.checked == n


def test_rpcit_without_tables_is_incomplete(tmp_path):
    rec = JsonlRecorder(tables=False)
    rec.workload(rounds=3)
    dst = tmp_path / "nt.zpt"
    import_jsonl(rec.write(tmp_path / "nt.jsonl"), dst)
    evs = [r for r in read_all(dst)[1] if isinstance(r, Event)]
    assert all(bool(e.flags & EventFlag.INCOMPLETE) == (e.mnemonic == "RPCIT") for e in evs)
    (r,) = replay([dst], assume="as-recorded", check=True, on_mismatch=lambda m: pytest.fail(str(m)))
    assert r.unchecked["inputs incomplete in trace"] == 3 and r.passed == len(evs) - 3


def _bad(tmp_path, lines):
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(lines))
    dst = tmp_path / "bad.zpt"
    with pytest.raises(UserError) as ei:
        import_jsonl(src, dst)
    assert not dst.exists() and not (tmp_path / "bad.zpt.part").exists()
    msg = str(ei.value)
    assert "\n" not in msg and str(src) in msg and "offset" in msg and "seq" in msg
    return msg


def test_malformed_required_keys(tmp_path):
    good = json.dumps(DOC_RECORD) + "\n"
    off = len(good)

    def mut(**kw):
        r = dict(DOC_RECORD, seq=10)
        for k, v in kw.items():
            if v is None:
                r.pop(k)
            else:
                r[k] = v
        return json.dumps(r) + "\n"

    cases = [
        (mut(gr_before=None), "gr_before"),
        (mut(gr_after=["0"] * 15), "gr_after"),
        (mut(bytes="0707"), "not a zPCI instruction"),
        (mut(insn="PCISTG"), "bytes are PCILG"),
        (mut(cc=2), "contradicts pswm_after"),
        (mut(cc="0"), "'cc'"),
        (mut(addr="xyz"), "'addr'"),
        (mut(seq=9), "does not follow"),
        (mut(mem_before=None), "mem_before"),
        (mut(operands=None), "operands"),
        (mut(dma_tables=[{"addr": "10"}]), "'value'"),
        # numbers that do not fit the trace's fields (were struct.error tracebacks)
        (mut(addr=-2), "'addr'"),
        (mut(pswm_before="1" + "0" * 16), "'pswm_before'"),
        (mut(dma_tables=[{"addr": "10", "value": 1 << 64}]), "'value'"),
        (mut(pgm=1 << 16), "'pgm'"),
        (mut(seq=1 << 64), "'seq'"),
        ("{not json\n", "not JSON"),
        ("[1, 2]\n", "not a JSON object"),
    ]
    for line, words in cases:
        msg = _bad(tmp_path, [good, line])
        assert words in msg and "line 2" in msg and f"offset {off}" in msg, (words, msg)
    assert "seq 10" in _bad(tmp_path, [good, mut(cc=2)])


def test_truncated_last_line(tmp_path):
    good = json.dumps(DOC_RECORD) + "\n"
    msg = _bad(tmp_path, [good, json.dumps(dict(DOC_RECORD, seq=10))[:-20]])
    assert "line 2" in msg


def test_cli_import(tmp_path):
    src = tmp_path / "doc.jsonl"
    src.write_text(json.dumps(DOC_RECORD) + "\n")
    dst = tmp_path / "o.zpt"
    r = run_cli("import", src, "-o", dst)
    assert r.returncode == 0 and "1 zPCI events" in r.stdout
    src.write_text(json.dumps(DOC_RECORD)[:-10] + "\n")
    r = run_cli("import", src, "-o", dst)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 1 << 65) | st.text(max_size=8)
    | st.sampled_from(["0", "b9d20012", "14122a", "0404c00180000000", "zz"]),
    lambda kids: st.lists(kids, max_size=17) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(sorted(DOC_RECORD)), json_values, max_size=4))
def test_any_malformed_record_is_a_user_error(tmp_path_factory, changes):
    d = tmp_path_factory.mktemp("jf")
    src = d / "f.jsonl"
    src.write_text(json.dumps(DOC_RECORD) + "\n" + json.dumps({**DOC_RECORD, "seq": 10, **changes}) + "\n")
    try:
        import_jsonl(src, d / "f.zpt")
    except UserError as exc:
        assert "\n" not in str(exc) and "line 2" in str(exc)
    else:
        assert len([r for r in read_all(d / "f.zpt")[1] if isinstance(r, Event)]) == 2
