"""The HTTP API fuzzed from its own OpenAPI document: no request, however malformed, gets a
5xx, and the answers conform to the document (status codes, content types, JSON schemas).

Schemathesis reads ``/openapi.json`` from a live server (real TCP, API tokens configured)
and runs every one of its phases on every operation: the document's examples; *coverage*
(boundary and malformed values of each parameter and body field, ids of 0, 2**63, "null");
*fuzzing* (random valid and invalid requests, ``MAX_EXAMPLES`` per operation); *stateful*
(chains that follow the ``Location`` of a POST /jobs into the id routes, so they reach rows
as well as 404s). Its ``--checks all`` include ``not_a_server_error``; the one left out is
:data:`EXCLUDED_CHECKS`.

It runs as its command line in a subprocess rather than through its pytest plugin: the
plugin's ``from_fixture`` (a schema that needs a live server cannot be loaded at collection
time) does not run under pytest 9.2, and the command line is the stable interface, with a
report meant to be read: a failure shows the request as a curl command. The HAR file of the
run (every exchange, the standard HTTP Archive format) is then read back for assertions of
this module's own: no 5xx anywhere, every documented operation exercised, id routes that
reached real jobs, every error in the API's JSON shape.

Reproducible: a fixed seed, one worker, no example database; the run's files (HAR, the
caches Hypothesis keeps) go to the test's temporary directory, never into the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from web_support import TOKEN, LiveServer, claim, count_jobs, finish

from pgjobs.types import JobStatus

#: Hypothesis' seed for every phase: the same requests on every run, locally and in CI.
SEED = 20260131
#: Fuzzing-phase examples per operation (the coverage and stateful phases add their own).
MAX_EXAMPLES = 50
#: The run without a token: only showing that nothing gets past authentication.
MAX_EXAMPLES_WITHOUT_TOKEN = 5
#: ``positive_data_acceptance`` wants every request the document allows to succeed. The
#: API documents (docs/http.md, and the 422 of every operation) that rules OpenAPI cannot
#: express are checked by the server: names (``?queue=`` empty, a task "<script>"),
#: durations ("soon"), fields that exclude each other (Idempotency-Key with dedupe_for).
EXCLUDED_CHECKS = ("positive_data_acceptance",)
#: Read by schemathesis from a file only. ``max-stream-events``: GET /jobs/{id}/events of a
#: job that does not end streams until the request timeout; the first event is enough.
CONFIG = """\
max-stream-events = 1
request-timeout = 10
[cache]
enabled = false
[generation]
database = "none"
"""
#: The body of every error answer (pgjobs.web.errors).
ERROR_KEYS = {"error", "message"}


@dataclass(frozen=True)
class Exchange:
    """One request of the run and its answer, as the HAR file has them."""

    method: str
    url: str
    status: int
    body: str
    request_body: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def __str__(self) -> str:
        sent = f" with {self.request_body[:300]!r}" if self.request_body else ""
        return f"{self.method} {self.url}{sent} -> {self.status} {self.body[:300]!r}"


@dataclass(frozen=True)
class Operation:
    """An operation of the OpenAPI document, and which request paths are its."""

    method: str
    path: str
    public: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def serves(self, exchange: Exchange) -> bool:
        template = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(self.path))
        return exchange.method == self.method and re.fullmatch(template, exchange.path) is not None


@dataclass(frozen=True)
class Run:
    """What a schemathesis run printed, how it exited, and every exchange it made."""

    returncode: int
    output: str
    exchanges: list[Exchange]

    def report(self) -> str:
        """The part of the output that says what failed (the whole output if none does)."""
        failures = re.search(r"^=+ FAILURES =+$", self.output, re.MULTILINE)
        return self.output[failures.start() :] if failures else self.output

    def of(self, operation: Operation) -> list[Exchange]:
        return [e for e in self.exchanges if operation.serves(e)]


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of the document; public ones declare ``security: []``."""
    return [
        Operation(method.upper(), path, public=spec.get("security") == [])
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    ]


