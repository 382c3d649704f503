"""Every error of the HTTP API has one JSON shape::

    {"error": "invalid_input", "message": "priority: Input should be a valid integer",
     "details": [{"field": "priority", "message": "Input should be a valid integer"}]}

``error`` is a stable code for programs, ``message`` one line for people, ``details`` (only
for input that failed validation) one entry per problem. The handlers here translate
pgjobs' own exceptions (:mod:`pgjobs.errors`), FastAPI's validation errors and Starlette's
HTTP errors into it, so that no route builds an error body by hand and no traceback or SQL
ever reaches a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route

from pgjobs.connection import one_line
from pgjobs.errors import (
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    PgjobsError,
    SchemaError,
)
from pgjobs.log import get_logger

log = get_logger("pgjobs.web")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal_error",
    503: "unavailable",
}
#: How many validation problems the one-line message names (all are in ``details``).
MESSAGE_PROBLEMS = 3


class ApiError(Exception):
    """An answer other than success that a route decides on (409: the job's state forbids
    it). ``code`` defaults to the status's own."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Sequence[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code or CODES.get(status, "error"), "message": message}
    if details:
        body["details"] = list(details)
    return JSONResponse(body, status_code=status, headers=headers)


def _field(location: Sequence[Any]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One validation problem, said without echoing the input back."""
    kind = error.get("type", "")
    location = tuple(error.get("loc", ()))
    field = _field(location)
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        position = location[1] if len(location) > 1 else "?"
        return {"field": "body", "message": f"malformed JSON at character {position}: {reason}"}
    if kind == "model_attributes_type" and location == ("body",):
        return {
            "field": "body",
            "message": "send a JSON object with the header Content-Type: application/json",
        }
    if kind == "extra_forbidden":
        return {"field": field, "message": "unknown field (see /openapi.json for the fields)"}
    if kind == "missing":
        return {"field": field, "message": "required"}
    return {"field": field, "message": str(error.get("msg", "invalid"))}


def validation_problems(exc: RequestValidationError) -> list[dict[str, str]]:
    return [_problem(dict(e)) for e in exc.errors()]


def summary(problems: Sequence[dict[str, str]]) -> str:
    shown = [f"{p['field']}: {p['message']}" for p in problems[:MESSAGE_PROBLEMS]]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc)
    return error_response(422, summary(problems) or "invalid input", details=problems)


def index_methods(app: FastAPI, routes: Iterable[BaseRoute]) -> None:
    """Give 405 answers the methods of every route of their path (see :func:`_allowed`).
    ``routes``: all of the application's, those of included routers too (FastAPI's
    ``app.routes`` does not list them one by one)."""
    app.state.method_routes = tuple(r for r in routes if isinstance(r, Route) and r.methods)


def _allowed(request: Request, starlette_allow: str) -> str:
    """The ``Allow`` header of a 405. Starlette's names only the methods of the first route
    whose path matched (``Allow: POST`` for ``/jobs``, which GET serves too), where RFC 9110
    wants every method of the resource: clients and fuzzers take it at its word."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "method_routes", ()):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route.methods or ())
    return ", ".join(sorted(methods)) if methods else starlette_allow


def _unparsable_body(cause: BaseException | None) -> str | None:
    """FastAPI answers a JSON body that fails to decode other than by a syntax error with a
    bare 400 "There was an error parsing the body": bytes that are not UTF-8 (Latin-1
    "café"), or nesting deeper than the parser's recursion limit. Both are malformed JSON
    like any other, a 422 that says why; None for any other 400."""
    if isinstance(cause, UnicodeDecodeError):
        return f"malformed JSON: not UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "malformed JSON: nested too deeply"
    return None


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    unparsable = _unparsable_body(exc.__cause__) if exc.status_code == 400 else None
    if unparsable is not None:
        problems = [{"field": "body", "message": unparsable}]
        return error_response(422, summary(problems), details=problems)
    message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed(request, (headers or {}).get("Allow", ""))}
    return error_response(exc.status_code, message, headers=headers)


async def _api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code)


async def _pgjobs(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PgjobsError)
    if isinstance(exc, InvalidInput):
        return error_response(422, str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, str(exc))
    if isinstance(exc, DatabaseUnavailable | SchemaError):
        log.warning("database unavailable", path=request.url.path, error=str(exc))
        return error_response(503, str(exc), headers={"Retry-After": "5"})
    log.error("request failed", path=request.url.path, error=str(exc))
    return error_response(500, str(exc))


async def _database(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    if isinstance(exc, psycopg.OperationalError):
        log.warning("database unavailable", path=request.url.path, error=one_line(exc))
        return error_response(
            503, f"database unavailable: {one_line(exc)}", headers={"Retry-After": "5"}
        )
    log.error("database error", path=request.url.path, error=one_line(exc))
    return error_response(500, "database error (details in the server log)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(PgjobsError, _pgjobs)
    app.add_exception_handler(psycopg.Error, _database)
