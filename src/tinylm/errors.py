"""The one exception type for mistakes a user can make, the one line a failed read or write is told in, and the
exception of a run stopped by a signal."""

from __future__ import annotations

import errno
from pathlib import Path


class TinyLMError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do.

    The CLI prints it as one line and exits with `exit_code` (2 for usage errors, 1 otherwise).
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(TinyLMError):
    """A bad command-line value or config key (exit status 2)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


class TinyLMWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one line)."""


def os_error_line(e: OSError) -> str:
    """One line for a failed read or write: what happened, where, and what to do."""
    where = Path(e.filename) if getattr(e, "filename", None) else None
    folder = where.parent if where is not None and where.suffix else where
    if e.errno == errno.ENOSPC:
        return (f"the disk is full: cannot write in {folder}; free space there (or point --results-dir or --data-dir "
                "elsewhere) and run again; every file already written is complete")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot write in {folder} ({e.strerror.lower()}); choose a writable --results-dir or --data-dir, "
                "or fix the folder's permissions")
    if e.errno == errno.ENOTDIR:
        return f"a file stands where a folder is needed ({where}); pass a folder, or move the file away"
    if e.errno == errno.EISDIR:
        return f"{where} is a folder where a file is needed; pass a file"
    return f"{e.strerror or e} ({where}); fix that and run again"


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving its state."""

    def __init__(self, message: str, exit_code: int, run_dir: Path):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir
