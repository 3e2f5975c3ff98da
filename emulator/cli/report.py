"""``zpci-emu report [TRACE...]``: exits saved per workload and policy."""
from __future__ import annotations

import contextlib

from emulator.cli import workers
from emulator.errors import UserError


def register(sub) -> None:
    from emulator.report import DEFAULT_KVM_US, DEFAULT_USERSPACE_US
    p = sub.add_parser("report", help="replay traces under every policy and report exits saved")
    p.add_argument("traces", nargs="*", metavar="TRACE",
                   help="trace files (.zpt) or JSONL recordings; default: the bundled traces")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.csv and report.png here")
    p.add_argument("--cost-kvm-us", type=float, default=DEFAULT_KVM_US,
                   help=f"host time of one exit served in KVM (default {DEFAULT_KVM_US}, an assumption)")
    p.add_argument("--cost-userspace-us", type=float, default=DEFAULT_USERSPACE_US,
                   help=f"host time of one exit served in userspace (default {DEFAULT_USERSPACE_US}, "
                        "an assumption)")
    p.add_argument("--assume", choices=("passthrough", "as-recorded"), default="passthrough",
                   help="functions as vfio passthrough (default) or as recorded")
    workers.add_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from emulator.report import CostModel, run_report
    for name in ("cost_kvm_us", "cost_userspace_us"):
        v = getattr(args, name)
        if not v >= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a non-negative number, not {v}")
    ex = workers.executor(args)
    with ex if ex is not None else contextlib.nullcontext():
        run_report(args.traces, args.out, CostModel(args.cost_kvm_us, args.cost_userspace_us),
                   assume=args.assume, executor=ex)
    return 0
