"""Running the HTTP API under uvicorn, as ``pgjobs serve`` does.

With ``--workers N`` uvicorn starts N processes that each import the application by name,
so the command's options travel to them in one private environment variable
(:data:`ENV_SERVE`), read by :func:`app_from_environment`; the database settings travel
as the usual ``PGJOBS_*`` variables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fastapi import FastAPI

from pgjobs import log
from pgjobs.config import ENV_DSN, ENV_HOME, ENV_SCHEMA, Settings
from pgjobs.web.app import create_app
from pgjobs.web.options import WebOptions

#: Private: set by ``pgjobs serve`` for its server processes, not a setting for users.
ENV_SERVE = "_PGJOBS_SERVE"
#: On SIGTERM, open connections (SSE streams never end by themselves) get this long to
#: finish before they are closed; EventSource clients reconnect to another server.
GRACEFUL_SHUTDOWN_SECONDS = 5


def app_from_environment() -> FastAPI:
    """The application described by :data:`ENV_SERVE` and the ``PGJOBS_*`` variables."""
    values = json.loads(os.environ.get(ENV_SERVE) or "{}")
    # A process started by uvicorn for --workers has not run the CLI's logging setup.
    log.configure(values.get("log_format"), values.get("log_level"))
    return create_app(
        Settings.from_env(),
        tokens=tuple(values.get("tokens", ())),
        max_body=int(values.get("max_body", WebOptions.max_body)),
    )


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    workers: int = 1


def serve(
    listen: Listen,
    settings: Settings,
    options: WebOptions,
    *,
    log_format: str | None = None,
    log_level: str | None = None,
) -> None:
    """Run uvicorn until SIGTERM or SIGINT (this process's environment is handed on)."""
    import uvicorn

    if settings.dsn is not None:
        os.environ[ENV_DSN] = settings.dsn
    os.environ[ENV_SCHEMA] = settings.schema
    os.environ[ENV_HOME] = str(settings.home)
    os.environ[ENV_SERVE] = json.dumps(
        {
            "tokens": options.tokens,
            "max_body": options.max_body,
            "log_format": log_format,
            "log_level": log_level,
        }
    )
    uvicorn.run(
        "pgjobs.web.server:app_from_environment",
        factory=True,
        host=listen.host,
        port=listen.port,
        workers=listen.workers,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
