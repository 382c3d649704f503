"""A database connection that comes back by itself after the server restarts or the network
drops: each service of the worker owns one."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg

from pgjobs.connection import one_line
from pgjobs.log import get_logger

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0


class Reconnecting:
    """Hands out one autocommit connection; a broken one is replaced, with backoff."""

    def __init__(
        self,
        name: str,
        dsn: Callable[[], str],
        *,
        connect_timeout: int,
        prepare_threshold: int | None,
    ) -> None:
        self.name = name
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._prepare_threshold = prepare_threshold
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._log = get_logger("pgjobs.worker", connection=name)
        self.reconnects = 0

    async def get(
        self, stopping: Callable[[], bool] = lambda: False
    ) -> psycopg.AsyncConnection[Any]:
        """The live connection, connecting (and retrying with backoff) when needed."""
        delay = BACKOFF_MIN
        while self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._dsn(), autocommit=True, connect_timeout=self._connect_timeout,
                    prepare_threshold=self._prepare_threshold, application_name=f"pgjobs worker {self.name}",
                )  # fmt: skip
                if self.reconnects:
                    self._log.info("db.reconnected")
            except psycopg.OperationalError as exc:
                if stopping():
                    raise
                self.reconnects += 1
                self._log.warning("db.unavailable", error=one_line(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)
        return self._conn

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The connection for one operation; a connection error marks it for replacement."""
        conn = await self.get()
        try:
            yield conn
        except psycopg.OperationalError:
            await self.discard()
            raise

    async def discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
            self.reconnects += 1

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
