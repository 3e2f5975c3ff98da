"""``zpci-emu replay TRACE...``: run recorded zPCI instructions through the model."""
from __future__ import annotations

import json
import sys

from emulator.cli import workers
from emulator.errors import quote, usage_error


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay traces through the firmware model under policies")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--policy", action="append", type=policy_name, metavar="POLICY",
                   help="policy name or 'all' (intercept-all, linux-6.0, ioat-assist, "
                        "firmware-rpcit); repeat for several; default all")
    p.add_argument("--assume", choices=("passthrough", "as-recorded"), default="passthrough",
                   help="treat functions as vfio passthrough enabled for interpretation (default), "
                        "or keep the handles as recorded (emulated functions always intercept)")
    p.add_argument("--check", action="store_true",
                   help="compare every event's result with the recording; list each mismatch")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    workers.add_options(p)
    p.set_defaults(func=run)


def policy_name(text: str) -> str:
    """The argparse type of --policy: a policy's name or 'all'."""
    from firmware_model.policy import POLICY_NAMES
    if text != "all" and text not in POLICY_NAMES:
        raise usage_error(f"unknown policy {quote(text)} (choose from "
                          f"{', '.join(POLICY_NAMES)}, all)", where="--policy")
    return text


def run(args) -> int:
    from emulator.replay import replay
    chosen = args.policy or ["all"]
    policies = None if "all" in chosen else list(dict.fromkeys(chosen))
    mismatches = []

    def on_mismatch(m):
        mismatches.append(m)
        if not args.json:
            print(f"MISMATCH {m}")

    ex = workers.executor(args)
    if ex is None:
        results = replay(args.traces, policies=policies, assume=args.assume, check=args.check,
                         on_mismatch=on_mismatch)
    else:
        from emulator.replay import parallel
        with ex:
            results = parallel.replay(args.traces, ex, policies=policies, assume=args.assume,
                                      check=args.check, on_mismatch=on_mismatch)
    if args.json:
        out = [r.to_json() for r in results]
        if args.check:
            for o in out:
                o["mismatches"] = [vars(m) for m in mismatches if m.path == o["path"]]
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            print(f"{r.path}: {r.workload} ({r.source}, {r.stream}): {r.events} zPCI events"
                  + (f", {r.instructions} guest instructions" if r.instructions is not None else ""))
            print("  " + ", ".join(f"{m} {n}" for m, n in sorted(r.by_mnemonic.items())))
            if r.stand_ins:
                print(f"  no device model for {', '.join(r.stand_ins)}: a memory-backed stand-in "
                      "serves its BAR layout (decisions do not depend on it)")
            for p in r.policies:
                t = r.route_totals(p)
                print(f"  {p:15} firmware {t['firmware']:>8}  kvm {t['kvm']:>8}  "
                      f"userspace {t['userspace']:>8}  exits {r.exits(p):>8}")
            if args.check:
                print(f"  check: {r.checked} checked, {r.passed} passed, {r.mismatched} mismatched, "
                      f"{sum(r.unchecked.values())} unchecked"
                      + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(r.unchecked.items())) + ")"
                         if r.unchecked else ""))
    if args.check and any(r.mismatched for r in results):
        return 1
    return 0
