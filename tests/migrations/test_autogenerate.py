"""An application's alembic autogenerate, pointed at a database that also holds pgjobs, must
not propose to drop pgjobs' tables when it uses the documented hooks."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pgjobs.autogenerate import include_name, include_object


def app_metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True))
    return metadata


def diffs(dsn: str, **opts: Any) -> list[Any]:
    engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: __import__("psycopg").connect(dsn)
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE public.orders (id integer PRIMARY KEY)")
            context = MigrationContext.configure(conn, opts={"include_schemas": True, **opts})
            return compare_metadata(context, app_metadata())
    finally:
        engine.dispose()


def mentions_pgjobs(found: list[Any]) -> bool:
    return "pgjobs" in repr(found)


def test_without_a_hook_autogenerate_would_drop_pgjobs_tables(pgjobs_dsn: str) -> None:
    assert mentions_pgjobs(diffs(pgjobs_dsn)), "the hooks guard against a real problem"


@pytest.mark.parametrize("hook", ["include_name", "include_object"])
def test_hooks_hide_pgjobs(pgjobs_dsn: str, hook: str) -> None:
    opts = (
        {"include_name": include_name()}
        if hook == "include_name"
        else {"include_object": include_object()}
    )
    found = diffs(pgjobs_dsn, **opts)
    assert not mentions_pgjobs(found), found
