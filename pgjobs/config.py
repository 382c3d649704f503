"""Validated settings shared by every pgjobs process.

Values come, in order of precedence, from explicit arguments (CLI flags, ``App(...)``
keywords), then environment variables, then defaults. Validation happens here, once, so that
a malformed value is reported with the name of the field that carries it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pgjobs.errors import ConfigError

SCHEMA_DEFAULT = "pgjobs"
#: Lower-case identifiers only, so the schema never needs quoting in hand-written SQL, and at
#: most 50 characters, so that notification channel names derived from it stay below
#: PostgreSQL's 63-byte identifier limit.
SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
CONNECT_TIMEOUT_DEFAULT = 5
#: The value of ``PGJOBS_DSN`` (or ``--dsn``) that asks for the embedded server explicitly,
#: which is how one uses it where the implicit fallback is refused (containers in production).
EMBEDDED_DSN = "embedded"

ENV_DSN = "PGJOBS_DSN"
ENV_HOME = "PGJOBS_HOME"
ENV_SCHEMA = "PGJOBS_SCHEMA"
ENV_PREPARE_THRESHOLD = "PGJOBS_PREPARE_THRESHOLD"
ENV_LISTEN_DSN = "PGJOBS_LISTEN_DSN"
#: The value of ``PGJOBS_LISTEN_DSN`` that turns LISTEN off (waiting re-reads instead).
LISTEN_OFF = "off"
#: psycopg's default: a statement run this many times on a connection is prepared there.
PREPARE_THRESHOLD_DEFAULT = 5


def parse_prepare_threshold(value: str) -> int | None:
    """``PGJOBS_PREPARE_THRESHOLD``: a count of executions before a statement is prepared
    on the server, or ``off`` (never: for poolers in transaction mode that do not track
    prepared statements, such as pgbouncer before 1.21)."""
    text = value.strip().lower()
    if text in ("off", "none", "never"):
        return None
    try:
        threshold = int(text)
    except ValueError:
        threshold = -1
    if threshold < 0:
        raise ConfigError(
            f"{ENV_PREPARE_THRESHOLD} must be a number of executions (0 or more) or 'off', "
            f"got {value!r}"
        )
    return threshold


def default_home() -> Path:
    """The per-user data directory of the embedded server (``$XDG_DATA_HOME/pgjobs``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "pgjobs"


def validate_schema(name: str) -> str:
    """Return ``name`` if it is an acceptable schema name, else raise :class:`ConfigError`."""
    if not SCHEMA_PATTERN.match(name):
        raise ConfigError(
            f"invalid schema name {name!r}: use 1-50 characters among a-z, 0-9 and _, "
            "not starting with a digit"
        )
    return name


@dataclass(frozen=True)
class Settings:
    """Where the database is and which schema pgjobs lives in.

    ``dsn`` is ``None`` when nothing was configured: the embedded server is then used, if the
    environment allows it (see :mod:`pgjobs.embedded`).
    """

    dsn: str | None = None
    schema: str = SCHEMA_DEFAULT
    home: Path = field(default_factory=default_home)
    connect_timeout: int = CONNECT_TIMEOUT_DEFAULT
    #: Server-side prepared statements after this many executions; None: never.
    prepare_threshold: int | None = PREPARE_THRESHOLD_DEFAULT
    #: Where LISTEN goes when ``dsn`` is a pooler in transaction mode (a direct DSN), or
    #: ``"off"`` to never LISTEN; None: the same as ``dsn``.
    listen_dsn: str | None = None

    def __post_init__(self) -> None:
        validate_schema(self.schema)
        if self.dsn is not None and not self.dsn.strip():
            raise ConfigError(f"{ENV_DSN} is set but empty: unset it to use the embedded server")
        if self.connect_timeout <= 0:
            raise ConfigError("connect timeout must be a positive number of seconds")

    @property
    def embedded_requested(self) -> bool:
        """True when the embedded server was asked for explicitly (``PGJOBS_DSN=embedded``)."""
        return self.dsn is not None and self.dsn.strip().lower() == EMBEDDED_DSN

    @property
    def listen_off(self) -> bool:
        """True when ``PGJOBS_LISTEN_DSN=off``: nothing LISTENs (behind a pooler in
        transaction mode with no direct way to PostgreSQL)."""
        return self.listen_dsn is not None and self.listen_dsn.strip().lower() == LISTEN_OFF

    @property
    def uses_embedded(self) -> bool:
        return self.dsn is None or self.embedded_requested

    @classmethod
    def from_env(
        cls,
        *,
        dsn: str | None = None,
        schema: str | None = None,
        home: str | os.PathLike[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        """Build settings from explicit values, falling back to ``PGJOBS_*`` variables."""
        env = os.environ if environ is None else environ
        dsn = dsn if dsn is not None else env.get(ENV_DSN)
        schema = schema if schema is not None else env.get(ENV_SCHEMA) or SCHEMA_DEFAULT
        home_value = home if home is not None else env.get(ENV_HOME)
        home_path = Path(home_value).expanduser() if home_value else default_home()
        threshold = env.get(ENV_PREPARE_THRESHOLD)
        return cls(
            dsn=dsn, schema=schema, home=home_path,
            prepare_threshold=(
                parse_prepare_threshold(threshold) if threshold else PREPARE_THRESHOLD_DEFAULT
            ),
            listen_dsn=env.get(ENV_LISTEN_DSN) or None,
        )  # fmt: skip
