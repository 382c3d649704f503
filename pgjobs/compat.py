"""Is this database's pgjobs schema one this code can work with?

Called by every command before it does anything, and by workers at start. One short query,
no alembic import, and a one-line answer that names the command to run when the answer is no.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgjobs.errors import SchemaNotMigrated, SchemaTooNew, SchemaTooOld
from pgjobs.schema_version import BREAKING_LEVEL, KNOWN_REVISIONS, MINIMUM_REVISION


@dataclass(frozen=True)
class SchemaState:
    """What the database says about its pgjobs schema."""

    schema: str
    revision: str | None
    breaking_level: int | None

    @property
    def migrated(self) -> bool:
        return self.revision is not None

    @property
    def known(self) -> bool:
        return self.revision in KNOWN_REVISIONS

    @property
    def pending(self) -> tuple[str, ...]:
        """Revisions this code ships that the database does not have yet."""
        if self.revision is None:
            return KNOWN_REVISIONS
        if not self.known:
            return ()
        return KNOWN_REVISIONS[KNOWN_REVISIONS.index(self.revision) + 1 :]


def read_state(conn: psycopg.Connection[Any], schema: str) -> SchemaState:
    """Read the revision and breaking level without failing on a missing schema."""
    table = f"{schema}.alembic_version"
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return SchemaState(schema, None, None)
    query = sql.SQL(
        "SELECT (SELECT version_num FROM {s}.alembic_version LIMIT 1),"
        " (SELECT (value #>> '{{}}')::integer FROM {s}.settings WHERE name = 'breaking_level')"
    ).format(s=sql.Identifier(schema))
    row = conn.execute(query).fetchone()
    assert row is not None
    return SchemaState(schema, row[0], row[1])


def ensure_compatible(conn: psycopg.Connection[Any], schema: str) -> SchemaState:
    """Raise a :class:`~pgjobs.errors.SchemaError` unless this code can use the schema."""
    state = read_state(conn, schema)
    if state.revision is None:
        raise SchemaNotMigrated(
            f"the database has no pgjobs schema {schema!r} yet: run `pgjobs migrate`"
        )
    if state.known:
        if KNOWN_REVISIONS.index(state.revision) < KNOWN_REVISIONS.index(MINIMUM_REVISION):
            raise SchemaTooOld(
                f"the pgjobs schema {schema!r} is at revision {state.revision}, this pgjobs "
                f"needs {MINIMUM_REVISION} or newer: run `pgjobs migrate`"
            )
        return state
    if (state.breaking_level or 0) > BREAKING_LEVEL:
        raise SchemaTooNew(
            f"the pgjobs schema {schema!r} is at revision {state.revision}, migrated by a newer "
            "pgjobs with a breaking change: upgrade pgjobs on this machine"
        )
    return state
