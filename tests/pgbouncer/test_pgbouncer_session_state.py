"""What goes wrong behind pgbouncer in transaction mode when a client keeps session state,
shown deterministically: the checks the other tests rely on do see leaked state, and
psycopg's default prepared statements fail as docs/pgbouncer.md says on pgbouncer < 1.21
(and work there with `max_prepared_statements` from 1.21 on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from support.bouncer import (
    FIRST_PREPARED_NAME,
    Bouncer,
    clean,
    held_advisory_locks,
    pooled_sessions,
)

import pgjobs

Conn = psycopg.Connection[Any]
StartBouncer = Callable[..., Bouncer]
TRACKING = (1, 21)


def test_the_checks_see_state_a_client_leaves_on_a_pooled_connection(
    start_bouncer: StartBouncer, pgjobs_conn: Conn
) -> None:
    bouncer = start_bouncer(pool_size=1)
    assert not clean(pooled_sessions(bouncer))
    with psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None) as careless:
        careless.execute("SET statement_timeout = '5s'")
        careless.execute("LISTEN leaked")
        careless.execute("SELECT pg_advisory_lock(42)")
        careless.execute("CREATE TEMPORARY TABLE leaked (x int)")
        careless.execute(f"PREPARE {FIRST_PREPARED_NAME} AS SELECT 1")
    # The client is gone; its server connection, with all that, is back in the pool.
    assert len(held_advisory_locks(pgjobs_conn)) == 1
    (session,) = pooled_sessions(bouncer).values()
    assert session.prepared == (FIRST_PREPARED_NAME,)
    assert session.listening == ("leaked",)
    assert ("statement_timeout", "5000") in session.settings
    assert (session.temp_tables, session.advisory_locks) == (1, 1)
    assert not session.first_prepare_ok
    report = clean({session.pid: session})
    for problem in ("prepared statements", "LISTEN", "session settings", "temporary tables"):
        assert problem in report


def enqueue(app: pgjobs.App, times: int) -> None:
    for n in range(times):
        app.enqueue("t", {"n": n})


def test_default_prepared_statements_collide_on_a_shared_server_connection(
    start_bouncer: StartBouncer, pgbouncer_version: tuple[int, ...]
) -> None:
    """Two producers with psycopg's default threshold behind one server connection: the
    first prepares its INSERT as `_pg3_0` there at its 6th run; the second, at its own
    6th run, tries to prepare the same name on the same server connection."""
    if pgbouncer_version >= TRACKING:
        pytest.skip("pgbouncer >= 1.21: see the max_prepared_statements test")
    bouncer = start_bouncer(pool_size=1)
    with (
        pgjobs.App(bouncer.dsn, prepare_threshold=5) as first,
        pgjobs.App(bouncer.dsn, prepare_threshold=5) as second,
    ):
        enqueue(first, 6)
        enqueue(second, 5)
        with pytest.raises(
            psycopg.errors.DuplicatePreparedStatement,
            match=f'prepared statement "{FIRST_PREPARED_NAME}" already exists',
        ):
            enqueue(second, 1)


def test_default_prepared_statements_go_missing_on_another_server_connection(
    start_bouncer: StartBouncer, pgbouncer_version: tuple[int, ...]
) -> None:
    """A producer prepared its INSERT on one server connection; its next transaction is
    given the other one (the first is busy), where that statement does not exist."""
    if pgbouncer_version >= TRACKING:
        pytest.skip("pgbouncer >= 1.21: see the max_prepared_statements test")
    bouncer = start_bouncer(pool_size=2)
    with pgjobs.App(bouncer.dsn, prepare_threshold=5) as app:
        enqueue(app, 6)  # the 6th run prepared the statement on one server connection
        holders = [psycopg.connect(bouncer.dsn, prepare_threshold=None) for _ in range(2)]
        try:
            # Both server connections held (one each, in a transaction); free the one that
            # does not have the statement.
            has_it = [
                FIRST_PREPARED_NAME
                in [r[0] for r in h.execute("SELECT name FROM pg_prepared_statements")]
                for h in holders
            ]
            assert sorted(has_it) == [False, True]
            holders[has_it.index(False)].rollback()
            with pytest.raises(
                psycopg.errors.InvalidSqlStatementName,
                match=f'prepared statement "{FIRST_PREPARED_NAME}" does not exist',
            ):
                enqueue(app, 1)
        finally:
            for holder in holders:
                holder.close()


def test_max_prepared_statements_lets_the_default_threshold_work(
    start_bouncer: StartBouncer, pgbouncer_version: tuple[int, ...]
) -> None:
    """pgbouncer >= 1.21 tracks protocol-level prepared statements when
    `max_prepared_statements` is set: psycopg's default threshold is then safe."""
    if pgbouncer_version < TRACKING:
        pytest.skip(
            f"pgbouncer {'.'.join(map(str, pgbouncer_version))} does not track prepared"
            " statements (1.21+ with max_prepared_statements does)"
        )
    bouncer = start_bouncer(pool_size=1, max_prepared_statements=100)
    with (
        pgjobs.App(bouncer.dsn, prepare_threshold=5) as first,
        pgjobs.App(bouncer.dsn, prepare_threshold=5) as second,
    ):
        for _ in range(3):
            enqueue(first, 4)
            enqueue(second, 4)
