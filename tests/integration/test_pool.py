"""The App's producer pool (pgjobs.pool) against a real server: its bound and wait, what
it does with connections left dirty or broken, and closing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs.pool import Pool, PoolTimeout


@pytest.fixture
def make_pool(pgjobs_dsn: str) -> Iterator[Any]:
    pools: list[Pool] = []

    def make(max_size: int = 2, timeout: float = 5.0, check_after: float = 60.0) -> Pool:
        pool = Pool(
            lambda: psycopg.connect(pgjobs_dsn, autocommit=True),
            max_size=max_size,
            timeout=timeout,
            check_after=check_after,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_at_most_max_size_connections_then_a_timeout_that_says_why(make_pool: Any) -> None:
    pool = make_pool(max_size=2, timeout=0.2)
    first, second = pool.getconn(), pool.getconn()
    assert first is not second
    with pytest.raises(PoolTimeout, match=r"all 2 connections stayed in use for 0\.2s"):
        pool.getconn()
    pool.putconn(second)
    assert pool.getconn() is second


def test_a_waiting_caller_gets_the_connection_given_back(make_pool: Any) -> None:
    pool = make_pool(max_size=1, timeout=10.0)
    held = pool.getconn()
    got: list[psycopg.Connection[Any]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.getconn()))
    waiter.start()
    pool.putconn(held)
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "the waiting caller never got the returned connection"
    assert got == [held]


def test_a_transaction_left_open_is_rolled_back_on_return(make_pool: Any) -> None:
    pool = make_pool(max_size=1)
    conn = pool.getconn()
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE left_open (a int)")
    pool.putconn(conn, clean=False)
    again = pool.getconn()
    assert again is conn
    assert again.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    row = again.execute("SELECT to_regclass('pg_temp.left_open')").fetchone()
    assert row == (None,)


def test_a_connection_that_failed_is_checked_and_replaced(
    make_pool: Any, pgjobs_conn: psycopg.Connection[Any]
) -> None:
    pool = make_pool(max_size=1, check_after=60.0)
    conn = pool.getconn()
    dead_pid = backend_pid(conn)
    pgjobs_conn.execute("SELECT pg_terminate_backend(%s)", (dead_pid,))
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    pool.putconn(conn, clean=False)  # broken: closed, its slot freed
    fresh = pool.getconn()
    assert backend_pid(fresh) != dead_pid


def test_a_connection_idle_past_check_after_is_checked_before_use(
    make_pool: Any, pgjobs_conn: psycopg.Connection[Any]
) -> None:
    pool = make_pool(max_size=1, check_after=0.0)
    conn = pool.getconn()
    dead_pid = backend_pid(conn)
    pool.putconn(conn)
    pgjobs_conn.execute("SELECT pg_terminate_backend(%s)", (dead_pid,))
    fresh = pool.getconn()  # the check finds it dead and opens another
    assert backend_pid(fresh) != dead_pid


def test_a_failed_connect_frees_its_slot() -> None:
    attempts: list[int] = []

    def refuse() -> psycopg.Connection[Any]:
        attempts.append(1)
        raise psycopg.OperationalError("refused")

    pool = Pool(refuse, max_size=1, timeout=0.1, check_after=60.0)
    for _ in range(2):  # a leaked slot would make the second call a PoolTimeout
        with pytest.raises(psycopg.OperationalError, match="refused"):
            pool.getconn()
    assert len(attempts) == 2


def test_close_closes_idle_connections_now_and_the_others_on_return(make_pool: Any) -> None:
    pool = make_pool(max_size=2)
    out, idle = pool.getconn(), pool.getconn()
    pool.putconn(idle)
    pool.close()
    assert idle.closed
    assert not out.closed
    pool.putconn(out)
    assert out.closed
    with pytest.raises(PoolTimeout, match="closed"):
        pool.getconn()


def test_the_app_reports_an_exhausted_pool_as_database_unavailable(pgjobs_dsn: str) -> None:
    app = pgjobs.App(pgjobs_dsn, pool_size=1, pool_timeout=0.1)
    try:
        with (
            app.connection(),
            pytest.raises(pgjobs.DatabaseUnavailable, match=r"no database connection within 0\.1s"),
        ):
            app.enqueue("pool.held")
        assert app.enqueue("pool.free").id > 0  # given back: usable again
    finally:
        app.close()
