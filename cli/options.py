"""Options shared by the commands, and the settings they resolve to."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click
import psycopg

from pgjobs.compat import ensure_compatible
from pgjobs.config import Settings
from pgjobs.connection import connect
from pgjobs.durations import parse_duration, parse_timestamp
from pgjobs.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


def database_options(command: F) -> F:
    """Add ``--dsn``, ``--schema`` and ``--home``: each overrides its PGJOBS_* variable."""
    command = click.option(
        "--home",
        metavar="DIR",
        help="Data directory of the embedded server (env PGJOBS_HOME).",
    )(command)
    command = click.option(
        "--schema",
        metavar="NAME",
        help="Schema holding pgjobs' tables (env PGJOBS_SCHEMA, default: pgjobs).",
    )(command)
    return click.option(
        "--dsn",
        metavar="DSN",
        help="PostgreSQL connection string or URL (env PGJOBS_DSN; unset: the embedded "
        "server; 'embedded' asks for it explicitly).",
    )(command)


def settings_from(dsn: str | None, schema: str | None, home: str | None) -> Settings:
    return Settings.from_env(dsn=dsn, schema=schema, home=home)


@contextlib.contextmanager
def checked_connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A direct autocommit connection to a database whose schema this pgjobs can use."""
    with connect(settings) as conn:
        ensure_compatible(conn, settings.schema)
        yield conn


@contextlib.contextmanager
def database(
    dsn: str | None, schema: str | None, home: str | None
) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """The checked connection, and the schema, that a command's database options name."""
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings) as conn:
        yield conn, settings.schema


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """A value parsed by one of pgjobs' parsers; its InvalidInput becomes a usage error
    (exit 2) naming the option."""

    def __init__(self, name: str, parse: Callable[..., Any], kind: type) -> None:
        self.name = name
        self.parse = parse
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.kind):
            return value
        try:
            return self.parse(value, field=param.name if param and param.name else self.name)
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)


class JsonObject(click.ParamType):  # type: ignore[type-arg]
    """A JSON object given on the command line (``'{"to": "a@example.com"}'``)."""

    name = "json"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"invalid JSON {value!r}: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(
                f'args must be a JSON object like \'{{"key": "value"}}\', got {type(parsed).__name__}',
                param,
                ctx,
            )
        return parsed


#: Job ids are PostgreSQL bigints: anything else is a usage error, not a database error.
JOB_ID = click.IntRange(1, 2**63 - 1)
#: ``30``, ``30s``, ``5m``, ``2h``, ``1d``.
DURATION = Parsed("duration", parse_duration, timedelta)
#: ISO 8601; without an offset, UTC.
TIMESTAMP = Parsed("timestamp", parse_timestamp, datetime)
JSON_OBJECT = JsonObject()


def _keep(value: str | timedelta, *, field: str = "duration") -> timedelta | None:
    if isinstance(value, str) and value.strip().lower() in ("forever", "never", "none"):
        return None
    return parse_duration(value, field=field)


#: A retention age, or ``forever``.
KEEP = Parsed("duration|forever", _keep, timedelta)
