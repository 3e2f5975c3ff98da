"""``zpci-emu import FILE.jsonl -o TRACE``: a gdb-recorder JSONL to a trace file."""
from __future__ import annotations

from emulator.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("import", help="convert a JSONL zPCI recording into a trace file")
    p.add_argument("jsonl", help="JSONL of the gdb recorder (linux-guest-traces.md)")
    p.add_argument("-o", "--output", required=True, help="trace file to write (.zpt)")
    p.add_argument("--no-compress", action="store_true", help="write the trace without zstd")
    p.add_argument("--memory", default="0",
                   help="bound operand addresses to this guest memory size, e.g. 1024M (default 0: no "
                        "bound, as the recorder reads operands at the kernel's logical addresses)")
    p.add_argument("--workload", help="workload name for reports (default: the file's stem)")
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t, 0)
    except ValueError:
        raise UserError(f"bad memory size {text!r}", where="--memory") from None


def run(args) -> int:
    from emulator.trace.importer import import_jsonl
    n = import_jsonl(args.jsonl, args.output, compress=not args.no_compress,
                     memory=parse_size(args.memory), workload=args.workload)
    print(f"{args.output}: {n} zPCI events")
    return 0
