"""Error types. A PipelineError is a problem the user can act on: the CLI prints its message
without a traceback and exits with its exit code. Anything else is a bug in this tool."""

import errno
from collections import Counter

EXIT_PASS = 0
EXIT_TOLERANCE = 1
EXIT_USAGE = 2
EXIT_CONVERSION = 3

# errno values that mean the output directory cannot take a run's files: full, read-only, not
# permitted, or a path through a file. The user's to fix (exit 2), not a conversion failure.
CANNOT_WRITE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EFBIG,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
    }
)


class PipelineError(Exception):
    """A failure with a message for the user. Subclasses set the exit code."""

    exit_code = EXIT_CONVERSION

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details  # what the stage found out before it failed, kept in the report


class UsageError(PipelineError):
    """Bad command line, config or model file (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    pass


class ModelFileError(UsageError):
    pass


class ConversionError(PipelineError):
    """A stage could not convert a valid model (exit 3)."""

    exit_code = EXIT_CONVERSION


class UnsupportedOpsError(ConversionError):
    def __init__(self, stage: str, tool: str, ops: Counter):
        listing = ", ".join(f"{op} x{count}" for op, count in sorted(ops.items()))
        super().__init__(f"{tool} cannot convert {sum(ops.values())} node(s) in stage '{stage}': {listing}")
        self.ops = dict(ops)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message: what a person needs in a one-line error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
