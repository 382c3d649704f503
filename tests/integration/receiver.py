"""A real HTTP receiver on 127.0.0.1 for the callback and pgjobs.http tests: a threaded
``http.server`` that records every request (raw body included) and answers by path.

Paths (the query string is ignored):

- ``/ok``: 200 ``{"ok": true}``
- ``/status/<code>``: that status (``/status/429?after=0`` adds ``Retry-After: 0``)
- ``/flaky/<n>/<key>``: 503 for the first ``n`` requests of ``key``, then 200
- ``/hang/<n>/<key>``: the first ``n`` requests of ``key`` get no answer until the receiver
  stops (past any timeout a test sets), then 200
- ``/echo``: 200 with a JSON object of the request's method, headers and body
- ``/big/<bytes>``: 200 with that many bytes of text
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from pgjobs.testing import wait_for


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: time.monotonic() when the request was read.
    at: float
    #: Every header line as sent (names as written, repeats kept).
    lines: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Start with ``Receiver()``; ``url(path)`` to aim at it; ``stop()`` at the end."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                query = urlsplit(self.path).query
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            self.command,
                            path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            tuple(self.headers.items()),
                        )
                    )
                    receiver._seen[path] += 1
                    seen = receiver._seen[path]
                parts = path.strip("/").split("/")
                status, payload, extra = 200, b'{"ok": true}', {}
                if parts[0] == "status":
                    status = int(parts[1])
                    payload = json.dumps({"status": status}).encode()
                    if "after=" in query:
                        extra["Retry-After"] = query.split("after=")[1]
                elif parts[0] == "flaky" and seen <= int(parts[1]):
                    status, payload = 503, b"busy, come back later"
                elif parts[0] == "hang" and seen <= int(parts[1]):
                    receiver._release.wait(60)
                    return
                elif parts[0] == "echo":
                    payload = json.dumps(
                        {
                            "method": self.command,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body.decode("utf-8", "replace"),
                        }
                    ).encode()
                elif parts[0] == "big":
                    payload = b"x" * int(parts[1])
                    extra["Content-Type"] = "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", extra.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 20) -> list[Received]:
        """At least ``count`` requests (to ``path``), within ``timeout`` seconds."""
        return wait_for(
            lambda: got if len(got := self.received(path)) >= count else None,
            timeout=timeout,
            message=lambda: (
                f"{len(self.received(path))} request(s) to {path or 'any path'}, wanted {count}"
            ),
        )

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
