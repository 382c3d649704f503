"""The docs site's HTTP API reference is the application's own OpenAPI document: a change
to a route or a model that is not regenerated into docs/ fails here."""

from __future__ import annotations

from pathlib import Path

from pgjobs.web import reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_reference_in_docs_is_generated_from_the_code() -> None:
    for name, text in reference.files().items():
        stored = (DOCS / name).read_text()
        assert stored == text, (
            f"docs/{name} is out of date: run `python -m pgjobs.web.reference docs`"
        )


def test_the_reference_lists_every_route_of_the_spec() -> None:
    page = (DOCS / reference.MARKDOWN_FILE).read_text()
    for route in (
        "POST /jobs", "GET /jobs", "GET /jobs/{job_id}", "GET /jobs/{job_id}/events",
        "POST /jobs/{job_id}/cancel", "POST /jobs/{job_id}/retry", "GET /queues",
        "GET /healthz", "GET /metrics",
    ):  # fmt: skip
        assert f"`{route}`" in page
