"""The small connection pool behind :meth:`pgjobs.App.connection` (sync producers).

Why not psycopg_pool's ``ConnectionPool``: a single enqueue is one INSERT and its commit,
and a program enqueues between other work (a web request, say), so the checkout and the
return run with cold CPU caches. Measured that way (one enqueue, then one bare INSERT, in
turn: docs/benchmarks.md, run H), psycopg_pool's checkout and return (logging calls,
statistics, its maintenance machinery) cost 4-5 % of a single enqueue; a list under a lock
costs nothing measurable. What the App needs is small, and is all here: at most
``max_size`` connections, opened on demand; a bounded wait when all are out; a check of
a connection that sat idle (the server may have restarted meanwhile); and a connection
left broken, or inside a transaction it cannot roll back, never handed out again.
The async pool stays psycopg_pool's: nothing measured it on a hot path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

__all__ = ["Pool", "PoolTimeout"]


class PoolTimeout(Exception):
    """Every connection stayed out for the whole wait."""


class Pool:
    """At most ``max_size`` connections made by ``connect`` (autocommit ones), handed out
    most recently returned first (the warmest), each checked with an empty query when it
    idled longer than ``check_after`` seconds."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        max_size: int,
        timeout: float,
        check_after: float,
    ) -> None:
        if max_size < 1:
            raise ValueError("a pool needs room for at least one connection")
        self._connect = connect
        self.max_size = max_size
        self.timeout = timeout
        self.check_after = check_after
        #: Idle connections and when each came back (0.0: check it before use).
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._open = 0  # connections this pool made and has not closed, idle or out
        self._changed = threading.Condition(threading.Lock())
        self._closed = False

    def getconn(self) -> psycopg.Connection[Any]:
        """A connection for the caller alone until :meth:`putconn`. Raises
        :class:`PoolTimeout` after ``timeout`` seconds with every connection out, and what
        ``connect`` raises when a new one cannot be opened."""
        deadline: float | None = None
        while True:
            with self._changed:
                if self._closed:
                    raise PoolTimeout("the pool is closed")
                if self._idle:
                    conn, since = self._idle.pop()
                elif self._open < self.max_size:
                    self._open += 1
                    break
                else:
                    now = time.monotonic()
                    deadline = now + self.timeout if deadline is None else deadline
                    if now >= deadline or not self._changed.wait(deadline - now):
                        raise PoolTimeout(
                            f"all {self.max_size} connections stayed in use for "
                            f"{self.timeout:g}s (pool_size/pool_timeout of the App)"
                        )
                    continue
            if time.monotonic() - since <= self.check_after or self._alive(conn):
                return conn
            self._discard(conn)  # and take another, or open one
        try:
            return self._connect()
        except BaseException:
            self._forget_one()
            raise

    def putconn(self, conn: psycopg.Connection[Any], *, clean: bool = True) -> None:
        """Take ``conn`` back. ``clean=False`` (the caller's work on it failed): it is
        checked before its next use. A transaction left open is rolled back; a connection
        that is broken, or busy with a statement, is closed."""
        status = conn.pgconn.transaction_status
        if status != TransactionStatus.IDLE:
            if status not in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                self._discard(conn)  # UNKNOWN (broken) or ACTIVE (a COPY left midway)
                return
            try:
                conn.rollback()
            except psycopg.Error:
                self._discard(conn)
                return
        with self._changed:
            if not self._closed:
                self._idle.append((conn, time.monotonic() if clean else 0.0))
                self._changed.notify()
                return
        self._discard(conn)

    def close(self) -> None:
        """Close the idle connections now and those still out when they come back."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._changed.notify_all()
        for conn, _ in idle:
            self._discard(conn)

    def _alive(self, conn: psycopg.Connection[Any]) -> bool:
        try:
            conn.execute("")
        except psycopg.Error:
            return False
        return True

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        finally:
            self._forget_one()

    def _forget_one(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify()
