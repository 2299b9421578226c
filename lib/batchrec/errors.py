"""Exception types that map one-to-one onto the CLI's exit codes.

Library code raises these and never calls ``sys.exit``; ``batchrec.cli.main`` catches them once,
prints one line on stderr and exits with :attr:`BatchrecError.exit_code`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class BatchrecError(Exception):
    """Base class of every error batchrec reports to the user."""

    exit_code = EXIT_FAILURE


class ConfigError(BatchrecError):
    """A configuration file, environment variable or flag is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class UsageError(BatchrecError):
    """The command line asks for something impossible, e.g. an out-of-range option (exit 2)."""

    exit_code = EXIT_USAGE


class DataError(BatchrecError):
    """Input data is missing, unreadable or fails validation (exit 1)."""

    exit_code = EXIT_FAILURE


class JobError(BatchrecError):
    """A job could not complete, e.g. a missing or corrupt solution version (exit 1)."""

    exit_code = EXIT_FAILURE
