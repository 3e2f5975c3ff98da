"""``zpci-emu report``: exits per workload and policy, and what interpretation saves.

Every trace is replayed under every policy (emulator.replay, functions
assumed passed through unless told otherwise).  For each workload and policy
the report gives the zPCI instructions by mnemonic, where they were served
(firmware, kvm, userspace), the exits saved against intercept-all, and the
host time that saves under a cost model.

The cost model is an assumption, not a measurement: no per-exit cost has
been published for s390 (docs: kvm-zpci-history.md section 2).  The defaults
below are stated as such in every output and are overridden with
``--cost-kvm-us`` / ``--cost-userspace-us``.
"""
from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import UserError
from emulator.replay import BASELINE, ROUTES, WorkloadResult, replay

# Assumed costs of one exit, in microseconds of host time (see COST_BASIS).
DEFAULT_KVM_US = 2.0
DEFAULT_USERSPACE_US = 10.0
COST_BASIS = (
    "ASSUMED, not measured. No per-exit cost has been published for s390 "
    "(kvm-zpci-history.md 2.1: the interpretation series gives no figures; kvm-unit-tests "
    "s390x/exittime.c times intercepts but reports no results because they depend on the "
    "environment). Qualitative evidence only (2.2): under KVM/z/VM, RPCIT-driven IOTLB flushes "
    "are 'very expensive' and serialized, and dma-iommu performance 'plummets to about half'. "
    "An exit served in userspace adds the return to QEMU and back to an in-kernel exit, hence "
    "userspace > kvm. Override with --cost-kvm-us / --cost-userspace-us.")


@dataclass(frozen=True)
class CostModel:
    kvm_us: float = DEFAULT_KVM_US
    userspace_us: float = DEFAULT_USERSPACE_US
    basis: str = COST_BASIS

    def host_us(self, totals: dict[str, int]) -> float:
        return totals.get("kvm", 0) * self.kvm_us + totals.get("userspace", 0) * self.userspace_us


def repo_traces_dir() -> Path:
    here = Path("traces")                # relative: reports name traces as a clone does
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "traces"


def bundled_traces() -> list[Path]:
    d = repo_traces_dir()
    found = sorted(d.glob("*.zpt"))
    linux = d / "linux"
    if linux.is_dir():
        found += sorted(p for p in linux.iterdir() if p.suffix in (".zpt", ".jsonl"))
    return found


def _prepare(paths: list[Path], tmp: Path) -> list[Path]:
    """JSONL recordings are imported first (into tmp); traces are used as they are."""
    from emulator.trace.importer import import_jsonl
    out = []
    for i, p in enumerate(paths):
        if p.suffix == ".jsonl":
            dst = tmp / f"{i}-{p.stem}.zpt"        # recordings may share a name
            import_jsonl(p, dst, compress=False)
            out.append(dst)
        else:
            out.append(p)
    return out


def summarise(results: list[WorkloadResult], cost: CostModel) -> dict:
    rows = []
    for res in results:
        base = res.exits(BASELINE) if BASELINE in res.policies else None
        base_us = cost.host_us(res.route_totals(BASELINE)) if BASELINE in res.policies else None
        for p in res.policies:
            tot = res.route_totals(p)
            exits = res.exits(p)
            row = {"workload": res.workload, "trace": res.path, "policy": p, "events": res.events,
                   **tot, "exits": exits, "host_us": cost.host_us(tot)}
            if base is not None:
                row["exits_saved"] = base - exits
                row["exits_saved_pct"] = 100.0 * (base - exits) / base if base else 0.0
                row["host_us_saved"] = base_us - row["host_us"]
            rows.append(row)
    return {"cost_model": {"kvm_us": cost.kvm_us, "userspace_us": cost.userspace_us,
                           "basis": cost.basis},
            "baseline": BASELINE,
            "summary": rows,
            "workloads": [r.to_json() for r in results]}


def format_table(rep: dict) -> str:
    lines = []
    hdr = (f"{'workload':18} {'policy':15} {'events':>8} {'firmware':>9} {'kvm':>7} {'userspace':>9} "
           f"{'exits':>8} {'saved':>8} {'saved%':>7} {'host us saved':>14}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    last = None
    for r in rep["summary"]:
        wl = r["workload"] if r["workload"] != last else ""
        last = r["workload"]
        saved = r.get("exits_saved")
        lines.append(
            f"{wl[:18]:18} {r['policy']:15} {r['events']:>8} {r['firmware']:>9} {r['kvm']:>7} "
            f"{r['userspace']:>9} {r['exits']:>8} "
            + (f"{saved:>8} {r['exits_saved_pct']:>6.1f}% {r['host_us_saved']:>14.1f}"
               if saved is not None else f"{'-':>8} {'-':>7} {'-':>14}"))
    lines.append("")
    mnems = sorted({m for w in rep["workloads"] for m in w["by_mnemonic"]})
    lines.append(f"{'workload':18} " + " ".join(f"{m:>8}" for m in mnems) + f" {'guest insns':>12}")
    for w in rep["workloads"]:
        ins = w["instructions"]
        lines.append(f"{w['workload'][:18]:18} " + " ".join(f"{w['by_mnemonic'].get(m, 0):>8}" for m in mnems)
                     + f" {ins if ins is not None else '-':>12}")
    stand = {}
    for w in rep["workloads"]:
        for k in w.get("device_stand_ins", ()):
            stand.setdefault(k, []).append(w["workload"])
    for k, wls in sorted(stand.items()):
        lines.append(f"note: no device model for {k} ({', '.join(wls)}): a stand-in gives its BAR "
                     "layout; routes do not depend on it")
    cm = rep["cost_model"]
    lines.append("")
    lines.append(f"cost model: kvm exit {cm['kvm_us']} us, userspace exit {cm['userspace_us']} us "
                 f"-- {cm['basis']}")
    return "\n".join(lines)


def write_csv(rep: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "trace", "policy", "mnemonic", "events", "firmware", "kvm", "userspace",
                    "exits", "exits_saved", "exits_saved_pct",
                    # the per-exit costs behind these are assumptions (COST_BASIS): say so where
                    # the numbers go, a CSV carries no note
                    "host_us_at_assumed_cost", "host_us_saved_at_assumed_cost"])
        by_wl = {wl["path"]: wl for wl in rep["workloads"]}
        for r in rep["summary"]:
            wl = by_wl[r["trace"]]
            for m, routes in wl["routes"][r["policy"]].items():
                ex = routes.get("kvm", 0) + routes.get("userspace", 0)
                w.writerow([r["workload"], r["trace"], r["policy"], m, sum(routes.values()),
                            *(routes.get(x, 0) for x in ROUTES), ex, "", "", "", ""])
            w.writerow([r["workload"], r["trace"], r["policy"], "ALL", r["events"],
                        *(r[x] for x in ROUTES), r["exits"], r.get("exits_saved", ""),
                        "" if r.get("exits_saved_pct") is None else f"{r['exits_saved_pct']:.2f}",
                        f"{r['host_us']:.3f}",
                        "" if r.get("host_us_saved") is None else f"{r['host_us_saved']:.3f}"])


def write_png(rep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    workloads = []
    for r in rep["summary"]:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    policies = []
    for r in rep["summary"]:
        if r["policy"] not in policies:
            policies.append(r["policy"])
    rows = {(r["workload"], r["policy"]): r for r in rep["summary"]}
    x = np.arange(len(workloads))
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(workloads) + 2), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(policies):
        pos = x + (i - (len(policies) - 1) / 2) * width
        user = [rows[(w, p)]["userspace"] if (w, p) in rows else 0 for w in workloads]
        kvm = [rows[(w, p)]["kvm"] if (w, p) in rows else 0 for w in workloads]
        c = colors[i % len(colors)]
        # exits served by userspace solid, those the kernel serves hatched on top
        ax.bar(pos, [max(v, 0.8) for v in user], width, color=c, label=p)
        if any(kvm):
            ax.bar(pos, kvm, width, bottom=user, color=c, alpha=0.45, hatch="//",
                   label=f"{p} (kvm)")
    ax.set_xticks(x)
    ax.set_xticklabels(workloads, rotation=20, ha="right")
    ax.set_yscale("log")               # workloads differ by orders of magnitude
    ax.set_ylim(bottom=0.7)
    ax.set_ylabel("exits (userspace + kvm), log scale")
    ax.set_title("zPCI exits per workload and policy (replayed guest traces)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_report(traces: list[str] | None, out: str | None, cost: CostModel,
               assume: str = "passthrough", printer=print, executor=None) -> dict:
    """Replay the traces (the bundled ones when none are given) and report; ``executor``:
    an entered emulator.replay.parallel.Executor to replay on, None for this process."""
    paths = [Path(t) for t in traces] if traces else bundled_traces()
    if not paths:
        raise UserError(f"no traces given and none bundled in {repo_traces_dir()}")
    with tempfile.TemporaryDirectory(prefix="zpci-report-") as tmp:
        prepared = _prepare(paths, Path(tmp))
        if executor is None:
            results = replay(prepared, assume=assume)
        else:
            from emulator.replay import parallel
            results = parallel.replay(prepared, executor, assume=assume)
    for res, p in zip(results, paths):
        res.path = str(p)                       # the recording, not its temporary import
    rep = summarise(results, cost)
    printer(format_table(rep))
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        write_csv(rep, d / "report.csv")
        write_png(rep, d / "report.png")
        printer(f"\nwrote {d / 'report.json'}, {d / 'report.csv'}, {d / 'report.png'}")
    return rep
