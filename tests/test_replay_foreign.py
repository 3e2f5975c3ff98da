"""Foreign recordings: a Linux capture made with linux-guest-traces.md's recipe imports and replays.

tests/data/linux_net_tx_no_dma_tables.jsonl.xz: the event records of
``zpci-emu capture --workload net-tx --no-dma-tables --jsonl X`` (Debian
linux-image-6.1.0-50-s390x under QEMU 7.2, the gdb recorder writing what the
doc's recorder writes: registers, PSWs and operand blocks, no DMA table
entries), xz-compressed.  Its operand addresses are the kernel's logical
addresses (FIBs and IIBs on vmalloc'd stacks at 0x37fffd1....).
"""
import lzma
import shutil

import pytest

from _helpers import ROOT, run_cli
from conftest import needs_qemu
from test_capture import PROBE, needs_gdb
from emulator.replay import incomplete, replay
from emulator.trace.format import Event, EventFlag
from emulator.trace.reader import TraceReader
from test_replay import POLICIES, _rewrite

DATA = ROOT / "tests" / "data" / "linux_net_tx_no_dma_tables.jsonl.xz"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    p = tmp_path_factory.mktemp("foreign") / "net-tx.jsonl"
    with lzma.open(DATA) as src, open(p, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return p


@pytest.fixture(scope="module")
def imported(recording):
    out = recording.with_suffix(".zpt")
    res = run_cli("import", recording, "-o", out)           # every option at its default
    assert res.returncode == 0, res.stderr
    return out


def test_recording_is_as_the_recipe_writes_it(recording):
    import json
    recs = [json.loads(line) for line in open(recording)]
    rpcit = [r for r in recs if r["insn"] == "RPCIT"]
    assert rpcit and not any("dma_tables" in r for r in recs)
    # operands at logical addresses beyond the guest's 1 GiB
    assert any(int(r["operands"].get("blk", "0"), 16) >= 1 << 30 for r in recs)


def test_import_with_defaults_keeps_logical_addresses(imported):
    with TraceReader(imported) as rd:
        assert rd.header.memory == 0                       # no bound
        evs = [e for e in rd if isinstance(e, Event)]
    assert max(a for e in evs for a, _ in e.reads) >= 1 << 30
    rpcit = [e for e in evs if e.mnemonic == "RPCIT"]
    assert rpcit and all(e.flags & EventFlag.INCOMPLETE for e in rpcit)
    assert not any(e.flags & EventFlag.INCOMPLETE for e in evs if e.mnemonic != "RPCIT")


def test_explicit_memory_bound_still_refuses_logical_addresses(recording, tmp_path):
    res = run_cli("import", recording, "-o", tmp_path / "t.zpt", "--memory", "1024M")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "beyond the guest" in res.stderr
    assert not (tmp_path / "t.zpt").exists()


@pytest.mark.parametrize("assume", ["passthrough", "as-recorded"])
def test_check_reports_no_mismatch_rpcits_unchecked(imported, assume):
    seen = []
    (r,) = replay([imported], assume=assume, check=True, on_mismatch=seen.append, progress=False)
    assert seen == []
    n_rpcit = r.by_mnemonic["RPCIT"]
    assert n_rpcit > 100
    assert dict(r.unchecked) == {"inputs incomplete in trace": n_rpcit}
    assert r.checked == r.passed == r.events - n_rpcit and r.mismatched == 0
    # every event's decision counts under every policy, the RPCITs' included
    assert set(r.routes) == set(POLICIES)
    for p in POLICIES:
        assert sum(r.route_totals(p).values()) == r.events
        assert sum(r.routes[p]["RPCIT"].values()) == n_rpcit
    if assume == "passthrough":
        assert r.route_totals("ioat-assist")["kvm"] == n_rpcit
        assert r.routes["firmware-rpcit"]["RPCIT"] == {"firmware": n_rpcit}
    (fast,) = replay([imported], assume=assume, progress=False)
    assert fast.routes == r.routes


def test_cli_check_exit_status_and_summary(imported):
    res = run_cli("replay", "--check", imported)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 mismatched" in res.stdout and "inputs incomplete in trace" in res.stdout
    assert "MISMATCH" not in res.stdout


def _first_rpcit_below_ioat(src, dst):
    """A copy whose first RPCIT refreshes a range below the IOAT's base: the
    model fails on every placeholder where the recording says cc 0."""
    first = []

    def change(ev):
        if ev.mnemonic == "RPCIT" and not first:
            first.append(ev.seq)
            regs = dict(ev.regs_in)
            r2 = ev.insn[3] & 0xF
            regs[r2], regs[r2 + 1] = 0, 0x1000
            return Event(**{**ev.__dict__, "regs_in": tuple(sorted(regs.items()))})
        return ev
    _rewrite(src, dst, change)


def test_incomplete_event_keeps_the_recorded_state(imported, tmp_path):
    """A model failure on an incomplete event does not leak into the events after it."""
    bad = tmp_path / "oorange.zpt"
    _first_rpcit_below_ioat(imported, bad)
    seen = []
    (r,) = replay([bad], check=True, on_mismatch=seen.append, progress=False)
    assert seen == [] and r.mismatched == 0
    assert r.checked == r.events - r.by_mnemonic["RPCIT"]


def test_without_restoring_the_failure_would_leak(imported, tmp_path, monkeypatch):
    """The same trace with the restore disabled: the function's error state turns
    later loads and stores into mismatches (what the restore prevents)."""
    bad = tmp_path / "oorange.zpt"
    _first_rpcit_below_ioat(imported, bad)
    monkeypatch.setattr(incomplete, "restore", lambda bus, saved: None)
    seen = []
    replay([bad], check=True, on_mismatch=seen.append, progress=False, policies=["intercept-all"])
    assert len({m.seq for m in seen}) > 10


@needs_qemu
@needs_gdb
def test_capture_without_dma_tables_replays_recorded_errors(tmp_path):
    """``capture --no-dma-tables`` of the probe guest, whose RPCITs also fail on
    purpose (zero entries, bad table types): each incomplete RPCIT leaves the
    function as the recording shows, failed or not, and every other event checks."""
    import json
    out, jsonl = tmp_path / "probe.zpt", tmp_path / "probe.jsonl"
    res = run_cli("capture", "--elf", PROBE, "--no-dma-tables", "--jsonl", jsonl, "-o", out)
    assert res.returncode == 0, res.stderr
    evs = [r for r in map(json.loads, open(jsonl)) if "insn" in r]
    rpcit = [r for r in evs if r["insn"] == "RPCIT"]
    assert rpcit and not any("dma_tables" in r for r in evs)
    assert {r["cc"] for r in rpcit} >= {0, 1}              # successes and recorded failures
    seen = []
    (r,) = replay([out], check=True, on_mismatch=seen.append, progress=False)
    assert seen == []
    assert dict(r.unchecked) == {"inputs incomplete in trace": len(rpcit)}
    assert r.checked == r.passed == len(evs) - len(rpcit)
