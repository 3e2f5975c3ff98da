"""``zpci-emu import FILE.jsonl -o TRACE``: a gdb-recorder JSONL to a trace file."""
from __future__ import annotations

from emulator.errors import quote, usage_error

MEMORY_LIMIT = 1 << 64      # the header's memory is a byte count of a 64-bit machine


def register(sub) -> None:
    p = sub.add_parser("import", help="convert a JSONL zPCI recording into a trace file")
    p.add_argument("jsonl", help="JSONL of the gdb recorder (linux-guest-traces.md)")
    p.add_argument("-o", "--output", required=True, help="trace file to write (.zpt)")
    p.add_argument("--no-compress", action="store_true", help="write the trace without zstd")
    p.add_argument("--memory", default="0", type=parse_size,
                   help="bound operand addresses to this guest memory size, e.g. 1024M (default 0: no "
                        "bound, as the recorder reads operands at the kernel's logical addresses)")
    p.add_argument("--workload", help="workload name for reports (default: the file's stem)")
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    """A byte count as ``-m`` takes it: N, 0xN, or N with K, M or G; 0 = no bound."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    try:
        value = int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t, 0)
    except ValueError:
        raise usage_error(f"bad memory size {quote(text)} (e.g. 1024M)", where="--memory") from None
    if not 0 <= value < MEMORY_LIMIT:
        raise usage_error(f"memory size {quote(text)} is outside 0 to 2**64-1 bytes",
                          where="--memory")
    return value


def run(args) -> int:
    from emulator.trace.importer import import_jsonl
    n = import_jsonl(args.jsonl, args.output, compress=not args.no_compress,
                     memory=args.memory, workload=args.workload)
    print(f"{args.output}: {n} zPCI events")
    return 0
