"""pytest plugin of pgjobs (entry point ``pytest11: pgjobs``).

Loading it costs nothing: the server starts only when a test asks for one of its fixtures.

Fixtures:

- ``pgjobs_server`` (session): the PostgreSQL server of the test session, the embedded one in
  a temporary directory or the one named by ``PGJOBS_TEST_DSN``.
- ``pgjobs_databases`` (session): the factory of databases cloned from a migrated template.
- ``pgjobs_dsn``: a fresh migrated database for this test (dropped afterwards).
- ``pgjobs_settings``: :class:`pgjobs.config.Settings` pointing at it.
- ``pgjobs_conn``: an autocommit psycopg connection to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs.config import Settings
from pgjobs.testing import DatabaseFactory, TestServer, isolated_database, start_test_server


@pytest.fixture(scope="session")
def pgjobs_server() -> Iterator[TestServer]:
    server = start_test_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgjobs_databases(pgjobs_server: TestServer) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(pgjobs_server)
    try:
        yield factory
    finally:
        factory.drop_all()


@pytest.fixture
def pgjobs_dsn(pgjobs_databases: DatabaseFactory) -> Iterator[str]:
    with isolated_database(pgjobs_databases) as dsn:
        yield dsn


@pytest.fixture
def pgjobs_settings(pgjobs_dsn: str, pgjobs_databases: DatabaseFactory) -> Settings:
    return Settings(dsn=pgjobs_dsn, schema=pgjobs_databases.schema)


@pytest.fixture
def pgjobs_conn(pgjobs_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
        yield conn
