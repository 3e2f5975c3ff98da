"""The ``zpci-emu`` command.

Each subcommand lives in ``emulator/cmd_<name>.py`` with ``register(sub)``
(adds its parser and sets ``func``), so parts of the tool stay apart.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from emulator.errors import UserError

COMMANDS = ["decode", "boot", "replay", "report", "trace", "import", "capture"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zpci-emu",
        description="Instruction-level emulator of s390x zPCI firmware interpretation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"emulator.cmd_{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = args.func(args)
    except UserError as exc:
        print(f"zpci-emu: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("zpci-emu: interrupted", file=sys.stderr)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
