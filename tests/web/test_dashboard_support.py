"""Helpers of the dashboard tests (a strict HTML reader, forms submitted as a browser
would, jobs put in each state by the statements workers use), and the unit tests of the
pieces that need no server: the HTML builder, sessions, redirects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from web_support import claim, finish

import pgjobs.web.dashboard as dashboard_package
from pgjobs.types import JobStatus
from pgjobs.web.dashboard.html import Html, el, join, text
from pgjobs.web.dashboard.security import (
    SESSION_COOKIE,
    SessionCookies,
    login_redirect,
    safe_next,
)

VOID = {"br", "hr", "img", "input", "link", "meta"}
SCRIPT = "<script>alert(1)</script>"


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str]
    buttons: list[str]


@dataclass
class Page:
    """An HTML page read by :class:`html.parser.HTMLParser`, with its tags checked to nest."""

    html: str
    text: str = ""
    links: list[str] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def form(self, action: str, **fields: str) -> Form:
        """The form posting to ``action`` (a path suffix) whose fields include ``fields``."""
        found = [
            f
            for f in self.forms
            if f.action.endswith(action) and all(f.fields.get(k) == v for k, v in fields.items())
        ]
        assert found, (
            f"no form {action} {fields} among {[(f.action, f.fields) for f in self.forms]}"
        )
        return found[0]

    def has_form(self, action: str, **fields: str) -> bool:
        return any(
            f.action.endswith(action) and all(f.fields.get(k) == v for k, v in fields.items())
            for f in self.forms
        )


class _Reader(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[str] = []
        self.opened: list[tuple[str | None, int]] = []
        self.texts: list[str] = []
        self.form: Form | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        assert not any(k.startswith("on") for k in values), f"inline handler on <{tag}>"
        if tag == "a" and "href" in values:
            self.page.links.append(values["href"])
        if tag == "script":
            self.page.scripts.append(values.get("src", ""))
        if tag == "form":
            self.form = Form(values.get("action", ""), values.get("method", "get"), {}, [])
            self.page.forms.append(self.form)
        if tag == "input" and self.form is not None and "name" in values:
            self.form.fields[values["name"]] = values.get("value", "")
        if tag == "tr":
            self.row = []
        if tag in ("td", "th"):
            self.cell = []
        if tag not in VOID:
            self.stack.append(tag)
            self.opened.append((values.get("id"), len(self.texts)))

    def handle_endtag(self, tag: str) -> None:
        assert tag not in VOID, f"</{tag}>"
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-3:]}"
        self.stack.pop()
        element_id, start = self.opened.pop()
        if element_id is not None:
            self.page.ids[element_id] = " ".join("".join(self.texts[start:]).split())
        if tag == "form":
            self.form = None
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        if tag == "tr" and self.row is not None:
            self.page.rows.append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self.cell is not None:
            self.cell.append(data)
        if self.form is not None and self.stack and self.stack[-1] == "button":
            self.form.buttons.append(data)


def parse(html: str) -> Page:
    page = Page(html)
    reader = _Reader(page)
    reader.feed(html)
    reader.close()
    assert reader.stack == [], f"unclosed tags: {reader.stack}"
    page.text = " ".join("".join(reader.texts).split())
    return page


def get_page(http: httpx.Client, path: str, status: int = 200) -> Page:
    answer = http.get(path, headers={"Accept": "text/html"})
    assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html"), answer.headers
    return parse(answer.text)


def submit(
    http: httpx.Client, form: Form, expect: int | None = 303, **overrides: str | None
) -> httpx.Response:
    """Post a form as the browser would (its fields, some replaced or removed)."""
    assert form.method == "post"
    fields = {**form.fields, **overrides}
    data = {k: v for k, v in fields.items() if v is not None}
    answer = http.post(form.action, data=data, headers={"Accept": "text/html"})
    if expect is not None:
        assert answer.status_code == expect, (form.action, answer.status_code, answer.text[:500])
    return answer


def follow(http: httpx.Client, answer: httpx.Response) -> Page:
    """The page a 303 leads to (with the action's report in it)."""
    assert answer.status_code == 303, answer.text[:300]
    return get_page(http, answer.headers["location"])


def enqueue(http: httpx.Client, task: str = "t.dash", **body: Any) -> int:
    answer = http.post("/jobs", json={"task": task, **body})
    assert answer.status_code == 202, answer.text
    job_id: int = answer.json()["id"]
    return job_id


def failed(
    conn: psycopg.Connection[Any], http: httpx.Client, error: str = "boom", **body: Any
) -> int:
    job_id = enqueue(http, **body)
    finish(conn, job_id, claim(conn, job_id), JobStatus.FAILED, error=error)
    return job_id


def status_of(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


# --- unit tests: the HTML builder ---------------------------------------------------------


def test_text_and_attributes_are_escaped() -> None:
    page = str(el("a", SCRIPT, href='/x?a="b"&c', title=SCRIPT))
    assert "<script" not in page
    assert page == (
        '<a href="/x?a=&quot;b&quot;&amp;c" title="&lt;script&gt;alert(1)&lt;/script&gt;">'
        "&lt;script&gt;alert(1)&lt;/script&gt;</a>"
    )
    assert str(text("a & b")) == "a &amp; b"
    assert (
        str(el("input", name="x", disabled=True, hidden=False, value=None))
        == '<input name="x" disabled>'
    )
    assert str(el("div", data_events="/e", class_="c")) == '<div data-events="/e" class="c"></div>'
    nested = el("ul", [el("li", "a"), [el("li", "<b>")], None, 3])
    assert str(nested) == "<ul><li>a</li><li>&lt;b&gt;</li>3</ul>"
    assert str(join(["<i>", el("b", "x")], ", ")) == "&lt;i&gt;, <b>x</b>"


def test_markup_cannot_come_from_a_plain_string() -> None:
    with pytest.raises(ValueError, match="tag"):
        el("a onclick=x")
    with pytest.raises(ValueError, match="attribute"):
        el("a", **{"x onclick": "y"})
    with pytest.raises(ValueError, match="children"):
        el("input", "text")
    with pytest.raises(TypeError):
        _ = el("b") + "<i>"  # type: ignore[operator]
    assert isinstance(el("b") + el("i"), Html)


def test_only_the_html_module_vouches_for_markup() -> None:
    """Escaping by construction holds only if no other module makes raw fragments."""
    package = Path(dashboard_package.__file__).parent
    for source in package.glob("*.py"):
        if source.name != "html.py":
            assert "_trusted" not in source.read_text(), source


# --- unit tests: sessions and redirects ------------------------------------------------------

TOKENS = ["first-token-0123456789abcdef", "second-token-0123456789abcdef"]


def test_sessions_are_signed_expire_and_follow_their_token() -> None:
    sessions = SessionCookies(TOKENS, lifetime=60)
    assert sessions.position(TOKENS[1]) == 2 and sessions.position("nope-nope-nope-nope") is None
    value = sessions.issue(2, now=1000)
    assert sessions.verify(value, now=1059) == 2
    assert sessions.verify(value, now=1061) is None  # expired
    body, _, mac = value.rpartition(".")
    forged = body.replace(body.split(".")[1], "9999999999") + "." + mac
    assert sessions.verify(forged, now=1000) is None  # a longer life is not for the asking
    assert sessions.verify(value[:-2] + "AA", now=1000) is None
    assert sessions.verify("garbage", now=1000) is None
    # A token removed from PGJOBS_API_TOKENS ends its sessions; the others keep theirs.
    assert SessionCookies([TOKENS[1]]).verify(sessions.issue(1)) is None
    assert SessionCookies(TOKENS[::-1]).verify(sessions.issue(2)) == 1
    # The CSRF token is bound to the session, and is not the session itself.
    other = sessions.issue(2, now=1000)
    assert sessions.csrf_token(2, value) != sessions.csrf_token(2, other)
    assert sessions.csrf_token(2, value) not in value
    principal = sessions({b"cookie": f"{SESSION_COOKIE}={sessions.issue(1)}".encode()})
    assert principal is not None and principal.ambient and principal.name == "token#1 session"
    assert sessions({b"cookie": b"pgjobs_session=v1.1.2.3"}) is None
    assert sessions({b"cookie": b"\x00;;=="}) is None


def scope(
    path: str, accept: str = "text/html", method: str = "GET", query: bytes = b""
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"accept", accept.encode())],
    }


