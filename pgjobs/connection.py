"""Connections: turning settings into a live psycopg connection, with one-line errors.

The CLI and other short-lived callers connect directly with a ``connect_timeout`` (never
through a pool that would wait 30 s for a dead server). Long-lived processes build pools on
top of :func:`resolve_dsn`.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import conninfo

from pgjobs.config import Settings
from pgjobs.embedded import ensure_running
from pgjobs.errors import DatabaseUnavailable


class BadDsn(DatabaseUnavailable):
    """The connection string itself cannot be parsed."""


def resolve_dsn(settings: Settings) -> str:
    """The libpq connection string to use: the configured one, or the embedded server's."""
    if settings.uses_embedded:
        return ensure_running(settings.home, explicit=settings.embedded_requested).uri
    assert settings.dsn is not None
    dsn = settings.dsn.strip()
    # SQLAlchemy-style URLs ("postgresql+psycopg://") are common in application settings;
    # libpq does not know the "+driver" suffix, so it is dropped here.
    dsn = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise BadDsn(f"invalid PGJOBS_DSN: {one_line(exc)}") from exc
    return dsn


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``: safe to print or log."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    if "password" in params:
        params["password"] = "***"
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def one_line(exc: BaseException) -> str:
    """Collapse libpq's multi-line messages into one line fit for a terminal or a log."""
    text = str(exc).strip()
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    line = "; ".join(parts) if parts else type(exc).__name__
    return re.sub(r"^connection failed: ", "", line)


def connect(
    settings: Settings,
    *,
    autocommit: bool = True,
    dsn: str | None = None,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a direct connection, translating failures into :class:`DatabaseUnavailable`.

    ``application_name`` identifies pgjobs in ``pg_stat_activity``; it is a startup
    parameter, not a ``SET``, so it is safe behind pgbouncer.
    """
    target = dsn if dsn is not None else resolve_dsn(settings)
    kwargs.setdefault("application_name", "pgjobs")
    kwargs.setdefault("prepare_threshold", settings.prepare_threshold)
    try:
        return psycopg.connect(
            target,
            autocommit=autocommit,
            connect_timeout=settings.connect_timeout,
            **kwargs,
        )
    except psycopg.ProgrammingError as exc:
        raise BadDsn(f"invalid PGJOBS_DSN: {one_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {one_line(exc)}") from exc
