"""The lifecycle core, tested directly against PostgreSQL: claims never overlap, every write
about a run needs the current lease token, and each outcome moves the job where it should."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.types import JobStatus

Conn = psycopg.Connection[Any]
SCHEMA = "pgjobs"


def claim(
    conn: Conn, limit: int = 1, queues: list[str] | None = None, lease: float = 30
) -> list[db.ClaimedJob]:
    return db.claim(
        conn, SCHEMA, queues=queues, limit=limit, worker_id=uuid.uuid4(), lease_seconds=lease
    )


def add(conn: Conn, count: int = 1, **columns: Any) -> list[int]:
    names = ["task", *columns]
    values = ["'t'", *(f"%({c})s" for c in columns)]
    query = f"INSERT INTO pgjobs.jobs ({', '.join(names)}) SELECT {', '.join(values)} FROM generate_series(1, {count}) RETURNING id"
    return [r[0] for r in conn.execute(query, columns).fetchall()]  # type: ignore[arg-type]


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        found = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found


def finish(conn: Conn, *outcomes: db.Outcome) -> dict[int, JobStatus]:
    return db.run(conn, db.finish(SCHEMA, list(outcomes)))


# --- the race -------------------------------------------------------------------------

JOBS_FOR_RACE = 3000


def _claim_all(dsn: str, batch: int, out: Any) -> None:
    """Claim until nothing is left; report every id claimed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        mine: list[int] = []
        while True:
            got = db.claim(
                conn, SCHEMA, queues=None, limit=batch, worker_id=uuid.uuid4(), lease_seconds=60
            )
            if not got:
                break
            mine.extend(j.id for j in got)
        out.extend(mine) if isinstance(out, list) else out.put(mine)


@pytest.mark.parametrize("round_", range(3))
def test_threads_claiming_at_once_never_share_a_job(
    pgjobs_dsn: str, pgjobs_conn: Conn, round_: int
) -> None:
    ids = add(pgjobs_conn, JOBS_FOR_RACE, queue="race", priority=0)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(batch: int) -> None:
        local: list[int] = []
        _claim_all(pgjobs_dsn, batch, local)
        with lock:
            claimed.extend(local)

    threads = [
        threading.Thread(target=worker, args=(batch,)) for batch in (1, 3, 7, 10, 25, 50, 100, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert sorted(claimed) == sorted(ids), "every job was claimed exactly once"
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE attempts <> 1"
    ).fetchone() == (0,)


@pytest.mark.slow
def test_processes_claiming_at_once_never_share_a_job(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    ids = add(pgjobs_conn, JOBS_FOR_RACE, queue="race", priority=0)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_claim_all, args=(pgjobs_dsn, batch, queue))
        for batch in (1, 5, 20, 50)
    ]
    for process in processes:
        process.start()
    claimed: list[int] = []
    for _ in processes:
        claimed.extend(queue.get(timeout=120))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert sorted(claimed) == sorted(ids)


def test_claim_never_takes_more_than_asked(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 10)
    assert len(claim(pgjobs_conn, limit=4)) == 4
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"
    ).fetchone() == (4,)


# --- fencing --------------------------------------------------------------------------


def test_a_stale_token_changes_nothing(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn)
    [job] = claim(pgjobs_conn)
    before = row(pgjobs_conn, job.id)
    stale = uuid.uuid4()
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.CANCELLED):
        assert finish(pgjobs_conn, db.Outcome(job.id, stale, status, result="1", error="x")) == {}
    assert db.run(pgjobs_conn, db.touch(SCHEMA, job.id, stale, 600)) is None
    assert db.run(pgjobs_conn, db.set_progress(SCHEMA, job.id, stale, 50, "half")) is False
    assert db.run(pgjobs_conn, db.heartbeat(SCHEMA, {job.id: stale}, 600)) == {}
    assert row(pgjobs_conn, job.id) == before, "no stale write may change the row"


