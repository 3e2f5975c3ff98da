"""``zpci-emu report [TRACE...]``: exits saved per workload and policy."""
from __future__ import annotations

import contextlib
import math

from emulator.cli import workers
from emulator.errors import quote, usage_error


def register(sub) -> None:
    from emulator.report import DEFAULT_KVM_US, DEFAULT_USERSPACE_US
    p = sub.add_parser("report", help="replay traces under every policy and report exits saved")
    p.add_argument("traces", nargs="*", metavar="TRACE",
                   help="trace files (.zpt) or JSONL recordings; default: the bundled traces")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.csv and report.png here")
    p.add_argument("--cost-kvm-us", type=cost_us("--cost-kvm-us"), default=DEFAULT_KVM_US,
                   help=f"host time of one exit served in KVM (default {DEFAULT_KVM_US}, an assumption)")
    p.add_argument("--cost-userspace-us", type=cost_us("--cost-userspace-us"),
                   default=DEFAULT_USERSPACE_US,
                   help=f"host time of one exit served in userspace (default {DEFAULT_USERSPACE_US}, "
                        "an assumption)")
    p.add_argument("--assume", choices=("passthrough", "as-recorded"), default="passthrough",
                   help="functions as vfio passthrough (default) or as recorded")
    workers.add_options(p)
    p.set_defaults(func=run)


def cost_us(option: str):
    """The argparse type of a cost option: a finite number of microseconds, 0 to MAX_COST_US."""
    def parse(text: str) -> float:
        from emulator.report import MAX_COST_US, cost_ok
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not cost_ok(v):
            raise usage_error(f"{quote(text)} is not a number of microseconds from 0 to "
                              f"{MAX_COST_US:g}", where=option)
        return v
    return parse


def run(args) -> int:
    from emulator.report import CostModel, run_report
    ex = workers.executor(args)
    with ex if ex is not None else contextlib.nullcontext():
        run_report(args.traces, args.out, CostModel(args.cost_kvm_us, args.cost_userspace_us),
                   assume=args.assume, executor=ex)
    return 0
