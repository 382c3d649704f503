"""Fixtures of the integration tests: an App on the test database, and in-process workers
stopped gracefully at the end of each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from workers import Running

import pgjobs
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.runtime import Worker


@pytest.fixture
def app(pgjobs_dsn: str) -> Iterator[pgjobs.App]:
    app = pgjobs.App(pgjobs_dsn)
    yield app
    app.close()


@pytest.fixture
def start(app: pgjobs.App) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start_worker(**options: Any) -> Running:
        options.setdefault("tick_interval", 0.5)
        options.setdefault("log_jobs", False)
        running = Running(Worker(app, WorkerConfig(**options)))
        started.append(running)
        return running

    yield start_worker
    for running in started:
        if running.thread.is_alive():
            running.stop()
