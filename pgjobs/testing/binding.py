"""Pointing an application's App at a test database, and back.

Applications create their App once, at import time (``app = pgjobs.App()`` in a module),
with the production settings. A test must use that very object, since its tasks are
registered on it and ``task.enqueue()`` goes through it: :func:`bind_app` swaps its settings
for the test database's for the duration of a block, and restores them afterwards. Creating
an App connects nowhere, so importing the application's module in a test is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator

from pgjobs.app import App


def _close_pools(app: App) -> None:
    """Close the App's pools, so that its next use connects with its current settings.

    The async pool belongs to the event loop it was opened on, usually one that a test ran
    with ``asyncio.run`` and that is closed by now: it is closed on a fresh loop if that
    works, else dropped (the test database is dropped with its connections anyway)."""
    apool, app._apool = app._apool, None
    if apool is not None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with contextlib.suppress(Exception):
                asyncio.run(apool.close(timeout=1.0))
    app.close()


@contextlib.contextmanager
def bind_app(app: App, dsn: str, *, schema: str | None = None) -> Iterator[App]:
    """Within the block, ``app`` works against the database ``dsn`` (and ``schema``): its
    pools are closed before and after, its settings restored after. The App's tasks are
    published to that database first, as a worker does at start, so that jobs enqueued by
    name from SQL or the CLI get their task's queue, priority and attempts there too. ::

        with bind_app(myproject.jobs.app, test_dsn):
            ...
    """
    saved = (app.settings, app._dsn)
    _close_pools(app)
    app.settings = dataclasses.replace(app.settings, dsn=dsn, schema=schema or app.settings.schema)
    app._dsn = None  # the DSN the App checked (database and schema) is the old one
    try:
        if app.tasks:
            app.publish_tasks()
        yield app
    finally:
        _close_pools(app)
        app.settings, app._dsn = saved


__all__ = ["bind_app"]
