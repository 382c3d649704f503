"""``pgjobs serve``: the HTTP API under uvicorn.

Everything that can be refused is refused before the server starts, in one line: malformed
options and an unsafe bind (exit 2), a missing ``web`` extra (exit 1), an unreachable
database or a schema to migrate (exits 3 and 4, as every command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pgjobs.errors import ConfigError, InvalidInput

from .options import Parsed, checked_connection, database_options, settings_from

#: Fixed by the specification (pgjobs.web.options reads it).
ENV_API_TOKENS = "PGJOBS_API_TOKENS"

SERVE_EPILOG = """\b
Examples:
  pgjobs serve                                  http://127.0.0.1:8000, no token needed
  PGJOBS_API_TOKENS="$(openssl rand -hex 32)" pgjobs serve --host 0.0.0.0 --workers 2
  pgjobs serve --api-tokens-file /run/secrets/pgjobs-tokens --host 0.0.0.0
  pgjobs serve --port 9000 --max-body 4MB       bigger job arguments

\b
Then:
  curl -X POST localhost:8000/jobs -H 'Content-Type: application/json' \\
       -d '{"task": "emails.send", "args": {"to": "a@example.com"}}'
  curl -N localhost:8000/jobs/1/events          follow a job (server-sent events)
  open http://localhost:8000/docs               the API reference (OpenAPI)

With PGJOBS_API_TOKENS (comma-separated) every route but /healthz needs
'Authorization: Bearer <token>'. Without tokens the server listens on a
loopback address only, unless --insecure. Reference: docs/http.md.
"""


def _parse_size(value: str, *, field: str) -> int:
    # Imported here, like everything of pgjobs.web: the other commands never load it.
    from pgjobs.web.options import parse_size

    return parse_size(value, field=field)


SIZE = Parsed("size", _parse_size, int)
MISSING_EXTRA = "the HTTP API needs the web extra: pip install 'pgjobs[web]'"
#: The distributions the ``web`` extra brings (and what they import).
WEB_EXTRA_MODULES = frozenset({"fastapi", "uvicorn", "starlette", "pydantic", "pydantic_core"})


def _tokens(tokens_file: Path | None) -> tuple[str, ...]:
    from pgjobs.web.options import parse_tokens, tokens_from_env

    if tokens_file is None:
        return tokens_from_env()
    try:
        text = tokens_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(
            f"--api-tokens-file: cannot read {tokens_file}: {exc.strerror}"
        ) from None
    return parse_tokens(",".join(text.split()))


@click.command(epilog=SERVE_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes (each has its own database pool and events listener).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help=f"Listen on a non-loopback address without {ENV_API_TOKENS}: anyone who reaches "
    "the port can enqueue, cancel and read every job.",
)
@click.option(
    "--max-body",
    type=SIZE,
    default="1MB",
    metavar="SIZE",
    help="Largest request body: bytes, or 512KB, 1MB (powers of 1024). Default: 1MB.",
)
@click.option(
    "--api-tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help=f"Read the bearer tokens from FILE (separated by commas, blanks or lines) "
    f"instead of {ENV_API_TOKENS}, which stays out of the process list.",
)
@database_options
def serve(
    host: str,
    port: int,
    workers: int,
    insecure: bool,
    max_body: int,
    api_tokens_file: Path | None,
    dsn: str | None,
    schema: str | None,
    home: str | None,
) -> None:
    """Run the HTTP API: submit jobs, follow them (SSE), manage queues, /metrics."""
    from pgjobs.web.options import WebOptions, is_loopback

    try:
        tokens = _tokens(api_tokens_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not tokens and not insecure and not is_loopback(host):
        raise click.UsageError(
            f"refusing to listen on {host} without API tokens: set {ENV_API_TOKENS} (or "
            "--api-tokens-file), listen on 127.0.0.1, or pass --insecure"
        )
    try:
        options = WebOptions(tokens=tokens, max_body=max_body)
    except (ConfigError, InvalidInput) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        import uvicorn  # noqa: F401

        from pgjobs.web import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in WEB_EXTRA_MODULES:
            raise
        raise click.ClickException(MISSING_EXTRA) from None
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings):
        pass  # a wrong DSN or a schema to migrate fails here, in one line
    if not tokens:
        click.echo(
            f"pgjobs: no {ENV_API_TOKENS}: the API is open to anyone who reaches {host}:{port}",
            err=True,
        )
    logging: dict[str, Any] = click.get_current_context().find_root().params
    server.serve(
        server.Listen(host, port, workers),
        settings,
        options,
        log_format=logging.get("log_format"),
        log_level=logging.get("log_level"),
    )
