"""Settings of the HTTP API that the CLI must check before the server starts.

Nothing here imports FastAPI: ``pgjobs serve`` validates its options (and refuses an unsafe
bind) with these functions first, so that a malformed option is a usage error even where
the ``web`` extra is not installed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass

from pgjobs.errors import ConfigError, InvalidInput

ENV_API_TOKENS = "PGJOBS_API_TOKENS"

#: Request bodies larger than this are refused with 413 (``--max-body``). Job arguments may
#: take up to 1 MiB once encoded (PGJOBS_MAX_ARGS_BYTES); raise both together.
MAX_BODY_DEFAULT = 1024 * 1024
#: An SSE stream with nothing to say sends a comment this often, so that proxies and load
#: balancers (many close a connection idle for 30-60 s) keep it open.
HEARTBEAT_SECONDS_DEFAULT = 15.0
#: Every SSE stream's job is re-read at least this often, in one statement for all streams
#: of the process: the safety net for a notification lost while the listening connection
#: was down. Every change, starts included, is announced on the events channel, so this is
#: only the net under the net: rare enough to cost nothing, frequent enough to bound a miss.
RECHECK_SECONDS_DEFAULT = 10.0
#: Tokens shorter than this are refused: a bearer token is a password sent with every request.
TOKEN_MIN_LENGTH = 16
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: what an HTTP header carries unchanged

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_tokens(text: str | None) -> tuple[str, ...]:
    """The bearer tokens of ``PGJOBS_API_TOKENS`` (comma-separated; blanks around commas are
    ignored). Raises :class:`ConfigError` for a token that is too short or not plain ASCII,
    rather than starting a server that a guessable token protects."""
    if not text:
        return ()
    tokens = tuple(part.strip() for part in text.split(",") if part.strip())
    for position, token in enumerate(tokens, start=1):
        if not _TOKEN.match(token):
            raise ConfigError(
                f"{ENV_API_TOKENS}: token #{position} has characters outside visible ASCII"
            )
        if len(token) < TOKEN_MIN_LENGTH:
            raise ConfigError(
                f"{ENV_API_TOKENS}: token #{position} is {len(token)} characters long; use at "
                f"least {TOKEN_MIN_LENGTH} random ones (e.g. openssl rand -hex 32)"
            )
    return tokens


def tokens_from_env() -> tuple[str, ...]:
    return parse_tokens(os.environ.get(ENV_API_TOKENS))


def parse_size(value: str | int, *, field: str = "size") -> int:
    """``1048576``, ``512KB``, ``1MB``, ``1MiB``, ``2m``: units are powers of 1024 (as in
    nginx's ``client_max_body_size``), so ``1MB`` is 1,048,576 bytes."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {field} {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise InvalidInput(
                f"invalid {field} {value!r}: use a number of bytes with an optional unit, "
                "e.g. 65536, 512KB, 1MB"
            )
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size < 1:
        raise InvalidInput(f"invalid {field} {value!r}: must be at least 1 byte")
    return size


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    An address is judged by itself; a name by every address it resolves to (``localhost``
    included), so that a name pointing anywhere else counts as public. An empty host or
    a wildcard (``0.0.0.0``, ``::``) listens everywhere."""
    name = host.strip().strip("[]")
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False  # cannot tell: uvicorn will fail to bind anyway
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in addresses
    )


@dataclass(frozen=True)
class WebOptions:
    """What the HTTP API needs beyond the database settings.

    ``tokens`` empty means no authentication: only safe on a loopback address, which the
    CLI enforces (``--insecure`` overrides it)."""

    tokens: tuple[str, ...] = ()
    max_body: int = MAX_BODY_DEFAULT
    heartbeat_seconds: float = HEARTBEAT_SECONDS_DEFAULT
    recheck_seconds: float = RECHECK_SECONDS_DEFAULT

    def __post_init__(self) -> None:
        if self.max_body < 1:
            raise ConfigError("max_body must be at least 1 byte")
        if self.heartbeat_seconds <= 0 or self.recheck_seconds <= 0:
            raise ConfigError("heartbeat and recheck intervals must be positive")
