"""One-line errors for bad input: the CLI prints them and exits non-zero."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, an option, a device string, a trace.

    ``where`` names the file (and offset or field) the problem is in.
    """

    def __init__(self, message: str, where: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.where = where
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message
