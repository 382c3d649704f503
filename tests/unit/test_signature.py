"""pgjobs.verify_signature, as a receiver uses it: the signature of SPEC.md, checked on the
raw body, in constant time, refusing stale timestamps and anything malformed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

import pgjobs
from pgjobs.callbacks import sign

SECRET = "whsec-test"
BODY = b'{"id":42,"status":"succeeded","result":{"n":1}}'
NOW = 1_800_000_000


def header(body: bytes = BODY, secret: str = SECRET, at: int = NOW) -> str:
    return sign(secret, body, timestamp=at)


def test_the_header_is_what_the_spec_says() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header() == f"t={NOW},v1={expected}"


def test_a_good_signature_verifies() -> None:
    assert pgjobs.verify_signature(SECRET, header(), BODY, now=NOW)
    assert pgjobs.verify_signature(SECRET.encode(), header(), BODY, now=NOW + 299)
    assert pgjobs.verify_signature(SECRET, header(), BODY.decode(), now=NOW), "text bodies too"
    assert pgjobs.verify_signature(SECRET, header().replace(",", ", "), BODY, now=NOW)


def test_a_tampered_body_fails() -> None:
    assert not pgjobs.verify_signature(SECRET, header(), BODY.replace(b"42", b"43"), now=NOW)
    reencoded = b'{"id": 42, "status": "succeeded", "result": {"n": 1}}'
    assert not pgjobs.verify_signature(SECRET, header(), reencoded, now=NOW), "the raw bytes count"


def test_a_wrong_secret_fails() -> None:
    assert not pgjobs.verify_signature("another", header(), BODY, now=NOW)
    assert not pgjobs.verify_signature("", header(), BODY, now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_a_stale_or_future_timestamp_fails(offset: int) -> None:
    assert not pgjobs.verify_signature(SECRET, header(), BODY, now=NOW + offset)
    assert pgjobs.verify_signature(SECRET, header(), BODY, now=NOW + offset, tolerance=abs(offset))


def test_the_timestamp_is_signed_too() -> None:
    mac = header().split("v1=")[1]
    replayed = f"t={NOW + 1000},v1={mac}"  # a captured request with a fresh timestamp
    assert not pgjobs.verify_signature(SECRET, replayed, BODY, now=NOW + 1000)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "v1=abc",
        f"t={NOW}",
        f"t=abc,v1={'0' * 64}",
        f"t=-5,v1={'0' * 64}",
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t={NOW};v1={'0' * 64}",
        f"t={NOW},v1=é",
        f"t={NOW},v1=",
    ],
)
def test_a_malformed_header_fails(value: str | None) -> None:
    assert not pgjobs.verify_signature(SECRET, value, BODY, now=NOW)


def test_any_of_several_signatures_may_match() -> None:
    """Room for a sender signing with two secrets during a rotation."""
    good = header().split("v1=")[1]
    assert pgjobs.verify_signature(SECRET, f"t={NOW},v1={'0' * 64},v1={good}", BODY, now=NOW)
    assert pgjobs.verify_signature(SECRET, f"t={NOW},v0=zz,v1={good.upper()}", BODY, now=NOW)


def test_now_defaults_to_the_clock() -> None:
    assert pgjobs.verify_signature(SECRET, sign(SECRET, BODY), BODY)