def test_the_previous_holder_is_fenced_after_a_rescue_and_new_claim(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn)
    [first] = claim(pgjobs_conn, lease=0.001)
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second'")
    assert db.run(pgjobs_conn, db.rescue(SCHEMA)) == {first.id: JobStatus.QUEUED}
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET not_before = now()")
    [second] = claim(pgjobs_conn)
    assert (
        second.id == first.id and second.lease_token != first.lease_token and second.attempts == 2
    )
    late = finish(
        pgjobs_conn, db.Outcome(first.id, first.lease_token, JobStatus.SUCCEEDED, result='"late"')
    )
    assert late == {}, "the first worker's late completion is refused"
    done = finish(
        pgjobs_conn,
        db.Outcome(second.id, second.lease_token, JobStatus.SUCCEEDED, result='"second"'),
    )
    assert done == {second.id: JobStatus.SUCCEEDED}
    final = row(pgjobs_conn, first.id)
    assert (final["status"], final["result"]) == ("succeeded", "second")


def test_a_current_token_is_accepted_once(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn)
    [job] = claim(pgjobs_conn)
    outcome = db.Outcome(job.id, job.lease_token, JobStatus.SUCCEEDED, result='{"ok": true}')
    assert finish(pgjobs_conn, outcome) == {job.id: JobStatus.SUCCEEDED}
    assert finish(pgjobs_conn, outcome) == {}, "the lease token is cleared on completion"
    final = row(pgjobs_conn, job.id)
    assert (
        final["result"] == {"ok": True}
        and final["lease_token"] is None
        and final["finished_at"] is not None
    )


# --- outcomes ---------------------------------------------------------------------------


def test_batch_of_mixed_outcomes_in_one_statement(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 5, max_attempts=3)
    jobs = claim(pgjobs_conn, limit=5)
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    statuses = finish(
        pgjobs_conn,
        db.Outcome(jobs[0].id, jobs[0].lease_token, JobStatus.SUCCEEDED, result="[1, 2]"),
        db.Outcome(
            jobs[1].id, jobs[1].lease_token, JobStatus.FAILED, error="ValueError: bad input"
        ),
        db.Outcome(
            jobs[2].id, jobs[2].lease_token, JobStatus.QUEUED, error="HTTP 429", not_before=later
        ),
        db.Outcome(
            jobs[3].id, jobs[3].lease_token, JobStatus.QUEUED, not_before=later, refund=True
        ),
        db.Outcome(jobs[4].id, jobs[4].lease_token, JobStatus.CANCELLED, error="no longer needed"),
    )
    assert statuses == {
        jobs[0].id: JobStatus.SUCCEEDED, jobs[1].id: JobStatus.FAILED, jobs[2].id: JobStatus.QUEUED,
        jobs[3].id: JobStatus.QUEUED, jobs[4].id: JobStatus.CANCELLED,
    }  # fmt: skip
    retried, snoozed = row(pgjobs_conn, jobs[2].id), row(pgjobs_conn, jobs[3].id)
    assert (
        retried["attempts"] == 1
        and retried["not_before"] == later
        and retried["error"] == "HTTP 429"
    )
    assert snoozed["attempts"] == 0, "a snooze does not spend an attempt"
    assert retried["finished_at"] is None and retried["lease_token"] is None
    assert row(pgjobs_conn, jobs[1].id)["error"] == "ValueError: bad input"
    assert row(pgjobs_conn, jobs[4].id)["finished_at"] is not None


def test_finish_announces_changes_and_requeues(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 2, queue="mail")
    jobs = claim(pgjobs_conn, limit=2)
    with psycopg.connect(pgjobs_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs_events")
        listener.execute("LISTEN pgjobs_jobs")
        finish(
            pgjobs_conn,
            db.Outcome(jobs[0].id, jobs[0].lease_token, JobStatus.SUCCEEDED, result="1"),
            db.Outcome(jobs[1].id, jobs[1].lease_token, JobStatus.QUEUED, error="retry"),
        )
        got = {n.channel: json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=2)}
    assert got["pgjobs_jobs"] == {"queue": "mail"}
    assert sorted((e[0], e[1]) for e in got["pgjobs_events"]["jobs"]) == sorted(
        [(jobs[0].id, "succeeded"), (jobs[1].id, "queued")]
    )


