"""Named SQL statements of the hot path, one per ``.sql`` file, reviewed like code.

Each file is loaded once; ``{schema}`` placeholders become a quoted identifier through
:mod:`psycopg.sql`, never string formatting of values. Values are bound parameters
(``%(name)s``). Literal braces in a file are written ``{{`` and ``}}``.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib.resources import files

from psycopg import sql


@cache
def text(name: str) -> str:
    """The raw text of ``pgjobs/sql/<name>.sql``."""
    return files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


@lru_cache(maxsize=256)
def query(name: str, schema: str) -> bytes:
    """The statement ``name`` with the schema filled in, ready to execute.

    Rendered to bytes once: a composed statement is rendered again at every execution, which
    was a measurable part of a single enqueue. psycopg then caches its conversion.
    """
    return sql.SQL(text(name)).format(schema=sql.Identifier(schema)).as_bytes(None)
