"""Test support for pgjobs and for applications that use it (``docs/testing.md``).

- :func:`drain` / :func:`drain_async`: run the jobs that are ready, inline, through the
  worker's own claim, executor and completer, and get one :class:`JobRun` per run.
- :func:`enqueued_jobs`, :func:`assert_enqueued`, :func:`assert_not_enqueued`: what was
  enqueued, with messages that show what the database holds when nothing matches.
- :func:`eager`: a block in which every enqueue through an App runs the job at once.
- :func:`bind_app`: point an application's App at a test database for a while.

The pytest plugin (:mod:`pgjobs.testing.plugin`, registered as an entry point) gives every
test an isolated, migrated database cloned from a template, on the embedded server or on the
server named by ``PGJOBS_TEST_DSN``, and the App fixtures built on it. The pieces it is made
of (:func:`start_test_server`, :class:`DatabaseFactory`, :func:`isolated_database`) work
without pytest too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo, sql

from pgjobs import embedded
from pgjobs.config import Settings
from pgjobs.testing.assertions import assert_enqueued, assert_not_enqueued, enqueued_jobs
from pgjobs.testing.binding import bind_app
from pgjobs.testing.drain import DrainIncomplete, JobRun, drain, drain_async
from pgjobs.testing.eager import Eager, eager

T = TypeVar("T")

ENV_TEST_DSN = "PGJOBS_TEST_DSN"


class WaitTimeout(AssertionError):
    """A condition awaited by :func:`wait_for` did not become true in time."""


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Fails with :class:`WaitTimeout` naming ``message`` (or what the callable returns, computed
    at failure time so it can show the state that was seen) after ``timeout`` seconds. This
    is a bounded wait on an observable event, not a sleep that hopes something happened.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"after {timeout:.1f}s: {text}")
        time.sleep(interval)


@dataclass
class TestServer:
    """A PostgreSQL server for a test session: its admin DSN, and how to stop it."""

    __test__ = False  # not a pytest test class

    dsn: str
    kind: str
    _cleanup: Callable[[], None] = field(default=lambda: None, repr=False)

    def dsn_for(self, database: str) -> str:
        return conninfo.make_conninfo(self.dsn, dbname=database)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def stop(self) -> None:
        self._cleanup()


def start_test_server() -> TestServer:
    """``PGJOBS_TEST_DSN`` if set, else a throwaway embedded server in a temporary directory.

    The throwaway server runs with ``fsync=off``: its data is deleted at the end anyway, and
    tests then spend their time on pgjobs rather than on the disk.
    """
    dsn = os.environ.get(ENV_TEST_DSN)
    if dsn:
        return TestServer(dsn=dsn, kind="external")
    home = Path(tempfile.mkdtemp(prefix="pgjobs-test-"))
    server = embedded.ensure_running(home, explicit=True)
    with psycopg.connect(server.uri, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")

    def cleanup() -> None:
        with contextlib.suppress(Exception):
            embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)

    return TestServer(dsn=server.uri, kind="embedded", _cleanup=cleanup)


@dataclass
class DatabaseFactory:
    """Clones a migrated template database: one fresh database per test, in milliseconds."""

    server: TestServer
    schema: str = "pgjobs"
    prefix: str = field(default_factory=lambda: f"pgjobs_t{uuid.uuid4().hex[:8]}")
    _template: str | None = None
    _created: list[str] = field(default_factory=list)

    @property
    def template(self) -> str:
        if self._template is None:
            self._template = self._build_template()
        return self._template

    def _build_template(self) -> str:
        from pgjobs.migrate import upgrade

        name = f"{self.prefix}_template"
        with self.server.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        upgrade(Settings(dsn=self.server.dsn_for(name), schema=self.schema))
        return name

    def create(self, *, migrated: bool = True) -> str:
        """Create a database (a clone of the migrated template, or empty) and return its DSN."""
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        template = self.template if migrated else "template0"
        with self.server.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        self._created.append(name)
        return self.server.dsn_for(name)

    def drop(self, dsn: str) -> None:
        name = conninfo.conninfo_to_dict(dsn)["dbname"]
        with self.server.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
            )

    def drop_all(self) -> None:
        with self.server.admin() as conn:
            for name in reversed(self._created):
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
        self._created.clear()


@contextlib.contextmanager
def isolated_database(factory: DatabaseFactory, *, migrated: bool = True) -> Iterator[str]:
    """A fresh database for the duration of the block; dropped afterwards."""
    dsn = factory.create(migrated=migrated)
    try:
        yield dsn
    finally:
        factory.drop(dsn)


__all__ = [
    "DatabaseFactory",
    "DrainIncomplete",
    "Eager",
    "JobRun",
    "TestServer",
    "WaitTimeout",
    "assert_enqueued",
    "assert_not_enqueued",
    "bind_app",
    "drain",
    "drain_async",
    "eager",
    "enqueued_jobs",
    "isolated_database",
    "start_test_server",
    "wait_for",
]
