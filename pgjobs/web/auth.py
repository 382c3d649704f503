"""Bearer-token authentication of the HTTP API, enforced in front of every route.

Why a middleware and not a FastAPI dependency on each route: it runs before anything else
(before the body is read or parsed, so an anonymous client gets 401, never a 422 that
tells it how the API validates input), and it cannot be forgotten on a route added later,
including the ones FastAPI adds itself (``/openapi.json``, ``/docs``). Only the paths in
``public`` (``/healthz``: probes carry no token) pass without credentials.

The dashboard adds a login form: an :class:`Authenticator` asks each of its ``readers``
in turn for a :class:`Principal`, and the dashboard's session-cookie reader
(:mod:`pgjobs.web.dashboard.security`) comes after the bearer one. A reader of ambient
credentials (cookies) declares ``ambient=True``: such a principal may change state only
through the dashboard's routes (``ambient_writes``), which check a CSRF token; anywhere
else its unsafe requests get 403. The bearer token cannot be sent by a cross-site form, so
API clients need no CSRF token. A browser without credentials that opens a dashboard page
is sent to the login form (``login_redirect``) instead of getting a 401.

Without tokens (a server on loopback, or ``--insecure``) every request is ``anonymous``, so
a page of any site the user visits could make the browser POST a form to the API (a
"simple" request: no preflight). Browsers label such requests ``Sec-Fetch-Site:
cross-site`` (or ``same-site`` from a sibling subdomain); an anonymous unsafe request so
labelled gets 403. Programs (curl, services) send no such header and are not affected.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

#: Where routes find who is calling: ``request.scope[PRINCIPAL_SCOPE_KEY]``.
PRINCIPAL_SCOPE_KEY = "pgjobs.principal"


@dataclass(frozen=True)
class Principal:
    """Who made a request. ``name`` never contains the secret itself (it goes to logs)."""

    name: str
    #: Credentials a browser attaches by itself (cookies): state changes need a CSRF token.
    ambient: bool = False
    #: For an ambient principal: the CSRF token its state-changing requests must carry.
    csrf_token: str | None = field(default=None, repr=False)


#: A reader looks at the request headers (lower-case names, as ASGI gives them) and returns
#: a principal, or None when its kind of credentials is absent or wrong.
Reader = Callable[[dict[bytes, bytes]], "Principal | None"]


def _digest(secret: str | bytes) -> bytes:
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


class BearerTokens:
    """``Authorization: Bearer <token>`` against a fixed set of tokens.

    Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
    configured token without stopping at a match: the time taken says nothing about how
    much of a guess was right, nor which token matched."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = [_digest(t) for t in tokens]

    def __call__(self, headers: dict[bytes, bytes]) -> Principal | None:
        value = headers.get(b"authorization", b"")
        scheme, _, credentials = value.partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            return None
        offered = _digest(credentials.strip())
        matched = -1
        for position, digest in enumerate(self._digests):
            if hmac.compare_digest(offered, digest):
                matched = position
        return Principal(name=f"token#{matched + 1}") if matched >= 0 else None


class Authenticator:
    """Asks each reader in turn; an empty authenticator (no token configured) lets every
    request through as ``anonymous``."""

    def __init__(self, readers: Sequence[Reader] = ()) -> None:
        self.readers = list(readers)

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> Authenticator:
        return cls([BearerTokens(tokens)] if tokens else [])

    @property
    def enabled(self) -> bool:
        return bool(self.readers)

    def authenticate(self, headers: dict[bytes, bytes]) -> Principal | None:
        if not self.readers:
            return Principal(name="anonymous")
        for reader in self.readers:
            principal = reader(headers)
            if principal is not None:
                return principal
        return None


FORBIDDEN_AMBIENT_BODY = json.dumps(
    {
        "error": "forbidden",
        "message": "a dashboard session cannot change state through the API: use the "
        "dashboard's buttons, or send Authorization: Bearer <token>",
    },
    separators=(",", ":"),
).encode()
#: Methods that change nothing: ambient credentials may use them on any route.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

FORBIDDEN_CROSS_SITE_BODY = json.dumps(
    {
        "error": "forbidden",
        "message": "the browser says another site's page sent this request "
        "(Sec-Fetch-Site): refused, since the server has no API token to tell them apart",
    },
    separators=(",", ":"),
).encode()
#: Sec-Fetch-Site values of requests another site's page made the browser send.
OTHER_SITES = frozenset({b"cross-site", b"same-site"})

UNAUTHORIZED_BODY = json.dumps(
    {
        "error": "unauthorized",
        "message": "send a valid API token: Authorization: Bearer <token> (PGJOBS_API_TOKENS)",
    },
    separators=(",", ":"),
).encode()


def route_path(scope: Scope) -> str:
    """The request path without the prefix the application is mounted at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


class AuthMiddleware:
    """Refuses, with 401 and a JSON reason, every request without valid credentials, except
    to the ``public`` paths. Puts the :class:`Principal` in the scope for the routes."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        public: Collection[str] = (),
        *,
        login_redirect: Callable[[Scope], str | None] | None = None,
        ambient_writes: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.public = frozenset(public)
        #: Where to send a request without credentials instead of a 401 (None: 401).
        self.login_redirect = login_redirect
        #: Paths where ambient principals may use unsafe methods (they check CSRF).
        self.ambient_writes = ambient_writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (websocket routes: none)
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in self.public:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        principal = self.authenticator.authenticate(headers)
        if principal is None:
            location = self.login_redirect(scope) if self.login_redirect else None
            if location is not None:
                await _respond(send, 303, b"", [(b"location", location.encode("latin-1"))])
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
                        (b"www-authenticate", b'Bearer realm="pgjobs"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
            return
        # A state change outside the dashboard's forms (which check CSRF and the origin
        # themselves, answering in HTML): refused to ambient credentials, and, without
        # tokens, to what the browser says another site's page sent.
        if scope.get("method") not in SAFE_METHODS and not (
            self.ambient_writes is not None and self.ambient_writes(path)
        ):
            refusal = None
            if principal.ambient:
                refusal = FORBIDDEN_AMBIENT_BODY
            elif not self.authenticator.enabled and headers.get(b"sec-fetch-site") in OTHER_SITES:
                refusal = FORBIDDEN_CROSS_SITE_BODY
            if refusal is not None:
                await _respond(send, 403, refusal, [(b"content-type", b"application/json")])
                return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
