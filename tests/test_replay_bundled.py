"""The committed traces: the model reproduces them, and the cache changes no count."""
import json
from pathlib import Path

import pytest

from _helpers import run_cli
from emulator.report import bundled_traces
from emulator.trace.reader import TraceReader
from emulator.replay import replay

ROOT = Path(__file__).resolve().parents[1]
BOOT_TRACES = sorted((ROOT / "traces").glob("*.zpt"))
ALL = [ROOT / p for p in bundled_traces() if p.suffix == ".zpt"]


def test_the_bundled_workloads_are_committed():
    names = {p.stem for p in BOOT_TRACES}
    assert {"probe", "wl_rng_strict", "wl_rng_lazy", "wl_doorbell", "wl_ism"} <= names
    for p in BOOT_TRACES:
        with TraceReader(p) as rd:
            assert rd.header.source.value == "boot" and rd.full


@pytest.mark.parametrize("path", BOOT_TRACES, ids=lambda p: p.stem)
def test_boot_traces_reproduce_exactly(path):
    bad = []
    for assume in ("as-recorded", "passthrough"):
        (r,) = replay([path], assume=assume, check=True, on_mismatch=bad.append, progress=False)
        assert not bad, [str(m) for m in bad[:5]]
        assert r.passed == r.events > 0 and not r.unchecked
        assert r.instructions > r.events          # the full stream was counted


LINUX = [p for p in ALL if p.parent.name == "linux"]


@pytest.mark.parametrize("path", LINUX, ids=lambda p: p.stem)
def test_linux_captures_have_no_mismatch(path):
    bad = []
    (r,) = replay([path], assume="as-recorded", check=True, on_mismatch=bad.append, progress=False)
    assert not bad, [str(m) for m in bad[:5]]
    assert r.passed + sum(r.unchecked.values()) == r.events


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cache_gives_the_full_model_counts(path):
    (fast,) = replay([path], progress=False)
    (full,) = replay([path], fast=False, progress=False)
    assert fast.routes == full.routes and fast.by_mnemonic == full.by_mnemonic
    assert full.full_model_events == full.events


def test_make_report_from_the_committed_traces(tmp_path):
    r = run_cli("report", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    assert {(ROOT / w["path"]).resolve() for w in rep["workloads"]} == {p.resolve() for p in ALL}
    assert all(not Path(w["path"]).is_absolute() for w in rep["workloads"])
    for row in rep["summary"]:
        assert row["firmware"] + row["kvm"] + row["userspace"] == row["events"]
    assert (tmp_path / "report.png").stat().st_size > 0
