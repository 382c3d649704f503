"""Exceptions raised by pgjobs.

Every error a user can cause carries a one-line message that says what is wrong and, where
there is one, what to do about it. The CLI prints ``str(error)`` and exits with
``error.exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations


class PgjobsError(Exception):
    """Base class of every error pgjobs raises on purpose."""

    #: Exit status the CLI uses for this error (2 is reserved for usage errors).
    exit_code: int = 1


class ConfigError(PgjobsError):
    """A setting (DSN, schema name, home directory...) is malformed."""

    exit_code = 2


class InvalidInput(PgjobsError):
    """A value given by the caller is malformed or out of range; nothing was stored."""

    exit_code = 2


class DatabaseUnavailable(PgjobsError):
    """The database cannot be reached, or refused the credentials."""

    exit_code = 3


class EmbeddedServerError(DatabaseUnavailable):
    """The embedded PostgreSQL server could not be used (refused, or failed to start)."""


class SchemaError(PgjobsError):
    """The database schema is not one this version of pgjobs can work with."""

    exit_code = 4


class SchemaNotMigrated(SchemaError):
    """The pgjobs schema does not exist yet in this database."""


class SchemaTooOld(SchemaError):
    """The database is migrated, but to a revision older than this code needs."""


class SchemaTooNew(SchemaError):
    """The database carries a breaking migration this code does not know."""


class NotFound(PgjobsError):
    """The object asked for (a job id, a schedule...) does not exist."""

    exit_code = 1


class JobFailed(PgjobsError):
    """The job waited for ended ``failed``; ``job`` is its final state."""

    def __init__(self, job: object, message: str) -> None:
        super().__init__(message)
        self.job = job


class JobCancelled(JobFailed):
    """The job waited for ended ``cancelled``."""


class WaitTimeout(PgjobsError, TimeoutError):
    """The job did not end within the time given to ``wait``."""

    exit_code = 124