def test_browsers_are_sent_to_the_login_form_and_api_clients_get_401() -> None:
    assert (
        login_redirect(scope("/ui/jobs", query=b"queue=a"))
        == "/ui/login?next=%2Fui%2Fjobs%3Fqueue%3Da"
    )
    assert login_redirect(scope("/")) == "/ui/login?next=%2F"
    assert login_redirect(scope("/ui/jobs", accept="*/*")) is None
    assert login_redirect(scope("/jobs")) is None
    assert login_redirect(scope("/ui/actions/pause", method="POST")) == "/ui/login?next=%2F"
    assert login_redirect(scope("/ui/actions/pause", accept="*/*", method="POST")) is None


@pytest.mark.parametrize(
    ("wanted", "safe"),
    [
        ("/ui/jobs?queue=a", "/ui/jobs?queue=a"),
        ("//evil.example.com/", "/"),
        ("https://evil.example.com/", "/"),
        ("/\\evil.example.com", "/"),
        ("/ui/x\r\nSet-Cookie: a=b", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_no_open_redirect(wanted: str | None, safe: str) -> None:
    assert safe_next(wanted) == safe


def iter_rows(page: Page, first_cell_prefix: str = "#") -> Iterator[list[str]]:
    for row in page.rows:
        if row and row[0].startswith(first_cell_prefix):
            yield row
