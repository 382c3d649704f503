"""Retry backoff (pgjobs.backoff): exponential growth, the cap, jitter bounds, refusal of
invalid policies and RetryPolicy.of with CLI-style durations."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from pgjobs.backoff import DEFAULT_POLICY, RetryPolicy
from pgjobs.errors import InvalidInput


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def test_default_policy() -> None:
    expected = RetryPolicy(
        base=timedelta(seconds=1), factor=2.0, maximum=timedelta(hours=1), jitter=0.25
    )
    assert expected == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512), (12, 2048), (13, 3600), (50, 3600)],
)
def test_without_jitter_delay_doubles_then_caps(attempt: int, expected: float) -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay(attempt) == timedelta(seconds=expected)


def test_delay_grows_by_the_factor() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), factor=3, maximum=timedelta(days=1), jitter=0)
    delays = [seconds(policy.delay(n)) for n in range(1, 6)]
    assert delays == [5, 15, 45, 135, 405]


def test_factor_one_is_constant() -> None:
    policy = RetryPolicy(base=timedelta(seconds=7), factor=1, jitter=0)
    assert {policy.delay(n) for n in range(1, 20)} == {timedelta(seconds=7)}


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_attempt_below_one_gets_the_base(attempt: int) -> None:
    assert RetryPolicy(base=timedelta(seconds=3), jitter=0).delay(attempt) == timedelta(seconds=3)


def test_cap_is_the_maximum() -> None:
    policy = RetryPolicy(base=timedelta(seconds=10), maximum=timedelta(seconds=25), jitter=0)
    assert [seconds(policy.delay(n)) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]


def test_zero_base_means_immediate_retries() -> None:
    policy = RetryPolicy(base=timedelta(0), maximum=timedelta(0))
    assert {policy.delay(n, random.Random(n)) for n in range(1, 10)} == {timedelta(0)}


@pytest.mark.parametrize("jitter", [0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("attempt", [1, 3, 20])
def test_jitter_stays_within_bounds(jitter: float, attempt: int) -> None:
    policy = RetryPolicy(
        base=timedelta(seconds=2), factor=2, maximum=timedelta(minutes=10), jitter=jitter
    )
    nominal = min(2 * 2 ** (attempt - 1), 600)
    rng = random.Random(1234)
    draws = [seconds(policy.delay(attempt, rng)) for _ in range(2000)]
    low, high = nominal * (1 - jitter), nominal * (1 + jitter)
    assert all(low - 1e-6 <= d <= high + 1e-6 for d in draws)
    # The spread is really used, on both sides of the nominal value.
    assert min(draws) < nominal * (1 - jitter / 2)
    assert max(draws) > nominal * (1 + jitter / 2)
    assert len(set(draws)) > 1000


def test_jitter_uses_the_given_rng_deterministically() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, random.Random(42)) for n in range(1, 8)]
    second = [policy.delay(n, random.Random(42)) for n in range(1, 8)]
    assert first == second


def test_cap_applies_before_jitter() -> None:
    # At the cap the delay may exceed maximum by up to the jitter, never by more.
    policy = RetryPolicy(maximum=timedelta(seconds=100), jitter=0.2)
    rng = random.Random(7)
    draws = [seconds(policy.delay(30, rng)) for _ in range(1000)]
    assert all(80 - 1e-6 <= d <= 120 + 1e-6 for d in draws)
    assert max(draws) > 110


def test_default_rng_is_used_without_one() -> None:
    policy = RetryPolicy(base=timedelta(seconds=10), jitter=0.5)
    for _ in range(200):
        assert 5 - 1e-6 <= seconds(policy.delay(1)) <= 15 + 1e-6


def test_large_attempts_are_capped_not_overflowing() -> None:
    policy = RetryPolicy(factor=3.0, jitter=0)
    assert policy.delay(1000) == timedelta(hours=1)


# --- invalid policies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"base": timedelta(seconds=-1)}, "retry policy: need 0 <= base <= maximum"),
        (
            {"base": timedelta(minutes=10), "maximum": timedelta(minutes=5)},
            "retry policy: need 0 <= base <= maximum",
        ),
        ({"factor": 0.5}, "retry policy: factor must be at least 1"),
        ({"factor": 0}, "retry policy: factor must be at least 1"),
        ({"factor": -2}, "retry policy: factor must be at least 1"),
        ({"jitter": -0.1}, "retry policy: jitter is a fraction between 0 and 1"),
        ({"jitter": 1.01}, "retry policy: jitter is a fraction between 0 and 1"),
        ({"jitter": float("nan")}, "retry policy: jitter is a fraction between 0 and 1"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == text


def test_boundary_policies_are_accepted() -> None:
    RetryPolicy(base=timedelta(0), maximum=timedelta(0), factor=1, jitter=0)
    RetryPolicy(base=timedelta(hours=1), maximum=timedelta(hours=1), jitter=1)


def test_nan_factor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="factor must be a finite number"):
        RetryPolicy(factor=float("nan"))


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.factor = 3  # type: ignore[misc]


# --- RetryPolicy.of -----------------------------------------------------------------------------


def test_of_parses_cli_durations() -> None:
    policy = RetryPolicy.of("5s", "10m")
    assert policy == RetryPolicy(
        base=timedelta(seconds=5), factor=2.0, maximum=timedelta(minutes=10), jitter=0.25
    )


def test_of_accepts_numbers_and_other_settings() -> None:
    policy = RetryPolicy.of(2, 60, factor=3, jitter=0)
    assert (policy.base, policy.maximum, policy.factor, policy.jitter) == (
        timedelta(seconds=2),
        timedelta(minutes=1),
        3,
        0,
    )
    assert [seconds(policy.delay(n)) for n in (1, 2, 3, 4)] == [2, 6, 18, 54]
    assert policy.delay(5) == timedelta(minutes=1)


def test_of_defaults_match_the_default_policy() -> None:
    assert RetryPolicy.of() == DEFAULT_POLICY


def test_of_names_the_bad_duration() -> None:
    with pytest.raises(InvalidInput, match=r"^invalid retry base 'soon': use a number"):
        RetryPolicy.of("soon")
    with pytest.raises(InvalidInput, match=r"^invalid retry maximum '-1': use a number"):
        RetryPolicy.of("1s", "-1")


def test_of_refuses_a_base_above_the_maximum() -> None:
    with pytest.raises(InvalidInput, match=r"^retry policy: need 0 <= base <= maximum$"):
        RetryPolicy.of("10m", "5s")
