"""The HTTP API reference of the docs site, generated from the application itself.

``docs/openapi.json`` is the OpenAPI document ``GET /openapi.json`` serves, and
``docs/http-reference.md`` a readable page made from it (every route with its answers, and
the fields of each request body). Both are generated, never edited: a test regenerates them
and fails when they differ from the committed files, so the reference cannot drift from the
code. Regenerate with ``python -m pgjobs.web.reference docs``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pgjobs.app import App

#: The files, relative to the docs directory.
OPENAPI_FILE = "openapi.json"
MARKDOWN_FILE = "http-reference.md"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API, as a server with tokens configured serves it (no
    database is touched: the document is built from the declarations)."""
    from pgjobs.web import create_app

    api = create_app(App("host=localhost"), tokens=["reference-" + "x" * 16])
    document: dict[str, Any] = api.openapi()
    document["info"]["version"] = "current"  # the reference follows the code, not a release
    return document


def _type(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        kinds = [_type(s, components) for s in schema["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (
            " (or null)" if "null" in kinds else ""
        )
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), components)}"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown(document: dict[str, Any]) -> str:
    """A page of the docs site: the routes, their answers, and the request bodies' fields."""
    components = document.get("components", {}).get("schemas", {})
    lines = [
        "# HTTP API reference",
        "",
        "<!-- Generated from the application by `python -m pgjobs.web.reference docs`: do not",
        "edit; a test fails when it differs from the code. -->",
        "",
        "Every route of `pgjobs serve`, generated from the application itself. The machine-",
        f"readable form is [openapi.json]({OPENAPI_FILE}) (also served at `/openapi.json`);",
        "how to run the server, authenticate and read the errors is in [HTTP API](http.md).",
        "",
        "| route | what it does | answers |",
        "|---|---|---|",
    ]
    bodies: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = ", ".join(
                f"`{code}` {_cell(answer.get('description', ''))}"
                for code, answer in operation.get("responses", {}).items()
            )
            summary = _cell(operation.get("summary") or operation.get("description") or "")
            lines.append(f"| `{method.upper()} {path}` | {summary} | {answers} |")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                bodies.append(_body_table(method, path, body["schema"], components))
    lines.extend(["", *bodies])
    return "\n".join(lines).rstrip() + "\n"


def _body_table(method: str, path: str, schema: dict[str, Any], components: dict[str, Any]) -> str:
    name = _type(schema, components)
    model = components.get(name, schema)
    required = set(model.get("required", []))
    rows = [
        f"## `{method.upper()} {path}` request body ({name})",
        "",
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    for field, spec in model.get("properties", {}).items():
        rows.append(
            f"| `{field}` | {_type(spec, components)} | {'yes' if field in required else ''} "
            f"| {_cell(spec.get('description', ''))} |"
        )
    if model.get("additionalProperties") is False:
        rows.extend(["", "Unknown fields are refused (`422`)."])
    return "\n".join([*rows, ""])


def files() -> dict[str, str]:
    """The generated files' contents, by name."""
    document = openapi_document()
    return {
        OPENAPI_FILE: json.dumps(document, indent=2, sort_keys=True) + "\n",
        MARKDOWN_FILE: markdown(document),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pgjobs.web.reference DOCS_DIR", file=sys.stderr)
        return 2
    for name, text in files().items():
        (Path(argv[0]) / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
