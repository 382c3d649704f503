"""docs/kubernetes.md: its links resolve (files and headings), it keeps the place for the
"Database roles" section, and the commands it shows name files that exist."""

from __future__ import annotations

import re
from pathlib import Path

from manifests import REPO, VARIANTS

DOCS = REPO / "docs"
PAGE = DOCS / "kubernetes.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_links_resolve() -> None:
    text = PAGE.read_text(encoding="utf-8")
    links = [m.group(1) for m in LINK.finditer(text)]
    assert len(links) >= 10
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = PAGE if not target else (PAGE.parent / target)
        assert path.is_file(), f"{link}: no such file"
        if anchor:
            assert anchor in anchors(path), f"{link}: no such heading"


def test_the_database_roles_section_has_its_place() -> None:
    assert "database-roles" in anchors(PAGE)


def test_the_paths_it_names_exist() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for path in re.findall(r"\bdeploy/[\w./-]+\w", text):
        if "production" in path:  # the example of an overlay of your own
            continue
        assert (REPO / path).exists(), path
    assert "kubectl apply -k deploy/k8s/overlays/short-jobs" in text
    for directory in VARIANTS.values():
        assert str(directory.relative_to(REPO / "deploy" / "k8s")) in text
