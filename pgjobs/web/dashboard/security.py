"""Who may use the dashboard, and proof that a button press came from its own pages.

**Sessions.** With ``PGJOBS_API_TOKENS`` set, a browser cannot send an ``Authorization``
header by itself (nor can its ``EventSource``), so the login form trades a token for a
session cookie: ``v1.<expires>.<nonce>.<mac>``, the MAC an HMAC-SHA256 keyed by a key
derived from the token that logged in. Nothing is stored on the server:

- any process holding the same tokens (``--workers N``, replicas behind a load balancer,
  a restarted server) accepts the cookie: a per-process random key would log users out at
  every restart and send half of the requests of a two-process server to the login page;
- removing a token from ``PGJOBS_API_TOKENS`` ends the sessions opened with it, at once;
- the price: a session cannot be revoked alone before it expires (logout deletes the
  cookie from the browser, not from a thief), and whoever holds a token can mint sessions,
  which gives nothing a token does not give already. Sessions last
  :data:`SESSION_SECONDS` (8 hours).

The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (other sites'
pages cannot make the browser send it) and ``Secure`` when the request came over https.

**CSRF.** Every state-changing button of the dashboard is a POST form carrying a token
the route checks before doing anything (403 otherwise):

- with a session, the token is an HMAC of the session cookie under the session's key:
  a page of another site can neither read it nor compute it;
- without tokens (a loopback server that serves anyone), a site visited in the same
  browser could still post a form to ``127.0.0.1``: a random ``pgjobs_csrf`` cookie
  (``SameSite=Strict``) is set by the pages and its value repeated in their forms (the
  double-submit pattern: another site can read neither);
- a request with a valid ``Authorization: Bearer`` header needs none: a form of another
  site cannot send that header.

On top of that, a POST a browser labels ``Sec-Fetch-Site: cross-site`` or ``same-site``
is refused, and a
session cookie is never enough to change anything through the JSON API (the
:class:`~pgjobs.web.auth.AuthMiddleware` refuses it outside the dashboard's routes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote

from starlette.types import Scope

from pgjobs.web.auth import Principal, route_path

#: The session cookie's name, and its lifetime.
SESSION_COOKIE = "pgjobs_session"
SESSION_SECONDS = 8 * 3600
#: The double-submit cookie of a server without tokens.
CSRF_COOKIE = "pgjobs_csrf"
#: The form field every state-changing form carries.
CSRF_FIELD = "csrf"
_VERSION = "v1"
_SESSION_KEY_LABEL = b"pgjobs dashboard session v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    """The request's cookies (a malformed header counts as none)."""
    raw = headers.get(b"cookie", b"").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


class SessionCookies:
    """Issues and checks session cookies; an :class:`~pgjobs.web.auth.Authenticator`
    reader (called with the request headers) that yields ambient principals."""

    def __init__(self, tokens: Sequence[str], *, lifetime: int = SESSION_SECONDS) -> None:
        # One key per token, derived (not the token itself: the cookie's MAC must not be
        # something the API would accept as a bearer token).
        self._keys = [
            hmac.new(token.encode(), _SESSION_KEY_LABEL, hashlib.sha256).digest()
            for token in tokens
        ]
        self._digests = [hashlib.sha256(token.encode()).digest() for token in tokens]
        self.lifetime = lifetime

    def position(self, token: str) -> int | None:
        """Which configured token this is (1-based), or None: the login form's check,
        in constant time against every token (as the bearer check)."""
        offered = hashlib.sha256(token.encode()).digest()
        matched = None
        for position, digest in enumerate(self._digests, start=1):
            if hmac.compare_digest(offered, digest):
                matched = position
        return matched

    def issue(self, position: int, *, now: float | None = None) -> str:
        """A session for token number ``position`` (1-based, as ``token#N`` says)."""
        expires = int((now if now is not None else time.time()) + self.lifetime)
        body = f"{_VERSION}.{expires}.{secrets.token_urlsafe(18)}"
        mac = hmac.new(self._keys[position - 1], body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def verify(self, value: str, *, now: float | None = None) -> int | None:
        """The token position the session belongs to, or None (forged, expired, from a
        token no longer configured). Compares against every key without stopping early."""
        body, _, mac = value.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        if int(parts[1]) < (now if now is not None else time.time()):
            return None
        matched = None
        for position, key in enumerate(self._keys, start=1):
            expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
            if hmac.compare_digest(expected.encode(), mac.encode()):
                matched = position
        return matched

    def csrf_token(self, position: int, session: str) -> str:
        """What the forms of this session carry: bound to the session, unguessable without
        the session's key."""
        digest = hmac.new(self._keys[position - 1], b"csrf." + session.encode(), hashlib.sha256)
        return _b64(digest.digest())

    def __call__(self, headers: dict[bytes, bytes]) -> Principal | None:
        value = cookies(headers).get(SESSION_COOKIE)
        if not value:
            return None
        position = self.verify(value)
        if position is None:
            return None
        return Principal(
            name=f"token#{position} session",
            ambient=True,
            csrf_token=self.csrf_token(position, value),
        )


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def is_dashboard_path(path: str) -> bool:
    return path == "/" or path.startswith("/ui/")


def login_redirect(scope: Scope) -> str | None:
    """Where to send a request without credentials instead of answering 401: a browser
    (it asks for ``text/html``) opening a dashboard page goes to the login form, and comes
    back to the page afterwards (after a button pressed with an expired session, to the
    overview: the action was not done). API clients keep their 401."""
    path = route_path(scope)
    if not is_dashboard_path(path):
        return None
    accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
    if "text/html" not in accept:
        return None
    if scope.get("method") == "GET":
        query = scope.get("query_string", b"").decode("latin-1")
        wanted = path + (f"?{query}" if query else "")
    else:  # a button pressed after the session expired: not done, log in again
        wanted = "/"
    root = str(scope.get("root_path", "")).rstrip("/")
    return f"{root}/ui/login?next={quote(wanted, safe='')}"


def safe_next(value: str | None) -> str:
    """A place to go after logging in: a path of this application only (``/x``, never
    ``//host`` or ``https://host``: no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value):
        return "/"
    return value
