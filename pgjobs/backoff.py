"""How long to wait before the next attempt of a failed job."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from pgjobs.durations import parse_duration
from pgjobs.errors import InvalidInput

BASE_DEFAULT = timedelta(seconds=1)
FACTOR_DEFAULT = 2.0
MAX_DEFAULT = timedelta(hours=1)
JITTER_DEFAULT = 0.25


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``base * factor ** (attempt - 1)``, capped at ``maximum``,
    then spread by ``± jitter`` (a fraction) so that jobs failing together do not retry
    together."""

    base: timedelta = BASE_DEFAULT
    factor: float = FACTOR_DEFAULT
    maximum: timedelta = MAX_DEFAULT
    jitter: float = JITTER_DEFAULT

    def __post_init__(self) -> None:
        if self.base.total_seconds() < 0 or self.maximum < self.base:
            raise InvalidInput("retry policy: need 0 <= base <= maximum")
        if not math.isfinite(self.factor):
            raise InvalidInput("retry policy: factor must be a finite number")
        if self.factor < 1:
            raise InvalidInput("retry policy: factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidInput("retry policy: jitter is a fraction between 0 and 1")

    @classmethod
    def of(
        cls,
        base: str | float = 1,
        maximum: str | float = "1h",
        factor: float = 2.0,
        jitter: float = 0.25,
    ) -> RetryPolicy:
        """Build a policy from durations written like the CLI's (``"5s"``, ``"10m"``)."""
        return cls(
            base=parse_duration(base, field="retry base"),
            factor=factor,
            maximum=parse_duration(maximum, field="retry maximum"),
            jitter=jitter,
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        try:
            seconds = self.base.total_seconds() * self.factor ** max(attempt - 1, 0)
        except OverflowError:  # factor ** 1000: far past the cap anyway
            seconds = math.inf
        seconds = min(seconds, self.maximum.total_seconds())
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=max(0.0, seconds * (1 + spread)))


DEFAULT_POLICY = RetryPolicy()
