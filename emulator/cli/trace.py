"""``zpci-emu trace show|stats|index TRACE``: look inside a trace file, or index it."""
from __future__ import annotations

import json
import sys

from emulator.errors import quote, usage_error


def register(sub) -> None:
    p = sub.add_parser("trace", help="show a trace's events or count them")
    tsub = p.add_subparsers(dest="trace_cmd", metavar="ACTION", required=True)
    s = tsub.add_parser("show", help="print the events readably")
    s.add_argument("trace")
    s.add_argument("-v", "--verbose", action="store_true", help="also dump memory contents")
    s.add_argument("-n", "--limit", type=positive_int, metavar="N", help="stop after N events")
    s.set_defaults(func=run_show)
    t = tsub.add_parser("stats", help="print counts")
    t.add_argument("trace", nargs="+")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run_stats)
    x = tsub.add_parser("index", help="write a copy in zstd frames with a seek index, so "
                                       "replay --workers/--scheduler splits it (traces/FORMAT.md)")
    x.add_argument("trace")
    x.add_argument("-o", "--output", required=True, metavar="OUT")
    x.add_argument("--frame-mib", type=float, default=4.0,
                   help="record-stream MiB between seek points (default 4)")
    x.set_defaults(func=run_index)


def positive_int(text: str) -> int:
    """The argparse type of -n: a whole number of events, at least 1."""
    try:
        n = int(text, 10)
    except ValueError:
        n = 0
    if n < 1:
        raise usage_error(f"{quote(text)} is not a positive whole number", where="--limit")
    return n


def run_show(args) -> int:
    from emulator.trace.text import show
    show(args.trace, sys.stdout, verbose=args.verbose, limit=args.limit)
    return 0


def run_stats(args) -> int:
    from emulator.trace.text import stats
    results = [stats(p) for p in args.trace]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for st in results:
        print(f"{st['file']}: {st['source']} trace ({st['stream']}), workload {st['workload'] or '-'}, "
              f"{'zstd' if st['compressed'] else 'uncompressed'}")
        print(f"  functions {st['functions']}, events {st['events']}, marks {st['marks']}, notes {st['notes']}")
        if st["stream"] == "full":
            print(f"  blocks {st['blocks']}, block executions {st['block_executions']}, "
                  f"instructions {st['instructions']}")
        for m, n in st["by_mnemonic"].items():
            print(f"  {m:8} {n}")
        if st["by_phase"]:
            print("  by phase: " + ", ".join(f"{k or '(start)'}: {v}" for k, v in st["by_phase"].items()))
            for k, v in st["by_phase_mnemonic"].items():
                print(f"    {k or '(start)'}: " + ", ".join(f"{m} {n}" for m, n in v.items()))
        if st["by_cc"]:
            print("  by cc: " + ", ".join(f"{k}:{v}" for k, v in st["by_cc"].items()))
        for k in ("incomplete", "pgm-unknown", "program-exceptions"):
            if st.get(k):
                print(f"  {k}: {st[k]}")
    return 0


# a frame larger than this gives a split trace no seek points worth having
MAX_FRAME_MIB = 4096


def run_index(args) -> int:
    import os
    from emulator.errors import UserError
    from emulator.trace.seekindex import index_trace
    from emulator.io_safe import check_input, output_file
    if not 0 < args.frame_mib <= MAX_FRAME_MIB:
        raise UserError(f"--frame-mib must be above 0 and at most {MAX_FRAME_MIB}, "
                        f"not {args.frame_mib}", exit_code=2)
    if os.path.abspath(args.output) == os.path.abspath(args.trace):
        raise UserError("write the indexed copy to another file", where=args.output, exit_code=2)
    check_input(args.trace)
    # the copy is reserved before the work and renamed into place only when whole
    with output_file(args.output) as out:
        ix = index_trace(args.trace, out.path, every=int(args.frame_mib * (1 << 20)))
    print(f"{args.output}: {ix.events} events, {len(ix.points)} seek points, "
          f"{ix.nconfigs} configuration events in the index")
    return 0
