"""What schema revisions this code works with, known without importing alembic.

Every command checks the database against these constants before doing anything (a fast
query, no alembic import). A test keeps them in step with ``migrations/versions``.

- ``KNOWN_REVISIONS``: every revision this code ships, oldest first.
- ``MINIMUM_REVISION``: the oldest database revision this code can run against. Raise it when
  the code starts relying on a new migration.
- ``BREAKING_LEVEL``: the number of breaking (contract) migrations this code knows. A database
  whose ``settings.breaking_level`` is higher was migrated by a newer pgjobs with a change this
  code cannot live with; a higher revision without a higher level is additive and accepted,
  which is what makes rolling upgrades work.
"""

from __future__ import annotations

KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
HEAD_REVISION: str = KNOWN_REVISIONS[-1]
#: 0004: workers of this version rely on the callback triggers (a job's callback is inserted by
#: its ending); against 0003 they would run, but silently never deliver a callback.
#: 0005: SSE streams and ``Job.wait(on_update=...)`` learn of a job's start from the claim's
#: notification; against 0004 they would see it only at their safety-net recheck.
#: 0007: ``pgjobs jobs retry`` (and the API's, the dashboard's) calls revival_blockers().
#: Migrate first (additive: the previous version's workers keep running), then roll the code.
MINIMUM_REVISION: str = "0007"
BREAKING_LEVEL: int = 1
