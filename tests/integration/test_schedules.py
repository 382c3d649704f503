"""Cron schedules in the database: one job per fire time however many schedulers fire at
once, overlap and missed policies, pause/resume, removal and re-adding, code declarations,
and workers firing a seconds-level schedule."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from workers import Running

import pgjobs
from pgjobs import schedules
from pgjobs.errors import InvalidInput, NotFound
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]


def schedule(
    name: str = "every-minute", cron: str = "* * * * *", **fields: Any
) -> schedules.Schedule:
    return schedules.Schedule(name=name, cron=cron, task=fields.pop("task", "report"), **fields)


def move_due(conn: Conn, name: str, when: str) -> datetime:
    """Pretend the scheduler last looked long ago: next_fire_at = the fire time at ``when``
    (an SQL expression), as after an outage."""
    row = conn.execute(
        "UPDATE pgjobs.schedules SET next_fire_at = date_trunc('minute', " + when + ")"
        " WHERE name = %s RETURNING next_fire_at",
        (name,),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def fire(dsn: str, passes: int = 1) -> list[schedules.Pass]:
    async def run() -> list[schedules.Pass]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return [await schedules.fire_due(conn, "pgjobs") for _ in range(passes)]

    return asyncio.run(run())


def jobs_of(conn: Conn, name: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, not_before, (meta->>'fire_at')::timestamptz, status FROM pgjobs.jobs"
        " WHERE meta->>'schedule' = %s ORDER BY not_before",
        (name,),
    ).fetchall()


def test_add_stores_the_next_fire_time_and_refuses_a_name_in_use(pgjobs_conn: Conn) -> None:
    stored = schedules.add(pgjobs_conn, "pgjobs", schedule(args={"to": "ops"}))
    now = pgjobs_conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    assert stored.next_fire_at is not None
    assert now < stored.next_fire_at <= now + timedelta(minutes=1)
    assert stored.next_fire_at.second == 0
    with pytest.raises(InvalidInput, match="exists already: use --replace"):
        schedules.add(pgjobs_conn, "pgjobs", schedule(cron="0 * * * *"))
    assert [s.cron for s in schedules.list_schedules(pgjobs_conn, "pgjobs")] == ["* * * * *"]
    replaced = schedules.add(
        pgjobs_conn, "pgjobs", schedule(cron="0 * * * *"), replace_existing=True
    )
    assert replaced.cron == "0 * * * *" and replaced.next_fire_at.minute == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"task": "bad task"}, "invalid task name"),
        ({"missed": "always"}, "invalid missed policy"),
        ({"overlap": "queue"}, "invalid overlap policy"),
        ({"name": "no spaces please"}, "invalid schedule name"),
        ({"queue": ""}, "invalid queue name"),
        ({"priority": 5000}, "priority 5000 is out of range"),
    ],
)
def test_bad_schedules_are_refused_before_the_database(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        schedule(**fields)


def test_one_pass_fires_each_due_time_once(pgjobs_conn: Conn, pgjobs_dsn: str) -> None:
    schedules.add(pgjobs_conn, "pgjobs", schedule(args={"n": 1}, queue="reports", priority=3))
    due = move_due(pgjobs_conn, "every-minute", "now()")
    first, second = fire(pgjobs_dsn, passes=2)
    assert [f.fire_at for f in first.fired] == [due]
    assert second.fired == []
    assert first.next_fire_at == due + timedelta(minutes=1)
    (job,) = pgjobs_conn.execute(
        "SELECT task, args, queue, priority, not_before, meta FROM pgjobs.jobs"
    ).fetchall()
    assert job[:5] == ("report", {"n": 1}, "reports", 3, due)
    assert job[5]["schedule"] == "every-minute"
    row = pgjobs_conn.execute("SELECT last_fire_at, last_job_id FROM pgjobs.schedules").fetchone()
    assert row is not None and row[0] == due and row[1] == first.fired[0].job_id


def test_concurrent_schedulers_insert_exactly_one_job_per_fire_time(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    """Eight schedulers race over 40 schedules due at once, five times (new schedules each
    round): the row lock lets exactly one of them insert each fire time."""

    async def race(names: list[str]) -> None:
        conns = [
            await psycopg.AsyncConnection.connect(pgjobs_dsn, autocommit=True) for _ in range(8)
        ]
        try:
            await asyncio.gather(*(schedules.fire_due(c, "pgjobs") for c in conns))
        finally:
            for conn in conns:
                await conn.close()

    for round_ in range(5):
        names = [f"s{round_}-{i}" for i in range(40)]
        for name in names:
            schedules.add(pgjobs_conn, "pgjobs", schedule(name=name))
        pgjobs_conn.execute(
            "UPDATE pgjobs.schedules SET next_fire_at = date_trunc('minute', now())"
            " WHERE name = ANY(%s)",
            (names,),
        )
        asyncio.run(race(names))
        for name in names:
            fired = jobs_of(pgjobs_conn, name)
            assert len(fired) == 1, f"{name}: {len(fired)} jobs for one fire time"
    assert fire(pgjobs_dsn)[0].fired == [], "a later pass fired a time again"


def test_overlap_skip_inserts_nothing_while_the_previous_job_is_unfinished(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    schedules.add(pgjobs_conn, "pgjobs", schedule(overlap="skip"))
    move_due(pgjobs_conn, "every-minute", "now()")
    (first,) = fire(pgjobs_dsn)
    assert len(first.fired) == 1
    move_due(pgjobs_conn, "every-minute", "now()")
    (second,) = fire(pgjobs_dsn)
    assert second.fired == [] and second.skipped == 1
    assert second.next_fire_at is not None and second.next_fire_at > datetime.now().astimezone()
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s",
        (first.fired[0].job_id,),
    )
    move_due(pgjobs_conn, "every-minute", "now()")
    (third,) = fire(pgjobs_dsn)
    assert len(third.fired) == 1


@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_fire_times_missed_during_an_outage_follow_the_policy(
    pgjobs_conn: Conn, pgjobs_dsn: str, policy: str
) -> None:
    schedules.add(pgjobs_conn, "pgjobs", schedule(missed=policy))
    move_due(pgjobs_conn, "every-minute", "now() - interval '2 hours'")
    (done,) = fire(pgjobs_dsn)
    fire_times = [f.fire_at for f in done.fired]
    now = pgjobs_conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    on_time = [t for t in fire_times if t > now - timedelta(minutes=1)]
    assert len(on_time) <= 1
    if policy == "skip":
        assert fire_times == on_time
    else:
        assert len(fire_times) - len(on_time) == 1, "run_once: one job for the missed times"
    assert done.next_fire_at is not None and done.next_fire_at > now


def test_pause_stops_firing_and_resume_does_not_make_up_missed_times(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    schedules.add(pgjobs_conn, "pgjobs", schedule())
    paused = schedules.set_paused(pgjobs_conn, "pgjobs", "every-minute", True)
    assert paused.paused
    move_due(pgjobs_conn, "every-minute", "now() - interval '10 minutes'")
    (done,) = fire(pgjobs_dsn)
    assert done.fired == [] and done.next_fire_at is None
    resumed = schedules.set_paused(pgjobs_conn, "pgjobs", "every-minute", False)
    now = pgjobs_conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    assert resumed.next_fire_at is not None and resumed.next_fire_at > now
    assert fire(pgjobs_dsn)[0].fired == []
    with pytest.raises(NotFound, match="no schedule named 'nope'"):
        schedules.set_paused(pgjobs_conn, "pgjobs", "nope", True)


def test_removing_and_adding_again_never_fires_a_time_twice(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    schedules.add(pgjobs_conn, "pgjobs", schedule())
    due = move_due(pgjobs_conn, "every-minute", "now()")
    assert len(fire(pgjobs_dsn)[0].fired) == 1
    pgjobs_conn.execute("DELETE FROM pgjobs.jobs")  # pruned, too
    schedules.remove(pgjobs_conn, "pgjobs", "every-minute")
    again = schedules.add(pgjobs_conn, "pgjobs", schedule())
    assert again.next_fire_at is not None and again.next_fire_at > due
    assert fire(pgjobs_dsn)[0].fired == []
    with pytest.raises(NotFound):
        schedules.remove(pgjobs_conn, "pgjobs", "every-minute-typo")


# --- workers --------------------------------------------------------------------------


def test_three_workers_fire_a_seconds_schedule_once_per_second(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    """Declared in code, synced at worker start; three workers fire it; one is stopped in the
    middle: the fire times are consecutive seconds, each with exactly one job."""

    @app.periodic("* * * * * *", name="tick", args={"source": "cron"})
    @app.task(name="tick")
    def tick(source: str) -> str:
        return source

    workers = [start() for _ in range(3)]

    def fired() -> list[datetime]:
        return [row[2] for row in jobs_of(pgjobs_conn, "tick")]

    wait_for(lambda: len(fired()) >= 3, timeout=20, message=lambda: f"fired: {fired()}")
    workers[0].stop()
    count = len(fired())
    wait_for(lambda: len(fired()) >= count + 3, timeout=20, message=lambda: f"fired: {fired()}")
    times = fired()
    assert len(times) == len(set(times)), f"a fire time has two jobs: {times}"
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {1.0}, f"fire times are not consecutive seconds: {times}"
    row = pgjobs_conn.execute(
        "SELECT source, cron, args FROM pgjobs.schedules WHERE name = 'tick'"
    ).fetchone()
    assert row == ("code", "* * * * * *", {"source": "cron"})
    succeeded = pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE task = 'tick' AND status = 'succeeded'"
        " AND result = '\"cron\"'"
    ).fetchone()
    assert succeeded is not None and succeeded[0] >= 3


def test_a_schedule_added_while_workers_run_fires_without_waiting_for_a_tick(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="report")
    def report() -> None:
        return None

    start(tick_interval=3600)  # only the notification can tell it
    wait_for(
        lambda: pgjobs_conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone()[0],  # type: ignore[index]
        message="worker never announced itself",
    )
    schedules.add(pgjobs_conn, "pgjobs", schedule(name="soon", cron="* * * * * *"))
    wait_for(
        lambda: jobs_of(pgjobs_conn, "soon"), timeout=10, message="the new schedule never fired"
    )


def test_a_schedule_stored_broken_by_plain_sql_is_paused_not_retried_forever(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    """The table cannot check a cron expression: a bad one written by SQL would be due at
    every wake-up if left as it is; the pass pauses it, fires nothing and fires the rest."""
    schedules.add(pgjobs_conn, "pgjobs", schedule(name="fine"))
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.schedules (name, cron, task, next_fire_at)"
        " VALUES ('broken', '61 * * * *', 'report', now() - interval '1 second')"
    )
    move_due(pgjobs_conn, "fine", "now()")
    (done,) = fire(pgjobs_dsn)
    assert [f.schedule for f in done.fired] == ["fine"]
    assert pgjobs_conn.execute(
        "SELECT paused FROM pgjobs.schedules WHERE name = 'broken'"
    ).fetchone() == (True,)
    assert done.next_fire_at is not None and done.next_fire_at > datetime.now().astimezone()
    assert jobs_of(pgjobs_conn, "broken") == []