def schemathesis(
    tmp_path: Path, location: str, *arguments: str, max_examples: int, phases: str
) -> Run:
    """``st run LOCATION`` (``python -m schemathesis.cli``), in ``tmp_path``."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    har = tmp_path / "exchanges.har"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
            "run", location, *arguments,
            "--phases", phases,
            "--max-examples", str(max_examples), "--seed", str(SEED), "--workers", "1",
            "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
            "--report", "har", "--report-har-path", str(har),
        ],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert har.exists(), f"schemathesis did not run:\n{output}"
    return Run(done.returncode, output, list(read_har(har)))


def read_har(path: Path) -> Iterable[Exchange]:
    for entry in json.loads(path.read_text())["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        yield Exchange(
            method=request["method"],
            url=request["url"],
            status=response["status"],
            body=response.get("content", {}).get("text", ""),
            request_body=request.get("postData", {}).get("text", ""),
            headers={h["name"].lower(): h["value"] for h in response["headers"]},
        )


def guarded_server(serve: Callable[..., LiveServer]) -> LiveServer:
    """A server that wants :data:`TOKEN` (LiveServer's connections go without Nagle's
    algorithm: see web_support)."""
    return serve(tokens=(TOKEN,))


def fetch_document(server: LiveServer) -> dict[str, Any]:
    with server.client(TOKEN) as http:
        answer = http.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def seed_jobs(server: LiveServer, conn: psycopg.Connection[Any]) -> dict[str, int]:
    """A job in each state, so that the ids the fuzzer tries (small ones first, and those
    POST /jobs returns) land on every branch of cancel, retry, GET and the event stream."""
    with server.client(TOKEN) as http:

        def enqueue(body: dict[str, Any]) -> int:
            answer = http.post("/jobs", json=body)
            assert answer.status_code == 202, answer.text
            job_id: int = answer.json()["id"]
            return job_id

        jobs = {
            state: enqueue({"task": f"fuzz.{state}"})
            for state in ("queued", "running", "succeeded", "failed", "cancelled")
        }
        jobs["with callback"] = enqueue(
            {"task": "fuzz.hook", "callback_url": "https://hooks.example.com/done"}
        )
        jobs["blocked"] = enqueue({"task": "fuzz.after", "depends_on": [jobs["queued"]]})
        jobs["scheduled"] = enqueue({"task": "fuzz.later", "delay": "1d", "dedupe_key": "k"})
        for state in ("running", "succeeded", "failed"):
            lease = claim(conn, jobs[state])
            if state == "succeeded":
                finish(conn, jobs[state], lease)
            elif state == "failed":
                finish(conn, jobs[state], lease, JobStatus.FAILED, error="boom")
        assert http.post(f"/jobs/{jobs['cancelled']}/cancel").status_code == 200
    return jobs


def no_server_errors(run: Run) -> None:
    errors = [str(e) for e in run.exchanges if e.status >= 500]
    assert not errors, "5xx answers:\n" + "\n".join(errors) + "\n\n" + run.report()


def json_errors(run: Run) -> None:
    """Every 4xx is the API's JSON error, whatever the input (a traceback or an HTML page
    would be a handler that let something through)."""
    wrong = []
    for exchange in run.exchanges:
        if 400 <= exchange.status < 500:
            try:
                body = json.loads(exchange.body)
            except ValueError:
                body = None
            if not isinstance(body, dict) or not body.keys() >= ERROR_KEYS:
                wrong.append(str(exchange))
    assert not wrong, "4xx answers without the JSON error shape:\n" + "\n".join(wrong)


def passed_run(run: Run, document: dict[str, Any]) -> Iterator[tuple[Operation, list[Exchange]]]:
    """What both runs demand (no 5xx, schemathesis satisfied, every 4xx in the JSON error
    shape), then each operation of the document with its exchanges, none left unexercised."""
    no_server_errors(run)
    assert run.returncode == 0, run.report()
    json_errors(run)
    for operation in operations(document):
        exchanges = run.of(operation)
        assert exchanges, f"{operation.label} was not exercised:\n{run.output}"
        yield operation, exchanges


def test_no_request_gets_a_server_error(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """With the token, every operation is fuzzed through to its handler."""
    server = guarded_server(serve)
    jobs = seed_jobs(server, conn)
    document = fetch_document(server)

    run = schemathesis(
        tmp_path,
        f"{server.url}/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        max_examples=MAX_EXAMPLES,
        phases="examples,coverage,fuzzing,stateful",
    )  # fmt: skip

    for operation, exchanges in passed_run(run, document):
        answered = {e.status for e in exchanges}
        if "{job_id}" in operation.path:
            # 200 (or 409: the job's state forbids it) means the handler found a job.
            assert answered & {200, 409}, f"{operation.label} never reached a job: {answered}"
        else:
            assert answered & {200, 202}, f"{operation.label} never succeeded: {answered}"
    assert len(jobs) < count_jobs(conn)  # POST /jobs enqueued for real


def test_without_a_token_nothing_gets_past_authentication(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Without the token (none, or the random ones schemathesis makes up for the bearer
    scheme), every operation but /healthz is a 401 with the JSON error, and nothing is
    stored. The document is read with the token and handed over as a file."""
    server = guarded_server(serve)
    document = fetch_document(server)
    (tmp_path / "openapi.json").write_text(json.dumps(document))

    run = schemathesis(
        tmp_path,
        str(tmp_path / "openapi.json"),
        "--url", server.url,
        max_examples=MAX_EXAMPLES_WITHOUT_TOKEN,
        phases="examples,coverage,fuzzing",
    )  # fmt: skip

    for operation, exchanges in passed_run(run, document):
        if operation.public:
            continue
        through = [str(e) for e in exchanges if e.status != 401]
        assert not through, f"{operation.label} answered without a token:\n" + "\n".join(through)
        assert all(e.headers.get("www-authenticate") for e in exchanges)
    assert count_jobs(conn) == 0


@pytest.mark.parametrize(
    ("path", "template", "matches"),
    [
        ("/jobs/12/cancel", "/jobs/{job_id}/cancel", True),
        ("/jobs/12", "/jobs/{job_id}/cancel", False),
        ("/jobs/a%2Fb/cancel", "/jobs/{job_id}/cancel", True),
        ("/jobs", "/jobs/{job_id}", False),
    ],
)
def test_exchanges_are_matched_to_their_operation(path: str, template: str, matches: bool) -> None:
    """The coverage assertions above rely on this matching."""
    exchange = Exchange("POST", f"http://127.0.0.1:1{path}", 200, "", "", {})
    assert Operation("POST", template, public=False).serves(exchange) is matches
