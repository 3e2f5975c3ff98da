"""Replay: --check against recordings, unchecked events, the decision cache, streaming."""
import json
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from _helpers import run_cli as _cli
from emulator.errors import UserError
from emulator.trace.format import Event, EventFlag
from emulator.trace.reader import TraceReader
from emulator.replay import replay
from emulator.trace.writer import TraceWriter
from test_replay_scenario import OPS, record_ops, record_scenario

POLICIES = ("intercept-all", "linux-6.0", "ioat-assist", "firmware-rpcit")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    p = tmp_path_factory.mktemp("scn") / "scenario.zpt"
    n = record_scenario(p, rounds=4)
    return p, n


@pytest.mark.parametrize("assume", ["passthrough", "as-recorded"])
def test_check_reproduces_every_recorded_event(scenario, assume):
    path, n = scenario
    seen = []
    (r,) = replay([path], assume=assume, check=True, on_mismatch=seen.append)
    assert seen == []
    assert r.events == n and r.checked == n and r.passed == n and not r.unchecked
    assert r.instructions == n            # one instruction per recorded block
    assert set(r.routes) == set(POLICIES)
    if assume == "as-recorded":           # emulated handles: nothing is interpreted
        assert all(r.exits(p) == n for p in POLICIES)
    else:
        ls = r.by_mnemonic["PCILG"] + r.by_mnemonic["PCISTG"]
        assert r.route_totals("linux-6.0")["firmware"] < ls     # stale handles still exit
        assert r.exits("linux-6.0") < r.exits("intercept-all")
        assert r.route_totals("ioat-assist")["kvm"] == r.by_mnemonic["RPCIT"]
        assert r.route_totals("firmware-rpcit")["firmware"] == (
            r.route_totals("linux-6.0")["firmware"] + r.by_mnemonic["RPCIT"])


def _rewrite(src, dst, change):
    """Copy a trace, passing every event through change(event) -> event."""
    with TraceReader(src) as rd:
        hdr, recs = rd.header, list(rd)
    with TraceWriter(dst, hdr, compress=False) as w:
        for rec in recs:
            if isinstance(rec, Event):
                ev = change(rec)
                before = [0] * 16
                for r, v in ev.regs_in:
                    before[r] = v
                after = list(before)
                for r, v in ev.regs_out:
                    after[r] = v
                w.zpci_event(ev.addr, ev.insn, before, after, cc=ev.cc,
                             pswm_before=ev.pswm_before, pswm_after=ev.pswm_after,
                             reads=ev.reads, writes=ev.writes, pgm=ev.pgm or None,
                             pgm_known=bool(ev.flags & EventFlag.PGM_KNOWN),
                             incomplete=bool(ev.flags & EventFlag.INCOMPLETE), seq=ev.seq)


def test_check_lists_each_mismatch_with_seq_and_address(scenario, tmp_path):
    path, n = scenario
    bad = tmp_path / "bad.zpt"

    def change(ev):
        if ev.mnemonic == "PCILG" and ev.regs_out:           # the guest got another value
            return Event(**{**ev.__dict__, "regs_out": ((1, ev.regs_out[0][1] ^ 0xFF),)})
        if ev.mnemonic == "PCISTG" and ev.seq == 4:           # and a cc the model does not give
            return Event(**{**ev.__dict__, "cc": 1})
        return ev

    _rewrite(path, bad, change)
    seen = []
    (r,) = replay([bad], check=True, on_mismatch=seen.append, policies=["linux-6.0"])
    # a loaded value comes from the recording itself (replay device), so only the cc differs
    assert {(m.seq, m.mnemonic) for m in seen} == {(4, "PCISTG")}
    assert r.mismatched == 1 and r.passed == n - 1
    res = _cli("replay", "--check", "--policy", "linux-6.0", bad)
    assert res.returncode == 1
    assert "MISMATCH" in res.stdout and "seq 4 PCISTG @5010" in res.stdout and "cc 0 recorded 1" in res.stdout


def test_incomplete_events_are_unchecked_not_passed(scenario, tmp_path):
    path, n = scenario
    cut = tmp_path / "cut.zpt"

    def drop_tables(ev):
        if ev.mnemonic == "RPCIT":
            return Event(**{**ev.__dict__, "reads": (), "flags": ev.flags | EventFlag.INCOMPLETE})
        return ev

    _rewrite(path, cut, drop_tables)
    (r,) = replay([cut], check=True, on_mismatch=lambda m: pytest.fail(str(m)))
    rp = r.by_mnemonic["RPCIT"]
    assert rp and r.unchecked["inputs incomplete in trace"] == rp
    assert r.passed == n - rp and r.checked == n - rp


def test_model_reading_unrecorded_memory_is_unchecked(scenario, tmp_path):
    path, n = scenario
    cut = tmp_path / "noreads.zpt"
    _rewrite(path, cut, lambda ev: Event(**{**ev.__dict__, "reads": ()}) if ev.mnemonic == "MPCIFC" else ev)
    (r,) = replay([cut], check=True, on_mismatch=lambda m: None)
    assert r.unchecked["model read unrecorded input"] == 1


@settings(max_examples=25)
@given(st.lists(st.sampled_from(OPS), min_size=1, max_size=40))
def test_cached_counts_equal_full_model(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("ops") / "ops.zpt"
    record_ops(path, ops)
    for assume in ("passthrough", "as-recorded"):
        (fast,) = replay([path], assume=assume)
        (full,) = replay([path], assume=assume, fast=False)
        assert full.full_model_events == full.events
        assert fast.routes == full.routes and fast.by_mnemonic == full.by_mnemonic


def test_cache_skips_the_model_on_repeats(tmp_path):
    path = tmp_path / "rep.zpt"
    n = record_ops(path, ["load", "store", "rpcit"] * 200)
    (r,) = replay([path])
    assert r.events == n and r.full_model_events < 10


def test_replay_memory_is_flat(tmp_path, monkeypatch):
    import emulator.trace.reader as reader
    monkeypatch.setattr(reader, "_CHUNK", 16 << 10)   # both traces span many chunks
    small, big = tmp_path / "s.zpt", tmp_path / "b.zpt"
    record_ops(small, ["load", "store", "rpcit", "sic"] * 500, compress=True)
    record_ops(big, ["load", "store", "rpcit", "sic"] * 4000, compress=True)
    peaks = []
    for p in (small, big):
        replay([p])                       # warm imports and caches
        tracemalloc.start()
        replay([p])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + (256 << 10), peaks


def test_replay_bad_input_is_one_line(scenario, tmp_path):
    path, _ = scenario
    data = path.read_bytes()
    bad = tmp_path / "trunc.zpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        replay([bad])
    res = _cli("replay", bad)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and str(bad) in res.stderr
    res = _cli("replay", "--policy", "nosuch", path)
    assert res.returncode == 2 and "unknown policy" in res.stderr     # bad usage


def test_cli_json(scenario):
    path, n = scenario
    res = _cli("replay", "--json", "--policy", "ioat-assist", path)
    assert res.returncode == 0, res.stderr
    (out,) = json.loads(res.stdout)
    assert out["events"] == n and list(out["routes"]) == ["ioat-assist"]
    assert out["exits"]["ioat-assist"] == sum(
        n for r, n in out["route_totals"]["ioat-assist"].items() if r != "firmware")


