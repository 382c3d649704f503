"""A big jobs table and EXPLAIN helpers, shared by the plan tests and by the script that
prints the plans published in docs/design.md:

    PGJOBS_DSN=... python tests/integration/bigtable.py     # fills the database, prints plans
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg

FINISHED = 1_000_000
FUTURE = 100_000
DUE = 1_000
RUNNING = 50
CLAIM_LIMIT = 10


def fill(conn: psycopg.Connection[Any], schema: str = "pgjobs") -> None:
    """1M finished jobs, 100k future jobs of a *higher* priority than the due ones (the case
    that defeats a naive index walk), 1k due jobs over two queues and three priorities, 50
    running jobs, one paused queue with due jobs."""
    s = schema
    conn.execute(
        f"""INSERT INTO {s}.jobs (task, queue, priority, status, attempts, max_attempts,
                                  started_at, finished_at, result, created_at, not_before)
            SELECT 'done.task', CASE WHEN g % 2 = 0 THEN 'default' ELSE 'emails' END, 0,
                   CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 3,
                   now() - interval '1 day', now() - interval '1 day', '{{"ok": true}}',
                   now() - interval '2 days', now() - interval '2 days'
              FROM generate_series(1, {FINISHED}) AS g"""
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (task, queue, priority, not_before, max_attempts)
            SELECT 'later.task', CASE WHEN g % 2 = 0 THEN 'default' ELSE 'emails' END, 10,
                   now() + interval '1 day' + g * interval '1 second', 3
              FROM generate_series(1, {FUTURE}) AS g"""
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (task, queue, priority, not_before, max_attempts)
            SELECT 'now.task', CASE WHEN g % 2 = 0 THEN 'default' ELSE 'emails' END, g % 3,
                   now() - interval '1 minute', 3
              FROM generate_series(1, {DUE}) AS g"""
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (task, queue, priority, status, attempts, max_attempts,
                                  lease_token, lease_expires_at, started_at)
            SELECT 'busy.task', 'default', 0, 'running', 1, 3, gen_random_uuid(),
                   now() + interval '1 hour', now()
              FROM generate_series(1, {RUNNING})"""
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (task, queue, priority, max_attempts)
            SELECT 'held.task', 'held', 0, 3 FROM generate_series(1, 100)"""
    )
    conn.execute(f"INSERT INTO {s}.queues (name, paused) VALUES ('held', true)")
    conn.execute(f"VACUUM ANALYZE {s}.jobs")
    conn.execute(f"VACUUM ANALYZE {s}.queues")


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) inside a transaction that is rolled back."""
    with conn.transaction(force_rollback=True):
        prefix = psycopg.sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ")
        row = conn.execute(prefix + query, params).fetchone()
    assert row is not None
    data = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan: dict[str, Any] = data[0]["Plan"]
    return plan


def explain_function(
    conn: psycopg.Connection[Any], schema: str, function: str, queues: list[str] | None
) -> dict[str, Any]:
    """EXPLAIN the body of a SQL function (whose own EXPLAIN would show a bare Result)."""
    row = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = %s::regnamespace",
        (function, schema),
    ).fetchone()
    assert row is not None
    body = re.sub(r"(?<![.\w])queues(?!\w)", "$1", row[0])
    name = f"explain_{function}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"PREPARE {name}(text[]) AS {body}")
    try:
        call = psycopg.sql.SQL("EXECUTE {}({}::text[])").format(
            psycopg.sql.Identifier(name), psycopg.sql.Literal(queues)
        )
        return explain(conn, call)
    finally:
        conn.execute(f"DEALLOCATE {name}")


CLAIM_PARAMETERS = ("served_queues", "max_jobs", "worker", "lease_seconds")


def claim_statements(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """The two statements of the claim() function: "lean" (no queue paused or limited) and
    "full" (the rest), as the PL/pgSQL wrapper runs them while nobody watches; "lean+told"
    and "full+told" are their announcing twins (migration 0005)."""
    row = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = 'claim' AND pronamespace = %s::regnamespace",
        (schema,),
    ).fetchone()
    assert row is not None
    parts = str(row[0]).split("RETURN QUERY")
    assert len(parts) == 5, "claim() has a lean and a full statement, each with its twin"
    statements = [p.split(";", 1)[0] for p in parts[1:]]
    return dict(zip(("lean+told", "lean", "full+told", "full"), statements, strict=True))


