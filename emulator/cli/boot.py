"""``zpci-emu boot``: run a bare-metal s390x guest (a drop-in for qemu-system-s390x -kernel)."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from emulator.errors import StdoutClosed, UserError, one_line
from emulator.io_safe import outputs


def register(sub) -> None:
    # '+' as the only prefix character hands every single-dash QEMU option
    # through untouched: emulator.qemu_args parses them, argparse cannot.
    p = sub.add_parser("boot", prefix_chars="+", add_help=False,
                       help="boot a bare-metal s390x ELF like qemu-system-s390x -kernel",
                       description="Boot a bare-metal s390x ELF under unicorn with the zPCI "
                                   "firmware model; takes qemu-system-s390x's arguments.")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=main)


def main(args) -> int:
    from emulator.cpu import boot
    from emulator import qemu_args

    parsed = qemu_args.parse(list(args.argv))
    if parsed.help:
        sys.stdout.write(qemu_args.usage())
        return 0
    for w in parsed.warnings:
        print(one_line(f"zpci-emu: warning: {w}"), file=sys.stderr)
    # --stats and --trace are written when the guest's run ends, however it
    # ends (the stats say how); an error before that leaves neither.
    with outputs(parsed.stats, parsed.trace) as (stats, trace):
        run_args = dataclasses.replace(parsed, stats=stats and stats.path,
                                       trace=trace and trace.path)
        result = boot.run(run_args, out=_Console(sys.stdout.buffer),
                          argv_text="zpci-emu boot " + shlex.join(args.argv))
    if result.exit_code != 0:
        raise UserError(result.message or "guest stopped", where=parsed.kernel,
                        exit_code=result.exit_code)
    return 0


class _Console:
    """The guest's console on stdout; a reader that went away stops the run quietly."""

    def __init__(self, out):
        self._out = out

    def write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except BrokenPipeError:
            raise StdoutClosed() from None

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            raise StdoutClosed() from None
