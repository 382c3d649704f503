"""Keyset paging of the dashboard's lists: following "older" from the first page to the
last visits every job once, in order, however many jobs are created or end meanwhile;
and a selective filter reads a bounded window per page without losing matches."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
from test_dashboard_support import Page, get_page, iter_rows

from pgjobs.web.dashboard import queries, views

SIZE = queries.PAGE_SIZE


def ids_of(page: Page) -> list[int]:
    return [int(row[0][1:]) for row in iter_rows(page)]


def older(page: Page) -> str | None:
    """The "older" link of a page (rel=next), if any."""
    marker = 'rel="next"'
    for chunk in page.html.split("<a ")[1:]:
        head = chunk.split(">", 1)[0]
        if marker in head:
            return head.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    return None


def walk(client: httpx.Client, path: str, between: Any) -> list[int]:
    seen: list[int] = []
    url: str | None = path
    pages = 0
    while url is not None:
        page = get_page(client, url)
        seen += ids_of(page)
        between()
        url = older(page)
        pages += 1
        assert pages < 20, "paging does not end"
    return seen


def test_id_order_pages_have_no_duplicates_nor_gaps(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts)
           SELECT 't.page', 'p', 0, 3 FROM generate_series(1, %s)""",
        (2 * SIZE + 20,),
    )
    expected = [r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs ORDER BY id DESC")]

    def insert_more() -> None:  # newer jobs arrive while the user pages
        conn.execute(
            """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts)
               SELECT 't.page', 'p', 0, 3 FROM generate_series(1, 30)"""
        )

    assert walk(client, "/ui/jobs?queue=p", insert_more) == expected
    first = get_page(client, "/ui/jobs?queue=p")
    assert len(ids_of(first)) == SIZE and older(first) is not None


def test_finish_time_pages_have_no_duplicates_nor_gaps(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    """Failures come newest first; outcomes written together share a finished_at (ties
    are ordered by id), and jobs failing while the user pages do not shift the pages."""
    fail = """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts, status, attempts,
                                       error, started_at, finished_at)
              SELECT 't.fail', 'f', 0, 1, 'failed', 1, 'boom', now() - interval '1 hour',
                     now() - interval '1 minute' * (g / 10)
                FROM generate_series(1, %s) AS g"""
    conn.execute(fail, (2 * SIZE + 20,))
    newest_first = (
        "SELECT id FROM pgjobs.jobs WHERE status = 'failed' ORDER BY finished_at DESC, id DESC"
    )
    expected = [r[0] for r in conn.execute(newest_first)]
    assert walk(client, "/ui/failed", lambda: conn.execute(fail, (7,))) == expected
    # The jobs list of a finished status walks the same index the same way.
    everything = [r[0] for r in conn.execute(newest_first)]
    assert walk(client, "/ui/jobs?status=failed&queue=f", lambda: None) == everything


def test_a_selective_filter_reads_a_bounded_window(pgjobs_dsn: str) -> None:
    """One job in ten matches; with a window of 7 entries and pages of 3, pages come out
    short (the window ended), and following them still yields every match, once."""

    async def scenario() -> tuple[list[int], list[int], list[queries.Page]]:
        async with await psycopg.AsyncConnection.connect(pgjobs_dsn, autocommit=True) as conn:
            await conn.execute(
                """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts)
                   SELECT 't.w', CASE WHEN g % 10 = 0 THEN 'rare' ELSE 'common' END, 0, 3
                     FROM generate_series(1, 100) AS g"""
            )
            rows = await (
                await conn.execute(
                    "SELECT id FROM pgjobs.jobs WHERE queue = 'rare' ORDER BY id DESC"
                )
            ).fetchall()
            where = queries.JobFilter(queue="rare")
            pages = []
            cursor: queries.Cursor | None = queries.Cursor()
            seen: list[int] = []
            for _ in range(100):  # bounded: a cursor that stops moving fails the test
                if cursor is None:
                    break
                page = await queries.list_jobs(conn, "pgjobs", where, cursor, limit=3, window=7)
                assert page.scanned <= 7
                pages.append(page)
                seen += [job.id for job in page.jobs]
                cursor = page.next
            return [r[0] for r in rows], seen, pages

    expected, seen, pages = asyncio.run(scenario())
    assert seen == expected
    assert any(p.window_ended and not p.jobs for p in pages)
    assert pages[-1].next is None


def test_the_pager_says_when_a_page_stopped_at_its_window() -> None:
    page = queries.Page([], queries.Cursor(1234), scanned=5000, window_ended=True)
    ctx = views.Context(root="", csrf="x")
    html = str(views.pager(ctx, "/ui/jobs", {"queue": "rare"}, page, first=True))
    assert "No more matches among the 5,000 jobs read for this page" in html
    assert 'href="/ui/jobs?queue=rare&amp;before=1234"' in html


def test_small_windows_over_ties_of_end_times(pgjobs_dsn: str) -> None:
    """Windows smaller than the groups of jobs that ended at the same moment: a window
    takes its last moment whole, so no job of a tie is skipped or shown twice."""

    async def scenario() -> tuple[list[int], list[int]]:
        async with await psycopg.AsyncConnection.connect(pgjobs_dsn, autocommit=True) as conn:
            await conn.execute(
                """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts, status,
                                            attempts, started_at, finished_at)
                   SELECT 't.tie', CASE WHEN g % 3 = 0 THEN 'x' ELSE 'y' END, 0, 1, 'failed',
                          1, now() - interval '1 day', now() - interval '1 s' * (g / 5)
                     FROM generate_series(1, 40) AS g"""
            )
            rows = await (
                await conn.execute(
                    """SELECT id FROM pgjobs.jobs WHERE queue = 'x'
                        ORDER BY finished_at DESC, id DESC"""
                )
            ).fetchall()
            where = queries.JobFilter(queries.JobStatus.FAILED, queue="x")
            cursor: queries.Cursor | None = queries.Cursor()
            seen: list[int] = []
            for _ in range(100):
                if cursor is None:
                    break
                page = await queries.list_jobs(conn, "pgjobs", where, cursor, limit=2, window=3)
                seen += [job.id for job in page.jobs]
                cursor = page.next
            assert cursor is None, "the pages never ended"
            return [r[0] for r in rows], seen

    expected, seen = asyncio.run(scenario())
    assert seen == expected
