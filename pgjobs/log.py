"""Structured logging (structlog): readable on a terminal, one JSON object per line elsewhere.

``configure("auto")`` picks the console renderer when stderr is a terminal and JSON when it is
not (a pod, a file, a pipe), so that logs collected by machines are machine-readable without
anyone asking. ``PGJOBS_LOG_FORMAT`` and ``PGJOBS_LOG_LEVEL`` (or ``--log-format`` and
``--log-level``) override it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from pgjobs.errors import ConfigError

FORMATS = ("auto", "console", "json")
LEVELS = ("debug", "info", "warning", "error")
ENV_FORMAT = "PGJOBS_LOG_FORMAT"
ENV_LEVEL = "PGJOBS_LOG_LEVEL"


def configure(
    log_format: str | None = None, level: str | None = None, *, stream: Any = None
) -> str:
    """Configure structlog for this process; returns the format actually used."""
    log_format = (log_format or os.environ.get(ENV_FORMAT) or "auto").lower()
    level = (level or os.environ.get(ENV_LEVEL) or "info").lower()
    if log_format not in FORMATS:
        raise ConfigError(f"invalid log format {log_format!r}: use one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise ConfigError(f"invalid log level {level!r}: use one of {', '.join(LEVELS)}")
    out = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return log_format


def get_logger(name: str = "pgjobs", **context: Any) -> Any:
    """A structlog logger bound to ``logger=name`` and ``context``."""
    return structlog.get_logger().bind(logger=name, **context)
