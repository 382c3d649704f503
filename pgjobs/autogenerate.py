"""Keep pgjobs' tables out of your own alembic autogenerate.

pgjobs manages its schema with its own migrations (``pgjobs migrate``). An application that
runs ``alembic revision --autogenerate`` with ``include_schemas=True`` would otherwise see
pgjobs' tables as unknown and propose to drop them. In the application's ``env.py``::

    from pgjobs.autogenerate import include_name

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name(),        # or include_name("my_pgjobs_schema")
    )

``include_object`` does the same for setups that already use an ``include_object`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pgjobs.config import SCHEMA_DEFAULT


def include_name(
    schema: str = SCHEMA_DEFAULT,
) -> Callable[[str | None, str, Mapping[str, Any]], bool]:
    """An alembic ``include_name`` hook that skips the pgjobs schema entirely (not reflected)."""

    def hook(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
        if type_ == "schema":
            return name != schema
        return parent_names.get("schema_name") != schema

    return hook


def include_object(
    schema: str = SCHEMA_DEFAULT,
) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """An alembic ``include_object`` hook that ignores every object of the pgjobs schema."""

    def hook(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = getattr(obj, "table", None)
        owner_schema = getattr(obj, "schema", None) or getattr(table, "schema", None)
        return owner_schema != schema

    return hook
