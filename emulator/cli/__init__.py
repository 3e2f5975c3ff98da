"""The ``zpci-emu`` command.

Each subcommand lives in ``emulator/cli/<name>.py`` with ``register(sub)``
(adds its parser and sets ``func``), so parts of the tool stay apart.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from emulator.errors import USAGE_EXIT, StdoutClosed, UserError, one_line

# A closed stdout (``zpci-emu ... | head``) ends the run quietly with the
# status a shell reports for a command SIGPIPE stopped, as other tools end.
BROKEN_PIPE_EXIT = 128 + 13
INTERNAL_EXIT = 70          # EX_SOFTWARE: a bug, not the user's input

# subcommand -> its module in emulator/cli/ ("import" is a Python keyword)
MODULES = {"decode": "decode", "boot": "boot", "replay": "replay", "report": "report",
           "trace": "trace", "import": "import_trace", "capture": "capture"}
COMMANDS = list(MODULES)


class Parser(argparse.ArgumentParser):
    """argparse with the tool's error contract: one line ``zpci-emu: <where>: <what>``
    and exit status 2, where argparse would print its usage text over several lines."""

    def error(self, message: str):
        where = self.prog.removeprefix("zpci-emu").strip() or None
        raise UserError(f"{message} (see {self.prog} --help)", where=where, exit_code=USAGE_EXIT)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; with ``only``, just that subcommand is registered.

    Registering a subcommand imports its module, and some pull in much of the
    tool; a run of one command should not pay for the others' start-up.
    """
    parser = Parser(
        prog="zpci-emu",
        description="Instruction-level emulator of s390x zPCI firmware interpretation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f"emulator.cli.{MODULES[name]}").register(sub)
    return parser


def fail(text: str) -> None:
    """The one line of an error on stderr."""
    print(one_line(f"zpci-emu: {text}"), file=sys.stderr, flush=True)


def _stdout_closed() -> int:
    # Python would flush stdout again at exit and report the same broken pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE_EXIT


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A file name from argv may hold a lone surrogate (a byte that is not
    # UTF-8): printed escaped, never a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.error(f"no command given (one of {', '.join(COMMANDS)})")
        rc = args.func(args)
        sys.stdout.flush()
    except (BrokenPipeError, StdoutClosed):
        return _stdout_closed()
    except UserError as exc:
        fail(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except MemoryError:
        fail("out of memory")
        return 1
    except Exception as exc:        # a bug: still one line, the traceback on request
        if os.environ.get("ZPCI_EMU_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (ZPCI_EMU_DEBUG=1 for a traceback)")
        return INTERNAL_EXIT
    return rc or 0


