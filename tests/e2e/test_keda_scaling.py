"""What KEDA would do, without a cluster: a controller loop in the test reads the trigger
query (``pgjobs keda-query``) every polling interval and runs ``ceil(demand / target)``
``pgjobs worker`` processes ("pods"), none while the value is at or below the activation
value, scaling down only after a cooldown. A backlog of 2,000 jobs is drained from zero
replicas and the fleet returns to zero; a pod evicted with SIGTERM in the middle of a long
job hands it back, and another pod finishes it: nothing is lost."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgjobs.keda import trigger_query
from pgjobs.testing import wait_for

APP = """
import asyncio, os, time
import psycopg
import pgjobs

app = pgjobs.App()
POD = os.environ["POD_NAME"]

def record(kind):
    with psycopg.connect(os.environ["PGJOBS_DSN"], autocommit=True) as conn:
        conn.execute("INSERT INTO runs (job_id, pod, kind) VALUES (%s, %s, %s)",
                     (pgjobs.current_job().id, POD, kind))

@app.task(name="short", queue="sim")
async def short(n: int) -> int:
    await asyncio.sleep(0.005)
    return n

@app.task(name="long", queue="sim")
def long(n: int) -> str:
    record("start")
    time.sleep(3)
    record("end")
    return POD
"""

SHORT_JOBS = 2000
LONG_JOBS = 6
TARGET = 200  # targetQueryValue: jobs (ready + running) one pod takes on
ACTIVATION = 0  # activationTargetQueryValue: no pod at all while the demand is 0
MAX_REPLICAS = 4
POLLING = 0.2  # seconds (pollingInterval, scaled down for a test)
COOLDOWN = 1.0  # seconds with a lower wish before scaling down (cooldownPeriod)


@dataclass
class Controller:
    """A KEDA ScaledObject and its HPA, reduced to what decides the number of pods."""

    project: Path
    dsn: str
    query: str
    pods: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    started: int = 0
    peak: int = 0
    lower_since: float | None = None

    def desired(self, value: int) -> int:
        if value <= ACTIVATION:
            return 0
        return min(MAX_REPLICAS, math.ceil(value / TARGET))

    def reconcile(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(self.query).fetchone()
        assert row is not None
        value = int(row[0])
        self.forget_exited()
        want = self.desired(value)
        if want > len(self.pods):
            self.lower_since = None
            while len(self.pods) < want:
                self.start_pod()
        elif want < len(self.pods):
            now = time.monotonic()
            self.lower_since = self.lower_since or now
            if now - self.lower_since >= COOLDOWN:
                leaving = [self.pods[name] for name in sorted(self.pods)[want:]]
                for process in leaving:
                    process.send_signal(signal.SIGTERM)  # the kubelet, scaling down
                for process in leaving:  # terminationGracePeriodSeconds
                    process.wait(20)
                self.forget_exited()
                self.lower_since = None
        self.peak = max(self.peak, len(self.pods))
        return value

    def start_pod(self) -> str:
        self.started += 1
        name = f"pod-{self.started}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
        env.update(PGJOBS_DSN=self.dsn, POD_NAME=name, PGJOBS_LOG_FORMAT="json")
        log = open(self.project / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.pods[name] = subprocess.Popen(
            [str(Path(sys.executable).with_name("pgjobs")), "worker", "--app", "simapp",
             "-q", "sim", "--concurrency", "20", "--grace", "0.3s",
             "--health-file", str(self.project / f"{name}.health")],
            cwd=self.project, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        return name

    def forget_exited(self) -> None:
        for name, process in list(self.pods.items()):
            if process.poll() is not None:
                assert process.returncode == 0, f"{name} exited {process.returncode}"
                del self.pods[name]

    def stop_all(self) -> None:
        for process in self.pods.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_backlog_is_drained_from_zero_pods_and_the_fleet_returns_to_zero(
    tmp_path: Path, pgjobs_dsn: str, pgjobs_conn: psycopg.Connection[Any]
) -> None:
    (tmp_path / "simapp.py").write_text(APP)
    pgjobs_conn.execute(
        "CREATE TABLE runs (job_id bigint, pod text, kind text, at timestamptz DEFAULT clock_timestamp())"
    )
    controller = Controller(tmp_path, pgjobs_dsn, trigger_query("pgjobs", ["sim"], "demand"))
    try:
        # Idle: the trigger reads 0 and no pod starts (scale to zero holds).
        for _ in range(3):
            assert controller.reconcile(pgjobs_conn) == 0
        assert controller.pods == {}

        pgjobs_conn.execute(
            "INSERT INTO pgjobs.jobs (task, queue, args) SELECT 'long', 'sim', jsonb_build_object('n', i)"
            " FROM generate_series(1, %s) AS i",
            (LONG_JOBS,),
        )
        pgjobs_conn.execute(
            "INSERT INTO pgjobs.jobs (task, queue, args) SELECT 'short', 'sim', jsonb_build_object('n', i)"
            " FROM generate_series(1, %s) AS i",
            (SHORT_JOBS,),
        )
        evicted: tuple[str, int] | None = None
        deadline = time.monotonic() + 120
        while True:
            value = controller.reconcile(pgjobs_conn)
            if evicted is None:
                evicted = evict_a_pod_in_a_long_job(controller, pgjobs_conn)
            if value == 0 and not controller.pods and evicted is not None:
                break
            assert time.monotonic() < deadline, (
                f"not drained and scaled to zero in time: demand {value}, pods {sorted(controller.pods)}"
            )
            time.sleep(POLLING)
    finally:
        controller.stop_all()

    statuses = dict(
        pgjobs_conn.execute("SELECT status, count(*) FROM pgjobs.jobs GROUP BY status").fetchall()
    )
    assert statuses == {"succeeded": SHORT_JOBS + LONG_JOBS}, statuses
    assert controller.peak == MAX_REPLICAS, "the backlog should have scaled the fleet out"
    assert controller.pods == {}
    assert evicted is not None
    pod, job_id = evicted
    runs = pgjobs_conn.execute(
        "SELECT pod, kind FROM runs WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    assert runs[0] == (pod, "start")
    assert (pod, "end") not in runs, "the evicted pod should have handed the job back"
    finisher = pgjobs_conn.execute(
        "SELECT result #>> '{}', attempts FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert finisher is not None
    assert finisher[0] != pod, "another pod finishes the handed-back job"
    assert finisher[1] == 1, "a hand-back at shutdown does not count as an attempt"


def evict_a_pod_in_a_long_job(
    controller: Controller, conn: psycopg.Connection[Any]
) -> tuple[str, int] | None:
    """SIGTERM the first pod seen running a long job (an eviction or a node drain), wait for
    it to exit 0, and return it with the job it was running."""
    row = conn.execute(
        "SELECT pod, job_id FROM runs WHERE kind = 'start' ORDER BY at LIMIT 1"
    ).fetchone()
    if row is None or row[0] not in controller.pods:
        return None
    pod, job_id = row
    process = controller.pods[pod]
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0, f"{pod} did not exit 0 after SIGTERM"
    wait_for(
        lambda: (
            conn.execute(
                "SELECT status = 'queued' OR (status = 'running' AND lease_token IS NOT NULL)"
                " FROM pgjobs.jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            == (True,)
        ),
        message=f"job {job_id} was not handed back by {pod}",
    )
    return pod, int(job_id)
