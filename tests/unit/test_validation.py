"""Input rules shared by every producer (pgjobs.validation): task and queue names, priority,
max_attempts, keys and callback URLs, with the messages naming the field and the range."""

from __future__ import annotations

from typing import Any

import pytest

from pgjobs import validation
from pgjobs.errors import InvalidInput

NAME_RULE = "characters among A-Z a-z 0-9 _ . : / -, starting with a letter, digit or _"


# --- task and queue names ---------------------------------------------------------------------


VALID_NAMES = ["emails.send", "a:b/c-d_e", "x", "_private", "0day", "A.B.C", "a--b..c//d::e"]
INVALID_NAMES: list[Any] = [
    "",
    " x",
    "x ",
    "x y",
    ".x",
    "-x",
    ":x",
    "/x",
    "é",
    "emails.sénd",
    "a\tb",
    "a\x00",
    "a*b",
    "a,b",
]


@pytest.mark.parametrize("name", [*VALID_NAMES, "t" * 200])
def test_valid_task_names(name: str) -> None:
    assert validation.task_name(name) == name


@pytest.mark.parametrize("name", [*INVALID_NAMES, "t" * 201, None, 5, b"emails"])
def test_invalid_task_names_are_refused_with_the_rule(name: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.task_name(name)
    assert str(info.value) == f"invalid task name {name!r}: use 1-200 {NAME_RULE}"


@pytest.mark.parametrize("name", [*VALID_NAMES, "q" * 100])
def test_valid_queue_names(name: str) -> None:
    assert validation.queue_name(name) == name


@pytest.mark.parametrize("name", [*INVALID_NAMES, "q" * 101, "t" * 200, None, 1.5, ["q"]])
def test_invalid_queue_names_are_refused_with_the_rule(name: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.queue_name(name)
    assert str(info.value) == f"invalid queue name {name!r}: use 1-100 {NAME_RULE}"


def test_cached_check_does_not_let_an_invalid_name_through_twice() -> None:
    for _ in range(2):
        with pytest.raises(InvalidInput):
            validation.task_name("x y")
        assert validation.task_name("x.y") == "x.y"


@pytest.mark.parametrize("check", [validation.task_name, validation.queue_name])
def test_trailing_newline_in_a_name_is_refused(check: Any) -> None:
    with pytest.raises(InvalidInput):
        check("emails\n")


# --- priority and max_attempts ----------------------------------------------------------------


@pytest.mark.parametrize("value", [-1000, -1, 0, 1, 999, 1000])
def test_priority_in_range(value: int) -> None:
    assert validation.priority(value) == value


@pytest.mark.parametrize("value", [-1001, 1001, 10**9])
def test_priority_out_of_range(value: int) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.priority(value)
    assert str(info.value) == (
        f"priority {value} is out of range: use -1000..1000 (higher runs first)"
    )


@pytest.mark.parametrize("value", [True, False, 1.0, 0.5, "5", None])
def test_priority_must_be_an_integer(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.priority(value)
    assert str(info.value) == f"priority must be an integer, got {value!r}"


@pytest.mark.parametrize("value", [1, 3, 1000])
def test_max_attempts_in_range(value: int) -> None:
    assert validation.max_attempts(value) == value


@pytest.mark.parametrize("value", [0, -1, 1001])
def test_max_attempts_out_of_range(value: int) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.max_attempts(value)
    assert str(info.value) == f"max_attempts {value} is out of range: use 1..1000"


@pytest.mark.parametrize("value", [True, 3.0, "3"])
def test_max_attempts_must_be_an_integer(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.max_attempts(value)
    assert str(info.value) == f"max_attempts must be an integer, got {value!r}"


def test_defaults_are_within_their_ranges() -> None:
    assert validation.priority(validation.PRIORITY_DEFAULT) == 0
    assert validation.max_attempts(validation.MAX_ATTEMPTS_DEFAULT) == 3
    assert validation.queue_name(validation.QUEUE_DEFAULT) == "default"


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["k", "user:42 welcome", "é" * 512, "x" * 512])
def test_valid_keys(value: str) -> None:
    assert validation.key(value, "dedupe_key") == value


@pytest.mark.parametrize("value", ["", "x" * 513, None, 42, b"k"])
def test_invalid_keys_name_the_field(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.key(value, "lock_key")
    assert str(info.value) == "lock_key must be a string of 1-512 characters"


# --- callback URLs ----------------------------------------------------------------------------

URL_RULE = "an http:// or https:// URL of at most 2048 characters"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/hook?job=1&x=%20",
        "http://localhost:8080/",
        "https://x",
        "https://example.com/" + "a" * (2048 - len("https://example.com/")),
    ],
)
def test_valid_callback_urls(url: str) -> None:
    assert validation.callback_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://",
        "https://",
        "https://example.com/a b",
        " https://example.com",
        "https://example.com\t/x",
        "https://example.com/" + "a" * (2049 - len("https://example.com/")),
        None,
        42,
    ],
)
def test_invalid_callback_urls(url: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.callback_url(url)
    assert str(info.value) == f"invalid callback URL {url!r}: {URL_RULE}"


def test_callback_url_length_boundary() -> None:
    base = "https://example.com/"
    assert validation.callback_url(base + "a" * (2048 - len(base)))
    with pytest.raises(InvalidInput):
        validation.callback_url(base + "a" * (2049 - len(base)))


def test_callback_url_with_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validation.callback_url("https://example.com/hook\n")


@pytest.mark.parametrize(
    "url", ["http:///x", "https://?q=1", "http://#frag", "http://a b/c", "http://:80/x", "http://@"]
)
def test_a_callback_url_needs_a_host(url: str) -> None:
    with pytest.raises(InvalidInput, match="invalid callback URL"):
        validation.callback_url(url)


@pytest.mark.parametrize("url", ["http://a", "https://hooks.example.com:8443/p?q=1#f"])
def test_callback_urls_with_a_host_are_accepted(url: str) -> None:
    assert validation.callback_url(url) == url


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"])
@pytest.mark.parametrize("field", ["dedupe_key", "lock_key"])
def test_keys_postgresql_cannot_store_are_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: strings must"):
        validation.key(value, field)
