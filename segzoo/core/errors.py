"""segzoo's user-facing errors: one family, so that callers and the CLI can tell a user's mistake from a bug.

Every error segzoo raises about its input (a setting, a file, a name, a shape, data) is a :class:`SegzooError`.
Each class also derives from the built-in exception it refines, so ``except ValueError`` keeps working. The
``segzoo`` command prints a ``SegzooError`` as one line and exits with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = [
    "SegzooError", "InvalidValueError", "InvalidTypeError", "MissingFileError", "NotAFolderError",
    "UnknownNameError", "OutputExistsError", "DownloadError", "WriteError",
]


class SegzooError(Exception):
    """Base of the errors about a user's input; its message names the culprit and what was expected."""


class InvalidValueError(SegzooError, ValueError):
    """A setting, file content, shape or data value segzoo cannot use."""


class InvalidTypeError(SegzooError, TypeError):
    """An argument of the wrong kind, or an unknown keyword."""


class MissingFileError(SegzooError, FileNotFoundError):
    """A file or folder that should exist does not."""


class NotAFolderError(SegzooError, NotADirectoryError):
    """A path that should be a folder is a file."""


class UnknownNameError(SegzooError, KeyError):
    """A name that is not registered (model, encoder, decoder, weights tag)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class OutputExistsError(SegzooError, FileExistsError):
    """An output that exists and would be overwritten; the message names the flag that allows it."""


class DownloadError(SegzooError, OSError):
    """A download that could not be made (offline, unreachable, refused)."""


class WriteError(SegzooError, OSError):
    """An output that could not be written (no space left, no permission); what was there before is intact."""