def prepare_claim(conn: psycopg.Connection[Any], schema: str, statement: str) -> str:
    """PREPARE one statement of claim() on ``conn``; returns its name (DEALLOCATE it)."""
    body = claim_statements(conn, schema)[statement]
    # The full statement serves the limited queues claim() locked just before it (migration
    # 0003); standalone, with nobody else claiming, that is every served limited queue.
    body = body.replace(
        "locked_queues",
        f"ARRAY(SELECT lq.name FROM {schema}.queues AS lq WHERE NOT lq.paused"
        " AND (lq.concurrency_limit IS NOT NULL OR lq.rate_limit IS NOT NULL)"
        " AND (served_queues IS NULL OR lq.name = ANY (served_queues)))",
    )
    for number, parameter in enumerate(CLAIM_PARAMETERS, start=1):
        body = re.sub(rf"(?<![.\w]){parameter}(?!\w)", f"${number}", body)
    name = f"claim_{statement.replace('+', '_')}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"PREPARE {name}(text[], integer, uuid, double precision) AS {body}")
    return name


def claim_call(name: str, queues: list[str] | None, limit: int) -> psycopg.sql.Composed:
    return psycopg.sql.SQL("EXECUTE {}({}::text[], {}, {}::uuid, 30.0)").format(
        psycopg.sql.Identifier(name),
        psycopg.sql.Literal(queues),
        psycopg.sql.Literal(limit),
        psycopg.sql.Literal(str(uuid.uuid4())),
    )


def explain_claim(
    conn: psycopg.Connection[Any],
    schema: str,
    queues: list[str] | None,
    statement: str = "lean",
) -> dict[str, Any]:
    """EXPLAIN one statement of the claim() function, run as the worker runs it (JIT off)."""
    name = prepare_claim(conn, schema, statement)
    try:
        call = claim_call(name, queues, CLAIM_LIMIT)
        with conn.transaction(force_rollback=True):
            # As the function runs it: JIT off, and the generic plan made once per connection.
            conn.execute("SET LOCAL jit = off")
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            return explain(conn, call)
    finally:
        conn.execute(f"DEALLOCATE {name}")


def explain_generic(
    conn: psycopg.Connection[Any], statement: bytes, params: Mapping[str, Any]
) -> dict[str, Any]:
    """EXPLAIN a named statement of pgjobs/sql with the generic plan a pooled, prepared
    connection ends up using (the plan that must stay on the primary key)."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = re.sub(r"%\((\w+)\)s", placeholder, statement.decode())
    name = f"explain_generic_{uuid.uuid4().hex[:6]}"
    conn.execute(f"PREPARE {name} AS {body}")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            literals = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(params[n]) for n in names)
            call = psycopg.sql.SQL("EXECUTE {}({})").format(psycopg.sql.Identifier(name), literals)
            return explain(conn, call)
    finally:
        conn.execute(f"DEALLOCATE {name}")


def jobs_touched(plan: dict[str, Any], relation: str = "jobs") -> dict[str, int]:
    """Rows and buffers the plan spent on the jobs table, and the indexes it used."""
    rows = removed = 0
    indexes: set[str] = set()
    seq_scans = 0
    for node in plan_nodes(plan):
        if node.get("Relation Name") != relation:
            continue
        loops = node.get("Actual Loops", 1)
        if node["Node Type"] == "Seq Scan":
            seq_scans += 1
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        rows += node.get("Actual Rows", 0) * loops
        removed += (
            node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        ) * loops
    return {
        "rows": rows,
        "removed": removed,
        "seq_scans": seq_scans,
        "buffers": plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0),
        "indexes": sorted(indexes),  # type: ignore[dict-item]
    }


def text_plan(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> str:
    with conn.transaction(force_rollback=True):
        prefix = psycopg.sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ")
        return "\n".join(r[0] for r in conn.execute(prefix + query, params).fetchall())


if __name__ == "__main__":  # pragma: no cover - a tool for docs/design.md
    import os

    with psycopg.connect(os.environ["PGJOBS_DSN"], autocommit=True) as conn:
        if conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,):
            fill(conn)
        plan = explain_claim(conn, "pgjobs", None)
        print("-- claim (all queues), JSON plan:\n" + json.dumps(plan, indent=1))
        for fn in ("backlog", "demand", "oldest_ready_age"):
            print(f"-- {fn}(NULL)")
            row = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", (fn,)).fetchone()
            assert row is not None
            body = re.sub(r"(?<![.\w])queues(?!\w)", "$1", row[0])
            conn.execute(f"PREPARE p_{fn}(text[]) AS {body}")
            print(text_plan(conn, psycopg.sql.SQL(f"EXECUTE p_{fn}(NULL)")))  # type: ignore[arg-type]
