"""HTML built from escaped fragments only: escaping by construction.

The dashboard shows text that users and handlers wrote (task and queue names, arguments,
error messages): any of it may contain ``<script>``. Rather than remembering to escape
each value, pages are built from :class:`Html` fragments, and the only ways to get one are
:func:`el` (an element whose text children and attribute values are escaped here) and
:func:`text`. A plain ``str`` handed to either is always escaped; nothing outside this
module turns a ``str`` into markup as it is (the few trusted pieces, the doctype, the
style sheet and the script tag, are constants below, and a test checks that no other
module reaches for :meth:`Html._trusted`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Union

#: Elements without a closing tag.
VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})
_TAG = re.compile(r"^[a-z][a-z0-9]*$")
_ATTRIBUTE = re.compile(r"^[a-z][a-z0-9-]*$")


class Html:
    """A fragment of markup that is safe to send as it is. Made by :func:`el`, :func:`text`
    and :func:`join`; ``+`` joins two fragments (never a fragment and a ``str``)."""

    __slots__ = ("_text",)

    _text: str

    @classmethod
    def _trusted(cls, markup: str) -> Html:
        """Markup this module vouches for (escaped by it, or a constant written here)."""
        fragment = cls.__new__(cls)
        fragment._text = markup
        return fragment

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Html({self._text!r})"

    def __add__(self, other: Html) -> Html:
        if not isinstance(other, Html):
            return NotImplemented
        return Html._trusted(self._text + other._text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Html) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


#: What an element may contain: fragments as they are, anything else as escaped text,
#: ``None`` as nothing, and lists of those (flattened).
Child = Union[Html, str, int, float, None, "Sequence[Child]"]
EMPTY = Html._trusted("")


def text(value: object) -> Html:
    """``value`` as text (``<``, ``>``, ``&`` and quotes escaped)."""
    return Html._trusted(escape(str(value), quote=True))


def _children(children: Iterable[Child], out: list[str]) -> None:
    for child in children:
        if child is None:
            continue
        if isinstance(child, Html):
            out.append(child._text)
        elif isinstance(child, list | tuple):
            _children(child, out)
        else:
            out.append(escape(str(child), quote=True))


def _attribute(name: str) -> str:
    """``class_`` -> ``class``, ``data_events`` -> ``data-events``, ``aria_label`` ->
    ``aria-label``: Python keywords in, HTML attribute names out."""
    converted = name.rstrip("_").replace("_", "-")
    if not _ATTRIBUTE.match(converted):
        raise ValueError(f"not an attribute name: {name!r}")
    return converted


def el(tag: str, *children: Child, **attributes: object) -> Html:
    """An element: ``el("a", "job 3", href="/ui/jobs/3")``. Attribute values are escaped
    (``None`` and ``False`` leave the attribute out, ``True`` writes it bare); children are
    escaped unless they are :class:`Html` already."""
    if not _TAG.match(tag):
        raise ValueError(f"not a tag name: {tag!r}")
    out = [f"<{tag}"]
    for name, value in attributes.items():
        if value is None or value is False:
            continue
        if value is True:
            out.append(f" {_attribute(name)}")
        else:
            out.append(f' {_attribute(name)}="{escape(str(value), quote=True)}"')
    out.append(">")
    if tag in VOID:
        if children:
            raise ValueError(f"<{tag}> cannot have children")
        return Html._trusted("".join(out))
    _children(children, out)
    out.append(f"</{tag}>")
    return Html._trusted("".join(out))


def join(parts: Iterable[Child], separator: Child = None) -> Html:
    """The parts one after the other, ``separator`` between them (both escaped as
    :func:`el` escapes children)."""
    out: list[str] = []
    sep: list[str] = []
    _children([separator], sep)
    for index, part in enumerate(parts):
        if index:
            out.extend(sep)
        _children([part], out)
    return Html._trusted("".join(out))


# --- the page shell: the only markup written by hand -------------------------------------

#: The whole style sheet. Written here, inline, because the pages load nothing from
#: anywhere (the content security policy allows inline styles and nothing else).
STYLE = """
:root{color-scheme:light dark;--muted:#777;--line:#8884;--bad:#c62828;--good:#2e7d32;--warn:#b26a00}
body{font:14px/1.45 system-ui,sans-serif;margin:0}
header{display:flex;gap:1.2rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid var(--line)}
header strong{font-size:1.1rem}header nav a{margin-right:.9rem}header form{margin-left:auto}
main{padding:1rem 1.2rem;max-width:90rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.2rem}
td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;white-space:nowrap}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;word-break:break-word;background:#8881;padding:.6rem;margin:.3rem 0;max-height:40rem;overflow:auto}
code{word-break:break-all}
form.inline{display:inline}form.filters{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin:.5rem 0}
label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted)}
button{cursor:pointer}button.danger{color:var(--bad)}
.s-failed,.bad{color:var(--bad)}.s-succeeded,.good{color:var(--good)}.s-running,.warn{color:var(--warn)}
.s-cancelled,.muted{color:var(--muted)}
.flash{padding:.5rem .8rem;border:1px solid var(--line);background:#8881;margin:.5rem 0}
.error-box{border-color:var(--bad)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:var(--muted)}dd{margin:0}
ul.tree{list-style:none;padding-left:1.2rem;margin:.2rem 0}ul.tree.root{padding-left:0}
li.here>span{font-weight:700}
progress{width:20rem;vertical-align:middle}
.pager{margin:1rem 0;display:flex;gap:1rem}
"""


def document(
    title: str,
    body: Html,
    *,
    script_src: str | None = None,
    refresh_seconds: int | None = None,
) -> str:
    """A whole page: doctype, head (title, the style sheet, an optional same-origin script
    and an optional ``meta refresh``), then ``body``."""
    head = [
        Html._trusted('<meta charset="utf-8">'),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("meta", name="referrer", content="no-referrer"),
        el("title", title),
        Html._trusted(f"<style>{STYLE}</style>"),
    ]
    if refresh_seconds is not None:
        head.append(el("meta", http_equiv="refresh", content=int(refresh_seconds)))
    if script_src is not None:
        head.append(el("script", src=script_src, defer=True))
    page = el("html", el("head", head), el("body", body), lang="en")
    return f"<!doctype html>\n{page}\n"
