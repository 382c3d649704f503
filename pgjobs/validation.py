"""Input rules shared by every producer, mirrored by the table's CHECK constraints.

Checking here first gives the caller a message naming the field and the allowed range before
anything reaches the database; the constraints stay the backstop for plain SQL.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pgjobs.encoding import string_problem
from pgjobs.errors import InvalidInput

NAME_CHARACTERS = "A-Z a-z 0-9 _ . : / -"
TASK_NAME_MAX = 200
QUEUE_NAME_MAX = 100
_TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,99}$")

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
PRIORITY_DEFAULT = 0
QUEUE_DEFAULT = "default"
MAX_ATTEMPTS_MIN = 1
MAX_ATTEMPTS_MAX = 1000
MAX_ATTEMPTS_DEFAULT = 3
KEY_MAX = 512
URL_MAX = 2048
#: Default ceiling on the encoded size of a job's arguments (PGJOBS_MAX_ARGS_BYTES to change).
MAX_ARGS_BYTES_DEFAULT = 1024 * 1024
#: An http(s) URL with a host ('http:///x' and 'http://:80/' have none: refused here, not at
#: the first delivery). Migration 0006 applies the same pattern to every insert.
_URL = re.compile(r"^https?://[^\s/?#:@][^\s/?#]*([/?#]\S*)?$")


def task_name(value: Any) -> str:
    if isinstance(value, str) and _valid_task_name(value):
        return value
    if not isinstance(value, str) or not _TASK_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid task name {value!r}: use 1-{TASK_NAME_MAX} characters among "
            f"{NAME_CHARACTERS}, starting with a letter, digit or _"
        )
    return value


@lru_cache(maxsize=4096)
def _valid_task_name(value: str) -> bool:
    return _TASK_NAME.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _valid_queue_name(value: str) -> bool:
    return _QUEUE_NAME.fullmatch(value) is not None


def queue_name(value: Any) -> str:
    if isinstance(value, str) and _valid_queue_name(value):
        return value
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid queue name {value!r}: use 1-{QUEUE_NAME_MAX} characters among "
            f"{NAME_CHARACTERS}, starting with a letter, digit or _"
        )
    return value


def _integer(value: Any, field: str, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{field} {value} is out of range: use {low}..{high}{hint}")
    return value


def priority(value: Any) -> int:
    return _integer(value, "priority", PRIORITY_MIN, PRIORITY_MAX, " (higher runs first)")


def max_attempts(value: Any) -> int:
    return _integer(value, "max_attempts", MAX_ATTEMPTS_MIN, MAX_ATTEMPTS_MAX)


def one_of(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidInput(f"invalid {field} {value!r}: use one of {', '.join(allowed)}")
    return str(value)


def key(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_MAX:
        raise InvalidInput(f"{field} must be a string of 1-{KEY_MAX} characters")
    problem = string_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field}: {problem}")
    return value


def callback_url(value: Any) -> str:
    if not isinstance(value, str) or len(value) > URL_MAX or not _URL.fullmatch(value):
        raise InvalidInput(
            f"invalid callback URL {value!r}: an http:// or https:// URL of at most "
            f"{URL_MAX} characters"
        )
    return value


JOB_ID_MAX = 2**63 - 1
DEPENDENCIES_MAX = 1000


def job_ids(values: Any, field: str) -> tuple[int, ...]:
    """Job ids (positive bigints), sorted, without repeats."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidInput(f"{field} must be a list of job ids, got {values!r}")
    ids = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= JOB_ID_MAX:
            raise InvalidInput(f"{field}: {value!r} is not a job id")
        ids.add(value)
    if len(ids) > DEPENDENCIES_MAX:
        raise InvalidInput(f"{field}: at most {DEPENDENCIES_MAX} jobs")
    return tuple(sorted(ids))
