"""The one exception type for mistakes a user can make."""


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
