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
import math
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import UserError
from emulator.io_safe import check_input, output_folder
from emulator.replay import BASELINE, ROUTES, WorkloadResult, replay
from emulator.report_irq import add_interrupt_columns, cell as irq_cell

REPORT_FILES = ("report.json", "report.csv", "report.png")
# A cost per exit above this (1000 s) is no cost model; below it every sum stays finite.
MAX_COST_US = 1e9
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


def cost_ok(us: float) -> bool:
    """A cost per exit the report can use: finite, 0 to MAX_COST_US."""
    return math.isfinite(us) and 0 <= us <= MAX_COST_US


@dataclass(frozen=True)
class CostModel:
    kvm_us: float = DEFAULT_KVM_US
    userspace_us: float = DEFAULT_USERSPACE_US
    basis: str = COST_BASIS

    def __post_init__(self):
        for name in ("kvm_us", "userspace_us"):
            v = getattr(self, name)
            if not cost_ok(v):
                raise ValueError(f"{name} must be a number from 0 to {MAX_COST_US:g}, not {v}")

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
           f"{'exits':>8} {'saved':>8} {'saved%':>7} {'host us saved':>14} {'irq skip host':>13}")
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
               if saved is not None else f"{'-':>8} {'-':>7} {'-':>14}")
            + f" {irq_cell(r):>13}")
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
    lines.append("irq skip host: adapter interrupts delivered with no host code running / all, "
                 "from the recording run ('-': the trace has no interrupt record)")
    lines.append(f"cost model: kvm exit {cm['kvm_us']} us, userspace exit {cm['userspace_us']} us "
                 f"-- {cm['basis']}")
    return "\n".join(lines)


CSV_COLUMNS = ("workload", "trace", "policy", "mnemonic", "events", "firmware", "kvm",
               "userspace", "exits", "exits_saved", "exits_saved_pct",
               # the per-exit costs behind these are assumptions (COST_BASIS): say so where
               # the numbers go, a CSV carries no note
               "host_us_at_assumed_cost", "host_us_saved_at_assumed_cost",
               "assumed_kvm_exit_us", "assumed_userspace_exit_us",
               # per workload and policy (the recording's interrupts are not per mnemonic);
               # "-" where the trace holds no interrupt record
               "interrupts", "interrupts_skip_host")


def csv_rows(rep: dict) -> list[dict]:
    """One row per workload, policy and mnemonic, every column filled.

    The savings of a mnemonic are against the same mnemonic under the
    baseline policy; a workload's totals are the sums of its rows (the
    summary in report.json holds them as well).
    """
    cm = rep["cost_model"]
    cost = CostModel(cm["kvm_us"], cm["userspace_us"])
    irqs = {(r["trace"], r["policy"]): r for r in rep["summary"]}
    rows = []
    for wl in rep["workloads"]:
        by_policy = wl["routes"]
        base = by_policy.get(rep["baseline"])
        mnemonics = sorted({m for routes in by_policy.values() for m in routes})
        for policy, routes_of in by_policy.items():
            for m in mnemonics:
                routes = {x: routes_of.get(m, {}).get(x, 0) for x in ROUTES}
                exits = routes["kvm"] + routes["userspace"]
                host = cost.host_us(routes)
                b = {x: base.get(m, {}).get(x, 0) for x in ROUTES} if base is not None else routes
                b_exits = b["kvm"] + b["userspace"]
                rows.append({
                    "workload": wl["workload"], "trace": wl["path"], "policy": policy,
                    "mnemonic": m, "events": sum(routes.values()), **routes, "exits": exits,
                    "exits_saved": b_exits - exits,
                    "exits_saved_pct": f"{100.0 * (b_exits - exits) / b_exits:.2f}" if b_exits
                    else "0.00",
                    "host_us_at_assumed_cost": f"{host:.3f}",
                    "host_us_saved_at_assumed_cost": f"{cost.host_us(b) - host:.3f}",
                    "assumed_kvm_exit_us": cost.kvm_us,
                    "assumed_userspace_exit_us": cost.userspace_us,
                    **{k: "-" if irqs.get((wl["path"], policy), {}).get(k) is None
                       else irqs[(wl["path"], policy)][k]
                       for k in ("interrupts", "interrupts_skip_host")}})
    return rows


def write_csv(rep: dict, path: Path) -> None:
    with open(path, "w", newline="", errors="backslashreplace") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(csv_rows(rep))


# report.png: what is served where, and what it costs
PNG_SEGMENTS = (("userspace", "exit to QEMU (userspace)", "#c44e52", ""),
                ("kvm", "exit served in KVM", "#dd8452", "///"))


def write_png(rep: dict, path: Path) -> None:
    fig = png_figure(rep)           # selects the Agg backend before pyplot is used
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=100)
    plt.close(fig)


