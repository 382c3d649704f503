"""Creating and upgrading the pgjobs schema with alembic, online or as a SQL script.

Only this module (and the CLI's ``migrate`` command) imports alembic and SQLAlchemy's engine:
the compatibility check every command runs lives in :mod:`pgjobs.compat`, without them.
"""

from __future__ import annotations

import io
from importlib.resources import files
from typing import Any

from pgjobs.config import Settings
from pgjobs.connection import connect, resolve_dsn
from pgjobs.errors import InvalidInput
from pgjobs.schema_version import KNOWN_REVISIONS


def _alembic_config(schema: str, **attributes: Any) -> Any:
    from alembic.config import Config

    config = Config(output_buffer=attributes.pop("output_buffer", None))
    config.set_main_option("script_location", str(files("pgjobs.migrations")))
    config.attributes["schema"] = schema
    config.attributes.update(attributes)
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (head by default). Idempotent and safe to run from
    several processes at once (see ``migrations/env.py``). A database error (a role that
    may not create objects, say) is raised as psycopg's own, without SQLAlchemy's wrapper,
    so that commands report it in one line like every other database error."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    dsn = resolve_dsn(settings)
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: connect(settings, dsn=dsn, autocommit=False),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            config = _alembic_config(settings.schema, connection=connection)
            command.upgrade(config, revision)
            connection.commit()
    except DBAPIError as exc:
        if isinstance(exc.orig, BaseException):
            raise exc.orig from None
        raise
    finally:
        engine.dispose()


def sql_script(schema: str, from_revision: str | None = None) -> str:
    """The SQL that ``upgrade`` would run, for DBAs who apply it themselves.

    Without ``from_revision`` it creates everything from an empty database; with it, it
    upgrades a database currently at that revision to head.
    """
    from alembic import command

    if from_revision is not None and from_revision not in KNOWN_REVISIONS:
        known = ", ".join(KNOWN_REVISIONS)
        raise InvalidInput(f"unknown revision {from_revision!r}: known revisions are {known}")
    buffer = io.StringIO()
    config = _alembic_config(schema, output_buffer=buffer)
    target = "head" if from_revision is None else f"{from_revision}:head"
    command.upgrade(config, target, sql=True)
    return buffer.getvalue()
