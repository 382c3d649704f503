"""pytest plugin of pgjobs (entry point ``pytest11: pgjobs``), loaded by pytest by itself
wherever pgjobs is installed.

Loading it costs nothing: the server starts only when a test asks for one of its fixtures.

Fixtures:

- ``pgjobs_server`` (session): the PostgreSQL server of the test session, the embedded one in
  a temporary directory or the one named by ``PGJOBS_TEST_DSN``.
- ``pgjobs_databases`` (session): the factory of databases cloned from a migrated template.
- ``pgjobs_dsn``: a fresh migrated database for this test (dropped afterwards).
- ``pgjobs_settings``: :class:`pgjobs.config.Settings` pointing at it.
- ``pgjobs_conn``: an autocommit psycopg connection to it.
- ``pgjobs_bind``: a function that points an App at this test's database until the test
  ends (see :func:`pgjobs.testing.bind_app`).
- ``pgjobs_app``: the App under test, on this test's database. By default a new App without
  tasks; override it in your ``conftest.py`` to return your own::

      @pytest.fixture
      def pgjobs_app(pgjobs_bind):
          return pgjobs_bind(myproject.jobs.app)

- ``pgjobs_eager``: eager mode on ``pgjobs_app`` for the whole test (see
  :func:`pgjobs.testing.eager`); the fixture's value lists the runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgjobs.app import App
from pgjobs.config import Settings
from pgjobs.testing import (
    DatabaseFactory,
    Eager,
    TestServer,
    bind_app,
    eager,
    isolated_database,
    start_test_server,
)


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


@pytest.fixture
def pgjobs_bind(
    pgjobs_dsn: str, pgjobs_databases: DatabaseFactory
) -> Iterator[Callable[[App], App]]:
    """``pgjobs_bind(app)`` points ``app`` at this test's database and returns it; its own
    settings come back when the test ends."""
    with contextlib.ExitStack() as bound:

        def bind(app: App) -> App:
            if not isinstance(app, App):
                raise TypeError(f"pgjobs_bind takes a pgjobs.App, got {type(app).__name__}")
            return bound.enter_context(bind_app(app, pgjobs_dsn, schema=pgjobs_databases.schema))

        yield bind


@pytest.fixture
def pgjobs_app(pgjobs_bind: Callable[[App], App]) -> App:
    """The App under test, on this test's database: a new App without tasks unless your
    ``conftest.py`` overrides this fixture to return ``pgjobs_bind(your_app)``."""
    return pgjobs_bind(App())


@pytest.fixture
def pgjobs_eager(pgjobs_app: App) -> Iterator[Eager]:
    """Eager mode on ``pgjobs_app`` for the whole test: every enqueue runs its job at once."""
    with eager(pgjobs_app) as mode:
        yield mode
