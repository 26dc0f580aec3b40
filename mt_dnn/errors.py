"""The project's user-facing error: one line, no traceback, non-zero exit.

Anything a user can cause (a bad file, flag or folder) raises :class:`UserError` with a
message naming the file/line or flag and what was expected; the command-line entry points
print it as one line and exit with status 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message is printed as-is, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split("\n")))


class DataError(UserError):
    """A data file or data download that is missing, malformed or fails verification."""


class ConfigError(UserError):
    """A task definition, flag or option value that is not what was expected."""
