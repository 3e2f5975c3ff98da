"""The ``zpci-emu`` command.

Each subcommand lives in ``emulator/cli/<name>.py`` with ``register(sub)``
(adds its parser and sets ``func``), so parts of the tool stay apart.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from emulator.errors import UserError

# subcommand -> its module in emulator/cli/ ("import" is a Python keyword)
MODULES = {"decode": "decode", "boot": "boot", "replay": "replay", "report": "report",
           "trace": "trace", "import": "import_trace", "capture": "capture"}
COMMANDS = list(MODULES)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; with ``only``, just that subcommand is registered.

    Registering a subcommand imports its module, and some pull in much of the
    tool; a run of one command should not pay for the others' start-up.
    """
    parser = argparse.ArgumentParser(
        prog="zpci-emu",
        description="Instruction-level emulator of s390x zPCI firmware interpretation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f"emulator.cli.{MODULES[name]}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
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


