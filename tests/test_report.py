"""zpci-emu report: tables, files, the cost model."""
import csv
import json

import pytest

from _helpers import run_cli
from emulator.report import COST_BASIS, CostModel, run_report
from test_replay_scenario import record_ops, record_scenario


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    a, b = d / "scenario.zpt", d / "ops.zpt"
    record_scenario(a, rounds=6)
    record_ops(b, ["reg_ioat"] + ["load", "store", "rpcit", "stale", "sic"] * 10)
    return [a, b]


def test_report_files_and_figures(traces, tmp_path):
    out = tmp_path / "out"
    lines = []
    run_report([str(t) for t in traces], str(out), CostModel(3.0, 17.0), printer=lines.append)
    for name in ("report.json", "report.csv", "report.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    js = json.loads((out / "report.json").read_text())
    assert js["cost_model"] == {"kvm_us": 3.0, "userspace_us": 17.0, "basis": COST_BASIS}
    rows = {(r["trace"], r["policy"]): r for r in js["summary"]}
    assert len(rows) == 2 * 4
    for wl in js["workloads"]:
        base = rows[(wl["path"], "intercept-all")]
        assert base["exits"] == wl["events"] and base["userspace"] == wl["events"]
        for p in ("linux-6.0", "ioat-assist", "firmware-rpcit"):
            r = rows[(wl["path"], p)]
            assert r["firmware"] + r["kvm"] + r["userspace"] == wl["events"]
            assert r["exits_saved"] == base["exits"] - r["exits"]
            assert r["exits_saved_pct"] == pytest.approx(100 * r["exits_saved"] / base["exits"])
            assert r["host_us"] == pytest.approx(3.0 * r["kvm"] + 17.0 * r["userspace"])
            assert r["host_us_saved"] == pytest.approx(base["host_us"] - r["host_us"])
        # interpretation saves exits on these workloads; the RPCIT variants save more or move them
        assert rows[(wl["path"], "linux-6.0")]["exits_saved"] > 0
        assert rows[(wl["path"], "firmware-rpcit")]["exits"] < rows[(wl["path"], "linux-6.0")]["exits"]
    with open(out / "report.csv") as f:
        table = list(csv.DictReader(f))
    # one row shape: every row is one workload, policy and mnemonic, every column filled
    assert table and all(all(v != "" for v in t.values()) for t in table)
    assert len({(t["trace"], t["policy"], t["mnemonic"]) for t in table}) == len(table)
    for r in js["summary"]:
        parts = [t for t in table if t["trace"] == r["trace"] and t["policy"] == r["policy"]]
        for col in ("events", "firmware", "kvm", "userspace", "exits", "exits_saved"):
            assert sum(int(t[col]) for t in parts) == r[col], col
        assert sum(float(t["host_us_at_assumed_cost"]) for t in parts) == pytest.approx(r["host_us"])
        assert sum(float(t["host_us_saved_at_assumed_cost"]) for t in parts) == \
            pytest.approx(r["host_us_saved"])
        assert {(t["assumed_kvm_exit_us"], t["assumed_userspace_exit_us"]) for t in parts} == \
            {("3.0", "17.0")}
    text = "\n".join(lines)
    assert "ASSUMED" in text and "intercept-all" in text and "RPCIT" in text


def test_cli_report(traces, tmp_path):
    r = run_cli("report", *traces, "--out", tmp_path / "o", "--cost-kvm-us", "1",
                "--cost-userspace-us", "4")
    assert r.returncode == 0, r.stderr
    assert "cost model: kvm exit 1.0 us, userspace exit 4.0 us" in r.stdout
    r = run_cli("report", traces[0], "--cost-kvm-us", "-1")
    assert r.returncode == 2 and "--cost-kvm-us" in r.stderr     # bad usage


def test_report_imports_jsonl_recordings(tmp_path):
    from test_import import DOC_RECORD
    src = tmp_path / "linux-sample.jsonl"
    src.write_text(json.dumps(DOC_RECORD) + "\n")
    rep = run_report([str(src)], None, CostModel(), printer=lambda s: None)
    (wl,) = rep["workloads"]
    assert wl["source"] == "import" and wl["events"] == 1 and wl["by_mnemonic"] == {"PCILG": 1}
    assert [r["exits"] for r in rep["summary"] if r["policy"] == "intercept-all"] == [1]


def test_report_jsonl_recordings_with_one_name(tmp_path):
    """Two recordings named alike are two workloads (the second import used to
    overwrite the first), each reported under its own path."""
    from test_import import DOC_RECORD
    srcs = []
    for sub, n in (("a", 1), ("b", 2)):
        (tmp_path / sub).mkdir()
        src = tmp_path / sub / "rec.jsonl"
        src.write_text("".join(json.dumps(dict(DOC_RECORD, seq=9 + i)) + "\n" for i in range(n)))
        srcs.append(str(src))
    rep = run_report(srcs, None, CostModel(), printer=lambda s: None)
    assert [(w["path"], w["events"]) for w in rep["workloads"]] == [(srcs[0], 1), (srcs[1], 2)]
    assert sorted(r["trace"] for r in rep["summary"] if r["policy"] == "intercept-all") == srcs


def test_png_shows_split_host_time_and_numbers(traces):
    """report.png: per workload, one bar per policy on linear axes; the exits bar is
    userspace + KVM, the host-time bar is those at the assumed costs, each with its numbers."""
    from matplotlib.patches import Rectangle
    from emulator.report import png_figure
    cost = CostModel(3.0, 17.0)
    rep = run_report([str(t) for t in traces], None, cost, printer=lambda s: None)
    fig = png_figure(rep)
    # one row of panels per trace (the two fixture traces share a workload name)
    workloads = list(dict.fromkeys(r["trace"] for r in rep["summary"]))
    axes = fig.axes
    assert len(axes) == 2 * len(workloads)
    for wi, wl in enumerate(workloads):
        rows = [r for r in rep["summary"] if r["trace"] == wl]
        for col, (k_kvm, k_user) in enumerate(((1, 1), (cost.kvm_us, cost.userspace_us))):
            ax = axes[2 * wi + col]
            assert ax.get_xscale() == "linear"
            widths = [p.get_width() for p in ax.patches if isinstance(p, Rectangle)]
            # userspace segments first, then the KVM ones stacked after them
            assert widths == pytest.approx([r["userspace"] * k_user for r in rows]
                                           + [r["kvm"] * k_kvm for r in rows])
            texts = [t.get_text() for t in ax.texts]
            assert len(texts) == len(rows)
            for r, text in zip(rows, texts):
                if col == 0:
                    assert text.startswith(f"{r['exits']}  (QEMU {r['userspace']}, KVM {r['kvm']})")
                    if r["exits_saved"]:
                        assert f"saved {r['exits_saved']} " in text
                else:
                    assert text.startswith(f"{r['host_us']:,.0f} us")
                    if r["host_us_saved"]:
                        assert f"saved {r['host_us_saved']:,.0f} us" in text
    titles = " ".join(ax.get_title() for ax in axes)
    assert "ASSUMED" in titles and "3 us" in titles and "17 us" in titles