def test_events_are_split_below_the_payload_limit(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 450)
    jobs = claim(pgjobs_conn, limit=450)
    with psycopg.connect(pgjobs_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs_events")
        done = finish(
            pgjobs_conn,
            *(db.Outcome(j.id, j.lease_token, JobStatus.SUCCEEDED, result="null") for j in jobs),
        )
        assert len(done) == 450
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=5)]
    assert len(payloads) == 5
    assert sum(len(p["jobs"]) for p in payloads) == 450


@pytest.mark.parametrize("limited", [False, True], ids=["fast-branch", "limited-queue"])
def test_a_claim_announces_its_starts_once_per_hundred(
    pgjobs_dsn: str, pgjobs_conn: Conn, limited: bool
) -> None:
    """While someone watches, both branches of claim() send [id, "running", version] for
    each job they start, a hundred to a notification; a claim that starts nothing sends
    nothing; nobody watching, no claim sends anything."""
    if limited:
        pgjobs_conn.execute(
            "INSERT INTO pgjobs.queues (name, concurrency_limit) VALUES ('mail', 1000)"
        )
    add(pgjobs_conn, 152, queue="mail")
    with psycopg.connect(pgjobs_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs_events")
        unwatched = claim(pgjobs_conn, limit=2)
        db.run(pgjobs_conn, db.watch_starts(SCHEMA))
        jobs = claim(pgjobs_conn, limit=200)
        assert len(jobs) == 150
        assert claim(pgjobs_conn, limit=10) == []
        pgjobs_conn.execute("NOTIFY pgjobs_events, 'sentinel'")
        payloads = []
        for notice in listener.notifies(timeout=5):
            if notice.payload == "sentinel":
                break
            payloads.append(json.loads(notice.payload))
    assert sorted(len(p["jobs"]) for p in payloads) == [50, 100], payloads
    announced = {e[0]: (e[1], e[2]) for p in payloads for e in p["jobs"]}
    assert announced == {j.id: ("running", row(pgjobs_conn, j.id)["version"]) for j in jobs}
    assert len(unwatched) == 2 and not {j.id for j in unwatched} & set(announced)


def test_watch_starts_lasts_its_time_and_writes_only_past_half_of_it(pgjobs_conn: Conn) -> None:
    def stored() -> float:
        found = pgjobs_conn.execute(
            "SELECT value::double precision FROM pgjobs.settings"
            " WHERE name = 'starts_watched_until'"
        ).fetchone()
        assert found is not None
        return float(found[0])

    def until() -> float:
        found = pgjobs_conn.execute("SELECT extract(epoch FROM now())").fetchone()
        assert found is not None
        return stored() - float(found[0])

    assert until() < 0  # nobody has watched yet
    db.run(pgjobs_conn, db.watch_starts(SCHEMA, 60))
    assert 55 < until() <= 60
    first = stored()
    db.run(pgjobs_conn, db.watch_starts(SCHEMA, 60))  # more than half left: no write
    assert stored() == first
    db.run(pgjobs_conn, db.watch_starts(SCHEMA, 200))  # asks for more than twice that
    assert 195 < until() <= 200
    db.run(pgjobs_conn, db.watch_starts(SCHEMA, 1e9))  # capped at an hour
    assert until() <= 3600


def test_progress_and_touch_need_the_lease(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn)
    [job] = claim(pgjobs_conn, lease=10)
    assert (
        db.run(pgjobs_conn, db.set_progress(SCHEMA, job.id, job.lease_token, 42.5, "halfway"))
        is True
    )
    touched = db.run(pgjobs_conn, db.touch(SCHEMA, job.id, job.lease_token, 3600))
    assert touched is not None and touched.lease_expires_at > job.lease_expires_at + timedelta(
        minutes=50
    )
    state = row(pgjobs_conn, job.id)
    assert (float(state["progress"]), state["progress_message"]) == (42.5, "halfway")


def test_heartbeat_extends_held_leases_and_reports_cancel_requests(pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 3)
    jobs = claim(pgjobs_conn, limit=3, lease=5)
    db.run(pgjobs_conn, db.cancel(SCHEMA, [jobs[0].id]))
    leases = {j.id: j.lease_token for j in jobs} | {999999: uuid.uuid4()}
    assert db.run(pgjobs_conn, db.heartbeat(SCHEMA, leases, 600)) == {
        jobs[0].id: True,
        jobs[1].id: False,
        jobs[2].id: False,
    }


def test_heartbeat_skips_a_row_locked_by_its_handler(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 2)
    jobs = claim(pgjobs_conn, limit=2, lease=5)
    with psycopg.connect(pgjobs_dsn) as handler:
        handler.execute("SELECT 1 FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (jobs[0].id,))
        extended = db.run(
            pgjobs_conn, db.heartbeat(SCHEMA, {j.id: j.lease_token for j in jobs}, 600)
        )
        handler.rollback()
    assert extended == {jobs[1].id: False}, "the locked row is skipped, not waited for"


# --- rescue -----------------------------------------------------------------------------


def test_rescue_requeues_with_backoff_or_fails_the_last_attempt(
    pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    add(pgjobs_conn, 1, max_attempts=3)
    add(pgjobs_conn, 1, max_attempts=1)
    add(pgjobs_conn, 1, max_attempts=3)
    jobs = claim(pgjobs_conn, limit=3)
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id <> %s",
        (jobs[2].id,),
    )
    rescued = db.run(pgjobs_conn, db.rescue(SCHEMA))
    assert rescued == {jobs[0].id: JobStatus.QUEUED, jobs[1].id: JobStatus.FAILED}
    again = row(pgjobs_conn, jobs[0].id)
    assert again["not_before"] > datetime.now(timezone.utc), (
        "a short backoff before the next attempt"
    )
    assert "lease expired" in again["error"]
    assert row(pgjobs_conn, jobs[2].id)["status"] == "running", "a live lease is left alone"
    assert db.run(pgjobs_conn, db.rescue(SCHEMA)) == {}


def test_two_rescuers_never_rescue_the_same_job(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    add(pgjobs_conn, 400, max_attempts=5)
    claim(pgjobs_conn, limit=400)
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second'")
    results: list[dict[int, JobStatus]] = []

    def rescuer() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            while moved := db.run(conn, db.rescue(SCHEMA, limit=25)):
                results.append(moved)

    threads = [threading.Thread(target=rescuer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = [i for batch in results for i in batch]
    assert len(ids) == len(set(ids)) == 400
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'queued'"
    ).fetchone() == (400,)


# --- cancel and retry -------------------------------------------------------------------


def test_cancel_queued_running_finished_and_missing(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    running, queued, done = add(pgjobs_conn, 3)
    [job] = claim(pgjobs_conn)
    assert job.id == running, "the oldest job is claimed first"
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s", (done,)
    )
    with psycopg.connect(pgjobs_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs_control")
        results = db.run(
            pgjobs_conn, db.cancel(SCHEMA, [queued, running, done, 424242], reason="not needed")
        )
        signal = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    outcomes = {r.job_id: r.outcome for r in results}
    assert outcomes == {queued: "cancelled", running: "cancel_requested", done: "finished"}
    assert signal == [{"cancel": [running]}]
    assert row(pgjobs_conn, queued)["status"] == "cancelled"
    assert row(pgjobs_conn, queued)["error"] == "not needed"
    assert row(pgjobs_conn, running)["status"] == "running"
    again = db.run(pgjobs_conn, db.cancel(SCHEMA, [running]))
    assert again[0].outcome == "already_requested"


def test_retry_grants_one_more_attempt_and_respects_dedupe(pgjobs_conn: Conn) -> None:
    [failed] = add(pgjobs_conn, 1, max_attempts=1, dedupe_key="k")
    [job] = claim(pgjobs_conn)
    finish(pgjobs_conn, db.Outcome(job.id, job.lease_token, JobStatus.FAILED, error="boom"))
    assert row(pgjobs_conn, failed)["attempts"] == 1
    [holder] = add(pgjobs_conn, 1, dedupe_key="k")
    refused = db.run(pgjobs_conn, db.retry(SCHEMA, [failed]))
    assert (refused[0].retried, refused[0].dedupe_holder) == (False, holder)
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (holder,)
    )
    [result] = db.run(pgjobs_conn, db.retry(SCHEMA, [failed]))
    assert result.retried
    state = row(pgjobs_conn, failed)
    assert (state["status"], state["max_attempts"], state["finished_at"]) == ("queued", 2, None)
    [again] = claim(pgjobs_conn)
    assert again.id == failed and again.attempts == 2 <= again.max_attempts


def test_retry_refuses_unfinished_and_succeeded_jobs(pgjobs_conn: Conn) -> None:
    queued, done = add(pgjobs_conn, 2)
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s", (done,)
    )
    results = {r.job_id: r.retried for r in db.run(pgjobs_conn, db.retry(SCHEMA, [queued, done]))}
    assert results == {queued: False, done: False}


# --- outcome rules (pgjobs.outcomes) ----------------------------------------------------


def test_errors_retry_with_backoff_then_fail(pgjobs_conn: Conn) -> None:
    from pgjobs import outcomes
    from pgjobs.backoff import RetryPolicy

    add(pgjobs_conn, 1, max_attempts=2)
    policy = RetryPolicy(base=timedelta(seconds=30), jitter=0)
    [job] = claim(pgjobs_conn)
    assert finish(pgjobs_conn, outcomes.errored(job, "ValueError: 1", policy)) == {
        job.id: JobStatus.QUEUED
    }
    state = row(pgjobs_conn, job.id)
    due_in = state["not_before"] - datetime.now(timezone.utc)
    assert timedelta(seconds=25) < due_in <= timedelta(seconds=30), (
        "backoff from the database's clock"
    )
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET not_before = now()")
    [job] = claim(pgjobs_conn)
    assert job.attempts == 2
    assert finish(pgjobs_conn, outcomes.errored(job, "ValueError: 2", policy)) == {
        job.id: JobStatus.FAILED
    }
    assert row(pgjobs_conn, job.id)["error"] == "ValueError: 2"


def test_retry_after_snooze_fail_now_and_hand_back(pgjobs_conn: Conn) -> None:
    from pgjobs import outcomes

    add(pgjobs_conn, 4, max_attempts=5)
    a, b, c, d = claim(pgjobs_conn, limit=4)
    statuses = finish(
        pgjobs_conn,
        outcomes.errored(a, "HTTP 429", delay=timedelta(minutes=2)),
        outcomes.snoozed(b, timedelta(hours=1)),
        outcomes.failed(c, "PermanentError: bad address"),
        outcomes.handed_back(d),
    )
    assert statuses == {
        a.id: JobStatus.QUEUED,
        b.id: JobStatus.QUEUED,
        c.id: JobStatus.FAILED,
        d.id: JobStatus.QUEUED,
    }
    rows = {i: row(pgjobs_conn, i) for i in (a.id, b.id, c.id, d.id)}
    now = datetime.now(timezone.utc)
    assert timedelta(seconds=110) < rows[a.id]["not_before"] - now <= timedelta(minutes=2)
    assert (rows[a.id]["attempts"], rows[b.id]["attempts"], rows[d.id]["attempts"]) == (1, 0, 0)
    assert rows[d.id]["not_before"] <= now, "handed back jobs are due at once"
    assert rows[c.id]["attempts"] == 1 and rows[c.id]["finished_at"] is not None


def test_an_unencodable_result_is_an_error_not_a_poison_batch() -> None:
    from pgjobs import outcomes
    from pgjobs.errors import InvalidInput

    job = db.ClaimedJob(
        1,
        "q",
        "t",
        {},
        0,
        1,
        3,
        uuid.uuid4(),
        datetime.now(timezone.utc),
        datetime.now(timezone.utc),
        datetime.now(timezone.utc),
        None,
        None,
    )
    with pytest.raises(InvalidInput, match="cannot encode result"):
        outcomes.succeeded(job, {"text": "NUL\x00inside"})
