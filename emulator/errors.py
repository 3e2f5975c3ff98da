"""One-line errors for bad input: the CLI prints them and exits non-zero.

Every message the tool prints about the user's input may echo what the user
gave: a path, an option's value, a string out of a trace.  Such text can hold
a newline (which would split the one line the contract promises), other
control characters, or a lone surrogate (which no terminal encoding can
print).  ``one_line`` escapes all of them, and ``UserError`` applies it to
the whole message, so no caller has to remember.
"""
from __future__ import annotations

USAGE_EXIT = 2          # bad usage: an option's value, a missing argument
INPUT_EXIT = 1          # bad input: a file, its contents, a path that cannot be written


def one_line(text: str) -> str:
    """``text`` with every character that is not printable written as a Python
    escape (``\\n``, ``\\x1b``, ``\\u2028``, ``\\udcff``): one printable line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def quote(text) -> str:
    """User-supplied text as a message echoes it: in quotes, escaped by ``one_line``."""
    return "'" + one_line(str(text)).replace("'", "\\'") + "'"


class UserError(Exception):
    """Bad input from the user: a file, an option, a device string, a trace.

    ``where`` names the file (and offset or field) the problem is in.
    """

    def __init__(self, message: str, where: str | None = None, exit_code: int = INPUT_EXIT):
        super().__init__(message)
        self.message = message
        self.where = where
        self.exit_code = exit_code

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return one_line(text)


def usage_error(message: str, where: str | None = None) -> UserError:
    """A ``UserError`` for bad usage (exit status 2)."""
    return UserError(message, where=where, exit_code=USAGE_EXIT)


class StdoutClosed(UserError):
    """The reader of stdout went away (``zpci-emu boot ... | head``): the run
    stops quietly.  A UserError, so that code which ends a run on bad input
    (the CPU loop's callbacks) lets it through as it is."""

    def __init__(self):
        super().__init__("stdout was closed")
