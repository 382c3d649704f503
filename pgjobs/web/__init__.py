"""The HTTP API of pgjobs (``pgjobs serve``): an ASGI application built with FastAPI.

Needs the ``web`` extra (``pip install 'pgjobs[web]'``). :func:`create_app` builds the
application; ``docs/http.md`` documents the routes. Importing this package costs nothing
until ``create_app`` is used, so that :mod:`pgjobs.web.options` (what the CLI checks before
starting a server) works without FastAPI installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgjobs.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from pgjobs.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
