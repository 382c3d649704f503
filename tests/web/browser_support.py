"""Helpers of the dashboard's browser tests (test_dashboard_browser.py): finding the
system's Chromium, a browser tab that records what went wrong in its scripts, and a real
worker running a task that fails until the test fixes it.

The browser is the distribution's Chromium (``apt-get install chromium``), driven by
Playwright: no browser is ever downloaded (``playwright install`` needs the internet)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Error, Expect, Page
from web_support import RunningWorker

import pgjobs
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.runtime import Worker

#: Every wait of the browser tests (page loads, clicks, expectations), in milliseconds:
#: generous, so that a slow machine is slow rather than red.
WAIT_MS = 15_000
#: The same bound for waits on the database or on the worker, in seconds.
WAIT_SECONDS = WAIT_MS / 1000
#: The names the distributions give the browser's command.
CHROMIUM_COMMANDS = ("chromium", "chromium-browser")

#: Playwright's auto-retrying expectations, each bounded by :data:`WAIT_MS` (Playwright's
#: default is 5 s): an instance of our own, so the global ``expect`` is left as it is.
expect = Expect()
expect.set_options(timeout=WAIT_MS)


def find_chromium() -> str | None:
    """The system Chromium's executable, or None when it is not installed."""
    for command in CHROMIUM_COMMANDS:
        found = shutil.which(command)
        if found:
            return found
    return None


@dataclass
class Tab:
    """A page of its own browser context (own cookies), and what its scripts did wrong:
    uncaught exceptions, and content security policy violations (which would mean that a
    page tried to run or load something it should not)."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def on_error(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error.message}")

    def assert_clean(self) -> None:
        assert self.problems == [], f"the pages' scripts went wrong: {self.problems}"


@contextmanager
def open_tab(browser: Browser, **context_options: Any) -> Iterator[Tab]:
    """A fresh context (no cookies from other tests) with one page; closed on exit, which
    also ends any event stream the page holds before the test's server stops."""
    context = browser.new_context(**context_options)
    try:
        context.set_default_timeout(WAIT_MS)
        tab = Tab(context.new_page())
        tab.page.on("console", tab.on_console)
        tab.page.on("pageerror", tab.on_error)
        yield tab
    finally:
        context.close()


@dataclass
class Flaky:
    """The switches of the ``web.flaky`` task: it fails while ``fixed`` is unset; once it is
    set, a run waits for ``release`` before it succeeds (so the test can watch it run)."""

    fixed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def open_all(self) -> None:
        self.fixed.set()
        self.release.set()


FLAKY_TASK = "web.flaky"


@contextmanager
def flaky_worker(dsn: str) -> Iterator[Flaky]:
    """A real worker (a thread of the test process, on the test's database) that runs
    ``web.flaky``; stopped on exit, after every switch is opened so no run is left waiting."""
    switches = Flaky()
    worker_app = pgjobs.App(dsn)

    @worker_app.task(name=FLAKY_TASK)
    def flaky(note: str) -> dict[str, str]:
        if not switches.fixed.is_set():
            raise RuntimeError(f"the flag is unset ({note})")
        if not switches.release.wait(WAIT_SECONDS):
            raise TimeoutError("the test never released the run")
        return {"fixed": note}

    running = RunningWorker(Worker(worker_app, WorkerConfig(tick_interval=0.5, log_jobs=False)))
    try:
        yield switches
    finally:
        switches.open_all()
        running.stop()
        worker_app.close()
