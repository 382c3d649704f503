"""The options ``pgjobs serve`` checks before starting (no database, no server)."""

from __future__ import annotations

import pytest

import pgjobs
from pgjobs.errors import ConfigError, InvalidInput
from pgjobs.web.events import EventHub, last_event_id
from pgjobs.web.options import is_loopback, parse_size, parse_tokens


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512KB", 512 * 1024), ("1MB", 1024**2), ("1mib", 1024**2),
     ("2m", 2 * 1024**2), ("1 GB", 1024**3), (4096, 4096)],
)  # fmt: skip
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MB", "MB", "-1", "0", "1TB", "ten"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_tokens() -> None:
    assert parse_tokens(None) == ()
    assert parse_tokens("0123456789abcdef, fedcba9876543210 ,") == (
        "0123456789abcdef",
        "fedcba9876543210",
    )
    with pytest.raises(ConfigError, match="token #1 is 5 characters long"):
        parse_tokens("short")
    with pytest.raises(ConfigError, match="token #2 has characters outside visible ASCII"):
        parse_tokens("0123456789abcdef,0123456789abcdéf")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
     ("10.1.2.3", False), ("192.0.2.1", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_last_event_id() -> None:
    assert last_event_id("12") == 12
    assert last_event_id(" 7 ") == 7
    for bad in (None, "", "x", "-1", "1.5", "9" * 30):
        assert last_event_id(bad) is None


def test_dispatch_wakes_only_the_streams_of_changed_jobs() -> None:
    hub = EventHub(pgjobs.App("postgresql://nowhere.invalid/x"), recheck_seconds=60)
    one, two, same = hub.subscribe(1), hub.subscribe(2), hub.subscribe(3)
    same.version = 4
    hub.dispatch('{"jobs": [[1, "succeeded", 3], [3, "running", 4], [9, "queued", 1]]}')
    assert one.changed.is_set() and not two.changed.is_set() and not same.changed.is_set()
    assert hub.ended["succeeded"] == 1 and hub.requeued == 1
    hub.dispatch("not json")  # an unexpected payload wakes everyone rather than miss a change
    assert two.changed.is_set() and same.changed.is_set()
    hub.unsubscribe(one)
    assert hub.streams == 2
