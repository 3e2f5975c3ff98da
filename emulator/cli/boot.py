"""``zpci-emu boot``: run a bare-metal s390x guest (a drop-in for qemu-system-s390x -kernel)."""
from __future__ import annotations

import argparse
import shlex
import sys

from emulator.errors import UserError


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
        print(f"zpci-emu: warning: {w}", file=sys.stderr)
    result = boot.run(parsed, argv_text="zpci-emu boot " + shlex.join(args.argv))
    if result.exit_code != 0:
        raise UserError(result.message or "guest stopped", where=parsed.kernel,
                        exit_code=result.exit_code)
    return 0