def png_figure(rep: dict):
    """report.png's figure: one row of panels per workload, one bar per policy, linear scales.

    Left: the exits, split into those QEMU serves and those KVM serves, with
    the count on each bar and the exits saved against the baseline.  Right:
    the host time those exits cost at the assumed per-exit costs, with the
    time saved.  Each workload has its own axes: the workloads differ by
    orders of magnitude, and a shared or log axis hides the split.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = rep["cost_model"]
    cost = CostModel(cm["kvm_us"], cm["userspace_us"])
    # a panel per trace; two traces of one workload name are told apart by their path
    workloads = list(dict.fromkeys(r["trace"] for r in rep["summary"]))
    policies = list(dict.fromkeys(r["policy"] for r in rep["summary"]))
    rows = {(r["trace"], r["policy"]): r for r in rep["summary"]}
    names = {r["trace"]: r["workload"] for r in rep["summary"]}
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    titles = {t: f"{n}\n{Path(t).name}" if n in shared else n for t, n in names.items()}
    fig, axes = plt.subplots(len(workloads), 2, squeeze=False,
                             figsize=(13, 1.05 + 0.42 * len(policies) * len(workloads)))
    for wi, wl in enumerate(workloads):
        present = [p for p in policies if (wl, p) in rows]
        ys = list(range(len(present)))[::-1]
        for col, scale, unit in ((0, {"kvm": 1, "userspace": 1}, "exits"),
                                 (1, {"kvm": cost.kvm_us, "userspace": cost.userspace_us}, "us")):
            ax = axes[wi][col]
            left = [0.0] * len(present)
            for key, label, color, hatch in PNG_SEGMENTS:
                width = [rows[(wl, p)][key] * scale[key] for p in present]
                ax.barh(ys, width, left=left, color=color, hatch=hatch, edgecolor="white",
                        height=0.7, label=label if wi == 0 and col == 0 else None)
                left = [a + b for a, b in zip(left, width)]
            top = max(left) or 1.0
            for y, p, total in zip(ys, present, left):
                ax.text(total + top * 0.01, y, _bar_label(rows[(wl, p)], col, total),
                        va="center", fontsize=7.5)
            ax.set_xlim(0, top * (2.0 if col == 0 else 1.6))
            ax.set_yticks(ys)
            ax.set_yticklabels(present if col == 0 else [""] * len(present), fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", alpha=0.3)
            ax.set_axisbelow(True)
        axes[wi][0].set_ylabel(titles[wl], rotation=0, ha="right", va="center", fontsize=9,
                               fontweight="bold", labelpad=80)
    axes[0][0].set_title("exits per run (linear; each workload its own scale)", fontsize=10)
    axes[0][1].set_title(f"host time of those exits (us) at ASSUMED costs:\n"
                         f"{cost.kvm_us:g} us per exit served in KVM, {cost.userspace_us:g} us "
                         f"per exit to QEMU", fontsize=10)
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("zPCI exits by policy, replayed guest traces; saved = against "
                 f"{rep['baseline']}", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.98))
    return fig


def _bar_label(row: dict, col: int, total: float) -> str:
    """The numbers a bar carries: its total, its split, and what it saves."""
    if col == 0:
        text = f"{row['exits']}  (QEMU {row['userspace']}, KVM {row['kvm']})"
        saved = row.get("exits_saved")
        if saved:
            text += f"  saved {saved} ({row['exits_saved_pct']:.0f}%)"
        return text
    text = f"{total:,.0f} us"
    saved = row.get("host_us_saved")
    if saved:
        text += f"  saved {saved:,.0f} us"
    return text


def run_report(traces: list[str] | None, out: str | None, cost: CostModel,
               assume: str = "passthrough", printer=print, executor=None) -> dict:
    """Replay the traces (the bundled ones when none are given) and report; ``executor``:
    an entered emulator.replay.parallel.Executor to replay on, None for this process."""
    paths = [Path(t) for t in traces] if traces else bundled_traces()
    if not paths:
        raise UserError(f"no traces given and none bundled in {repo_traces_dir()}")
    for p in paths:
        check_input(p)
    # The outputs are reserved before the replay and renamed into place only
    # when all three are written: a failed report leaves none of them.
    with output_folder(out, REPORT_FILES) if out is not None else nullcontext(()) as files:
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
        add_interrupt_columns(rep, assume)
        printer(format_table(rep))
        if files:
            json_out, csv_out, png_out = files
            # allow_nan=False: a non-finite number is a bug, never invalid JSON on disk
            Path(json_out.path).write_text(json.dumps(rep, indent=2, allow_nan=False) + "\n")
            write_csv(rep, Path(csv_out.path))
            write_png(rep, Path(png_out.path))
    if out is not None:
        d = Path(out)
        printer("\nwrote " + ", ".join(str(d / n) for n in REPORT_FILES))
    return rep
